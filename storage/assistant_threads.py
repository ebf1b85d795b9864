"""Conversations in Slack's assistant pane: which threads are pane threads, the context each
reported last (the channel the person is viewing), and whether it has its title yet.

The one home of the ``assistant_threads`` table. Bolt's assistant middleware reads and writes
the context through ``bot.slack.assistant.store`` (its ``AsyncAssistantThreadContextStore``
interface over this class), so every replica sees what any replica was told.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AssistantThread, utcnow
from storage.records import AssistantThreadRecord
from storage.units import UnitsOfWork

__all__ = ["AssistantThreads"]

_CONTEXT_KEYS = ("channel_id", "team_id", "enterprise_id")


def _clean(context: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The context's known keys with string values (Slack sends ``enterprise_id: null``)."""
    if not context:
        return None
    kept = {k: str(context[k]) for k in _CONTEXT_KEYS if isinstance(context.get(k), str)}
    return kept or None


def _record(row: AssistantThread) -> AssistantThreadRecord:
    context = json.loads(row.context) if row.context else None
    return AssistantThreadRecord(
        team_id=row.team_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        user_id=row.user_id,
        context=context if isinstance(context, dict) else None,
        titled=row.titled_at is not None,
    )


class AssistantThreads:
    """Pane threads, one short transaction per method."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def started(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str | None,
        context: Mapping[str, Any] | None,
    ) -> None:
        """A pane thread started (``assistant_thread_started``): remember it and its context.
        Slack's retries and a concurrent replica find the row there and update it."""
        async with self._units.writing() as session:
            row = await _get_or_create(session, channel_id=channel_id, thread_ts=thread_ts)
            row.team_id = team_id or row.team_id
            row.user_id = user_id or row.user_id
            cleaned = _clean(context)
            if cleaned is not None:
                row.context = json.dumps(cleaned, sort_keys=True)
            row.updated_at = utcnow()

    async def save_context(
        self, *, channel_id: str, thread_ts: str, context: Mapping[str, Any]
    ) -> None:
        """The pane reported the context (the person moved to another channel)."""
        async with self._units.writing() as session:
            row = await _get_or_create(session, channel_id=channel_id, thread_ts=thread_ts)
            cleaned = _clean(context)
            row.context = None if cleaned is None else json.dumps(cleaned, sort_keys=True)
            if not row.team_id and cleaned is not None:
                row.team_id = cleaned.get("team_id", "")
            row.updated_at = utcnow()

    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadRecord | None:
        """The pane thread, or None when (channel, thread) is not one."""
        async with self._units.reading() as session:
            row = await session.scalar(_query(channel_id, thread_ts))
            return None if row is None else _record(row)

    async def claim_title(self, *, channel_id: str, thread_ts: str) -> bool:
        """True exactly once per pane thread, for the one caller that gives it its title (a
        conditional update: of several replicas answering, one wins). False for a thread that
        is not a pane thread or has its title."""
        async with self._units.writing() as session:
            result = await session.execute(
                update(AssistantThread)
                .where(
                    AssistantThread.channel_id == channel_id,
                    AssistantThread.thread_ts == thread_ts,
                    AssistantThread.titled_at.is_(None),
                )
                .values(titled_at=utcnow(), updated_at=utcnow())
            )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    async def prune(self, *, older_than: datetime) -> int:
        """Delete pane threads untouched since ``older_than``; returns how many."""
        if older_than.tzinfo is None or older_than.utcoffset() is None:
            raise ValueError("older_than must be a timezone-aware datetime")
        async with self._units.writing() as session:
            result = await session.execute(
                delete(AssistantThread).where(AssistantThread.updated_at < older_than)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]


def _query(channel_id: str, thread_ts: str) -> Any:
    return select(AssistantThread).where(
        AssistantThread.channel_id == channel_id, AssistantThread.thread_ts == thread_ts
    )


async def _get_or_create(
    session: AsyncSession, *, channel_id: str, thread_ts: str
) -> AssistantThread:
    """The row, inserted if missing; race-safe (see storage.threads.get_or_create_thread)."""
    query = _query(channel_id, thread_ts).with_for_update()
    row: AssistantThread | None = await session.scalar(query)
    if row is not None:
        return row
    try:
        async with session.begin_nested():
            row = AssistantThread(team_id="", channel_id=channel_id, thread_ts=thread_ts)
            session.add(row)
    except IntegrityError:
        row = await session.scalar(query)
        assert row is not None
    return row
