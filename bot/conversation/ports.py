"""What the turn core takes in and hands out, and the small interfaces it talks to.

The adapters live at the edges (``bot.slack`` for the sinks and the context, ``bot.model`` for
the model client, ``storage`` for the stores, ``bot.channel_settings`` for the settings); the
core sees only these Protocols and the plain records of ``storage.records``, so it can be run
against in-memory fakes (``tests/conversation``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from bot.channel_settings import EffectiveSettings
from bot.model.types import ModelEvent, ResponseRequest
from storage.records import (
    AcceptResult,
    LimitReached,
    QueuedMessage,
    ResponseUsage,
    ThreadRecord,
    TokenUsage,
    TranscriptRecord,
    TurnLimits,
    TurnStart,
)

__all__ = [
    "ApprovalRequest",
    "Approvals",
    "ContextSource",
    "ConversationStore",
    "IncomingMessage",
    "LocaleSource",
    "MessageIntake",
    "ModelClient",
    "PersonLocale",
    "ReplySink",
    "ReplySinks",
    "SettingsSource",
    "StepSink",
    "StepStatus",
    "ThreadLockProvider",
    "Ticket",
    "ToolStep",
    "TranscriptStore",
    "TurnCompletion",
    "TurnInput",
    "TurnOutcome",
    "TurnStopped",
]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A human message that may become a turn. ``thread_ts`` is the thread the answer goes
    to (the message's own ``ts`` for a new conversation)."""

    team_id: str
    channel_id: str
    thread_ts: str
    ts: str
    user_id: str
    text: str
    event_id: str | None = None
    mentions_bot: bool = False
    is_direct: bool = False
    starts_thread: bool = False
    mentions_others: bool = False
    files: tuple[Mapping[str, Any], ...] = ()

    @property
    def claim_keys(self) -> list[str]:
        # Two keys: Slack's retries share the event id; the app_mention/message pair for one
        # message shares channel+ts but not the event id.
        keys = [f"msg:{self.team_id}:{self.channel_id}:{self.ts}"]
        if self.event_id:
            keys.insert(0, f"event:{self.event_id}")
        return keys

    @property
    def addressed(self) -> bool:
        """Meant for the bot whatever the thread: it mentions the bot, or it is a DM."""
        return self.mentions_bot or self.is_direct

    def payload(self) -> dict[str, Any]:
        """What an accepted message keeps besides its keys (see ``storage.intake``)."""
        data = {name: getattr(self, name) for name in _FIELDS if name not in _STORED_APART}
        data["files"] = [dict(file) for file in self.files]
        return data

    @classmethod
    def from_queued(cls, queued: QueuedMessage) -> IncomingMessage:
        """The message an accepted (stored) one was made from: ``payload()`` read back."""
        data = {name: value for name, value in queued.payload.items() if name in _FIELDS}
        data["files"] = tuple(f for f in data.get("files") or () if isinstance(f, dict))
        return cls(
            **data,
            team_id=queued.team_id,
            channel_id=queued.channel_id,
            thread_ts=queued.thread_ts,
            ts=queued.ts,
            user_id=queued.user_id,
            event_id=queued.event_id,
        )


_FIELDS = tuple(field.name for field in fields(IncomingMessage))
_STORED_APART = ("team_id", "channel_id", "thread_ts", "ts", "user_id", "event_id")


@dataclass(frozen=True, slots=True)
class TurnInput:
    """Responses input items for (part of) a turn, and one-line notices for the user (e.g. a
    file that could not be read)."""

    items: list[dict[str, Any]]
    notices: list[str]


class TurnStopped(Exception):
    """Raised by a reply sink when the user stopped the answer in Slack."""


class TurnOutcome(enum.StrEnum):
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    COMPLETED = "completed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    UNDELIVERED = "undelivered"
    STOPPED = "stopped"
    OVER_BUDGET = "over_budget"


@dataclass(frozen=True, slots=True)
class Ticket:
    """What ``ConversationService.accept`` decided for a message: it waits for its turn
    (``queued_id``, stored), or it is settled already (``outcome``)."""

    message: IncomingMessage
    queued_id: int | None = None
    outcome: TurnOutcome | None = None
    storage_failed: bool = False
    """The database refused the message: the thread is told so when it is answered."""


class ModelClient(Protocol):
    def stream(self, request: ResponseRequest) -> AsyncGenerator[ModelEvent, None]: ...


class ReplySink(Protocol):
    """Where one turn's answer goes. ``finish``/``fail`` return the first reply's ts."""

    async def started(self) -> None: ...

    async def reasoning(self) -> None: ...

    async def delta(self, text: str) -> None: ...

    async def finish(self, text: str) -> str | None: ...

    async def fail(self, notice: str, partial_text: str) -> str | None: ...


class StepStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ToolStep:
    """One step of an answer the user can watch: a tool call, or a reasoning summary.

    A step is reported each time its status changes, under the same ``step_id`` (a tool call's
    ``call_id``; the reasoning item's id). ``title`` is short and made by the bot from the
    tool's name and arguments (never from the tool's output); ``sources`` are (title, url)
    pairs, e.g. from ``url_citation`` annotations."""

    step_id: str
    title: str
    status: StepStatus
    sources: tuple[tuple[str, str], ...] = ()
    details: str = ""


