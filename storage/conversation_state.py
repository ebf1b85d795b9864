"""Conversation state that does not depend on the model endpoint keeping chains.

Three tables, and :class:`ConversationStateStore`, their repository:

- ``transcript_entries``: the conversation of each thread as the bot took part in it: the user
  messages it took (text as sent to the model, with the author's name in channels, and the
  Slack file descriptors of attachments, never their bytes) and the answers it gave; for a
  thread joined mid-way, the text of the earlier messages it was given. Each entry belongs to
  a turn and is deleted with it (``ON DELETE CASCADE``), so ``RETENTION_DAYS`` prunes
  transcripts with the turns. It lets the service re-send a conversation itself (transcript
  mode, a lost chain) without reading the Slack thread again.
- ``endpoint_capabilities``: per endpoint and model, whether it keeps ``previous_response_id``
  chains (``kept``, ``ignored``, ``unknown``), whether it accepts a function tool and streams,
  what found out and when.
- ``thread_notes``: one row per thread and kind of one-time note already given (e.g. "earlier
  messages were re-sent"), so each is given once.

Like the rest of ``storage``, this module never imports ``bot``; it shares the ``Store``'s units
of work (one SQLite writer queue per process).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    exists,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from storage.errors import StorageError
from storage.models import Base, Thread, ToolCall, Turn, utcnow
from storage.records import CapabilityRecord, ResponseUsage, TranscriptRecord
from storage.repositories import Store

__all__ = [
    "CapabilityRecord",
    "ConversationStateStore",
    "EndpointCapability",
    "ResponseUsage",
    "ThreadNote",
    "TranscriptEntry",
    "TranscriptRecord",
]

_ROLES: Final = frozenset({"user", "assistant"})
_CHAINS: Final = frozenset({"kept", "ignored", "unknown"})
# Slack file fields needed to read an attachment again (re-downloaded with the bot token when
# the conversation is re-sent); nothing else of the file object is kept.
FILE_FIELDS: Final = (
    "id",
    "name",
    "title",
    "mimetype",
    "filetype",
    "size",
    "url_private",
    "url_private_download",
)


class TranscriptEntry(Base):
    """One message of a thread's conversation: a user message the bot took or its answer."""

    __tablename__ = "transcript_entries"
    __table_args__ = (
        # entries(): a thread's conversation in order.
        Index("ix_transcript_entries_thread_id_id", "thread_id", "id"),
        # ON DELETE CASCADE from turns (retention) without scanning the table.
        Index("ix_transcript_entries_turn_id", "turn_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key; increasing, so it orders a thread's entries."""
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    """The thread the entry belongs to."""
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    """The turn that took the message or gave the answer; pruned with it."""
    role: Mapped[str] = mapped_column(String(16))
    """``user`` or ``assistant``."""
    author_id: Mapped[str | None] = mapped_column(String(32))
    """Slack user id of a user message's author (None for the bot's answers and for earlier
    messages of a joined thread, whose text already names the author)."""
    text: Mapped[str] = mapped_column(Text)
    """The text as the model was given it (with the author's name in channels)."""
    files: Mapped[str | None] = mapped_column(Text)
    """JSON list of the attachments' Slack descriptors (``FILE_FIELDS``), never their bytes."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the entry was written."""


class EndpointCapability(Base):
    """What one endpoint does with one model: keeps chains, accepts tools, streams."""

    __tablename__ = "endpoint_capabilities"
    __table_args__ = (UniqueConstraint("endpoint", "model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key."""
    endpoint: Mapped[str] = mapped_column(String(255))
    """The endpoint's base URL without credentials or query (``https://host/v1``)."""
    model: Mapped[str] = mapped_column(String(255))
    """Model name as sent in requests."""
    chains: Mapped[str] = mapped_column(String(16))
    """``kept`` (an unknown ``previous_response_id`` is refused), ``ignored`` (answered as if
    there were no chain) or ``unknown``."""
    chains_source: Mapped[str] = mapped_column(String(32))
    """What found it out: ``probe`` (a made-up id), ``continuity`` (a chained turn's input was
    far smaller than its history), ``doctor``."""
    tools: Mapped[bool | None] = mapped_column(Boolean)
    """Whether a trivial function tool was accepted (None: not checked)."""
    streaming: Mapped[bool | None] = mapped_column(Boolean)
    """Whether a streamed call worked (None: not checked)."""
    detail: Mapped[str | None] = mapped_column(String(255))
    """A short plain-words note for operators (never an upstream message)."""
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When it was found out."""


class ThreadNote(Base):
    """A one-time note already given in a thread."""

    __tablename__ = "thread_notes"

    thread_id: Mapped[int] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True
    )
    """The thread."""
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Which note, e.g. ``context_resent``."""
    noted_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When it was given."""


def _file_json(files: Sequence[Mapping[str, Any]]) -> str | None:
    kept = [
        {key: file[key] for key in FILE_FIELDS if isinstance(file.get(key), str | int)}
        for file in files
        if isinstance(file, Mapping)
    ]
    return json.dumps(kept) if kept else None


def _files(encoded: str | None) -> tuple[Mapping[str, Any], ...]:
    if not encoded:
        return ()
    try:
        value = json.loads(encoded)
    except ValueError:
        return ()
    return (
        tuple(item for item in value if isinstance(item, dict)) if isinstance(value, list) else ()
    )


def _capability(row: EndpointCapability) -> CapabilityRecord:
    return CapabilityRecord(
        endpoint=row.endpoint,
        model=row.model,
        chains=row.chains,
        chains_source=row.chains_source,
        tools=row.tools,
        streaming=row.streaming,
        detail=row.detail,
        checked_at=row.checked_at,
    )


class ConversationStateStore:
    """Transcripts, endpoint capabilities and one-time thread notes; one short transaction per
    method, in the units of work of the ``Store`` it is built on."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- transcripts ----------------------------------------------------------------------

    async def add_entries(
        self,
        *,
        thread_id: int,
        turn_id: int,
        entries: Sequence[tuple[str, str | None, str, Sequence[Mapping[str, Any]]]],
    ) -> None:
        """Append ``(role, author_id, text, files)`` entries to a thread's transcript, in order,
        on behalf of ``turn_id``."""
        if not entries:
            return
        for role, *_ in entries:
            if role not in _ROLES:
                raise ValueError(f"role must be user or assistant, not {role!r}")
        now = utcnow()
        rows = [
            {
                "thread_id": thread_id,
                "turn_id": turn_id,
                "role": role,
                "author_id": author_id,
                "text": text,
                "files": _file_json(files),
                "created_at": now,
            }
            for role, author_id, text, files in entries
        ]
        async with self._store.writing() as session:
            await session.execute(insert(TranscriptEntry), rows)

    async def entries(self, *, thread_id: int, before_turn_id: int) -> list[TranscriptRecord]:
        """A thread's transcript, oldest first, from the turns before ``before_turn_id``."""
        query = (
            select(TranscriptEntry)
            .where(TranscriptEntry.thread_id == thread_id, TranscriptEntry.turn_id < before_turn_id)
            .order_by(TranscriptEntry.id)
        )
        async with self._store.reading() as session:
            rows = await session.scalars(query)
            return [
                TranscriptRecord(
                    id=row.id,
                    turn_id=row.turn_id,
                    role=row.role,
                    author_id=row.author_id,
                    text=row.text,
                    files=_files(row.files),
                )
                for row in rows
            ]

    # -- the chain head -------------------------------------------------------------------

    async def forget_head(self, *, thread_id: int, response_id: str) -> bool:
        """Drop the thread's chain head if it is still ``response_id`` (the endpoint lost it,
        so it must never be sent again); returns whether it was dropped."""
        async with self._store.writing() as session:
            result = await session.execute(
                update(Thread)
                .where(Thread.id == thread_id, Thread.head_response_id == response_id)
                .values(head_response_id=None, updated_at=utcnow())
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def usage_of_response(self, *, thread_id: int, response_id: str) -> ResponseUsage | None:
        """Usage of the completed turn of the thread that produced ``response_id``."""
        query = (
            select(
                Turn.model,
                Turn.input_tokens,
                Turn.cached_tokens,
                Turn.output_tokens,
                Turn.reasoning_tokens,
            )
            .where(
                Turn.thread_id == thread_id,
                Turn.response_id == response_id,
                Turn.status == "completed",
                # A turn with tool rounds is billed for every round (its history counted once
                # per round): its figures say nothing about one response's input.
                ~exists().where(ToolCall.turn_id == Turn.id),
            )
            .order_by(Turn.id.desc())
            .limit(1)
        )
        async with self._store.reading() as session:
            row = (await session.execute(query)).one_or_none()
        if row is None:
            return None
        model, input_tokens, cached, output_tokens, reasoning = row
        return ResponseUsage(
            model=model,
            input_tokens=input_tokens,
            cached_tokens=cached,
            output_tokens=output_tokens,
            reasoning_tokens=reasoning,
        )

    # -- one-time notes -------------------------------------------------------------------

    async def note_once(self, *, thread_id: int, kind: str) -> bool:
        """Record that note ``kind`` is given in the thread; False if it already was (atomic
        across processes: the primary key decides)."""
        try:
            async with self._store.writing() as session:
                await session.execute(
                    insert(ThreadNote).values(thread_id=thread_id, kind=kind, noted_at=utcnow())
                )
        except StorageError as exc:
            if exc.code != "integrity":
                raise
            return False  # the note was given before
        return True

    # -- endpoint capabilities ------------------------------------------------------------

    async def capability(self, *, endpoint: str, model: str) -> CapabilityRecord | None:
        async with self._store.reading() as session:
            row = await session.scalar(
                select(EndpointCapability).where(
                    EndpointCapability.endpoint == endpoint, EndpointCapability.model == model
                )
            )
            return None if row is None else _capability(row)

    async def capabilities(self) -> list[CapabilityRecord]:
        """Every record, by endpoint and model."""
        async with self._store.reading() as session:
            rows = await session.scalars(
                select(EndpointCapability).order_by(
                    EndpointCapability.endpoint, EndpointCapability.model
                )
            )
            return [_capability(row) for row in rows]

    async def record_capability(
        self,
        *,
        endpoint: str,
        model: str,
        chains: str,
        source: str,
        tools: bool | None = None,
        streaming: bool | None = None,
        detail: str | None = None,
        checked_at: datetime | None = None,
    ) -> CapabilityRecord:
        """Insert or replace the record for ``endpoint`` and ``model``. ``tools`` and
        ``streaming`` left None keep what was known."""
        if chains not in _CHAINS:
            raise ValueError(f"chains must be one of {', '.join(sorted(_CHAINS))}, not {chains!r}")
        when = checked_at or utcnow()
        values: dict[str, Any] = {
            "chains": chains,
            "chains_source": source[:32],
            "detail": detail[:255] if detail else None,
            "checked_at": when,
        }
        if tools is not None:
            values["tools"] = tools
        if streaming is not None:
            values["streaming"] = streaming
        query = select(EndpointCapability).where(
            EndpointCapability.endpoint == endpoint, EndpointCapability.model == model
        )
        async with self._store.writing() as session:
            row = await session.scalar(query.with_for_update())
            if row is None:
                try:
                    async with session.begin_nested():  # a concurrent insert wins the race
                        row = EndpointCapability(endpoint=endpoint, model=model, **values)
                        session.add(row)
                except IntegrityError:
                    row = await session.scalar(query.with_for_update())
                    assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            await session.flush()
            return _capability(row)