@runtime_checkable
class StepSink(Protocol):
    """A reply sink that can show steps (Slack: task cards while streaming natively, a compact
    context line per step otherwise). Sinks without it simply do not show steps."""

    async def step(self, step: ToolStep) -> None: ...


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A tool call that needs the asker's yes before it runs."""

    message: IncomingMessage
    """The message being answered: its thread gets the question, its ``user_id`` decides."""
    turn_id: int
    call_id: str
    server: str
    tool: str
    title: str
    """What the call will do, short and made by the bot (as ``ToolStep.title``)."""


class Approvals(Protocol):
    """Asks the person who asked whether a tool call may run. Returns ``True`` only for an
    explicit approval; a denial, no answer within ``timeout`` seconds, or a failure to ask is
    ``False``. Cancelling the wait (a user stop, shutdown) withdraws the question."""

    async def ask(self, request: ApprovalRequest, *, timeout: float) -> bool: ...


class ReplySinks(Protocol):
    def open(self, message: IncomingMessage) -> ReplySink: ...


class ContextSource(Protocol):
    """What the model sees: the current message, and the thread's earlier messages (used when
    the bot joins a thread mid-way or the endpoint lost the chain)."""

    async def current(self, message: IncomingMessage) -> TurnInput: ...

    async def earlier(self, message: IncomingMessage) -> TurnInput: ...

    async def replay(
        self, message: IncomingMessage, entries: Sequence[TranscriptRecord]
    ) -> TurnInput:
        """Input items for stored transcript entries (attachments read again)."""
        ...


class TranscriptStore(Protocol):
    """The service's own record of each thread's conversation (``storage.conversation_state``):
    what lets it re-send a conversation without reading the Slack thread again."""

    async def add_entries(
        self,
        *,
        thread_id: int,
        turn_id: int,
        entries: Sequence[tuple[str, str | None, str, Sequence[Mapping[str, Any]]]],
    ) -> None: ...

    async def entries(self, *, thread_id: int, before_turn_id: int) -> list[TranscriptRecord]: ...

    async def forget_head(self, *, thread_id: int, response_id: str) -> bool: ...

    async def usage_of_response(
        self, *, thread_id: int, response_id: str
    ) -> ResponseUsage | None: ...

    async def note_once(self, *, thread_id: int, kind: str) -> bool: ...


class SettingsSource(Protocol):
    async def effective(self, *, team_id: str, channel_id: str) -> EffectiveSettings: ...


@dataclass(frozen=True, slots=True)
class PersonLocale:
    """What the edge knows of a person's language: their locale as the chat platform names it
    (``ja-JP``) and their IANA time zone; ``None`` when unknown."""

    locale: str | None = None
    timezone: str | None = None


class LocaleSource(Protocol):
    """A person's locale and time zone (the Slack edge reads them with the display name, from
    the same cached ``users.info``). Never raises: unknown is ``PersonLocale()``."""

    async def locale(self, *, team_id: str, user_id: str) -> PersonLocale: ...


class ThreadLockProvider(Protocol):
    """A thread's lock across processes (``storage.thread_locks``); raises
    ``storage.errors.ThreadLockTimeout`` when it stays taken too long."""

    def hold(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> AbstractAsyncContextManager[None]: ...


class MessageIntake(Protocol):
    """Accepted messages until they become turns, and the admission of turns under the
    limits (``storage.intake``)."""

    async def accept(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        ts: str,
        user_id: str,
        event_id: str | None,
        claim_keys: Sequence[str],
        payload: Mapping[str, Any],
        owner: str,
        needs_thread: bool,
    ) -> AcceptResult: ...

    async def next_in_thread(
        self, *, owner: str, team_id: str, channel_id: str, thread_ts: str
    ) -> QueuedMessage | None: ...

    async def forget(self, *, queued_id: int) -> None: ...

    async def admit_turn(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        user_ts: str,
        event_id: str | None,
        model: str,
        limits: TurnLimits,
        queued_id: int | None = None,
    ) -> TurnStart | LimitReached | None: ...


class TurnCompletion(Protocol):
    """Closing a turn with its answer delivered (``storage.threads``): the chain head moves to
    ``response_id`` in the same transaction."""

    async def complete_turn(
        self,
        *,
        turn_id: int,
        response_id: str,
        reply_ts: str | None,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None: ...


class ConversationStore(TurnCompletion, Protocol):
    """Threads and turns (``storage.threads``, ``storage.held_answers``)."""

    async def find_thread(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None: ...

    async def fail_turn(
        self,
        *,
        turn_id: int,
        status: str,
        error_code: str | None,
        response_id: str | None = None,
        reply_ts: str | None = None,
        usage: TokenUsage | None = None,
    ) -> object: ...

    async def restart_chain(self, *, turn_id: int, previous_response_id: str | None) -> None: ...

    async def hold_answer(
        self,
        *,
        turn_id: int,
        text: str,
        response_id: str,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None: ...
