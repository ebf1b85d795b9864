"""Retention: history older than a cut-off is deleted (``RETENTION_DAYS``, ``python -m bot
prune``); channel settings themselves are never pruned."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists

from storage.assistant_threads import AssistantThreads
from storage.claims import EventClaims
from storage.models import SettingsAudit, Thread, Turn
from storage.records import PruneCounts
from storage.units import UnitsOfWork

__all__ = ["Retention"]


class Retention:
    """Pruning, one short transaction per table."""

    def __init__(
        self, units: UnitsOfWork, *, claims: EventClaims, assistant_threads: AssistantThreads
    ) -> None:
        self._units = units
        self._claims = claims
        self._assistant_threads = assistant_threads

    async def prune_history(self, *, older_than: datetime) -> PruneCounts:
        """Delete what is older than ``older_than`` (aware datetime); returns the counts.

        Turns created before it (and with them their transcript entries and the feedback
        given on them); then threads left without turns whose ``updated_at`` is before it;
        event claims, settings-audit rows and assistant-pane threads from before it. One short
        transaction per table, so the service keeps running meanwhile. Channel settings
        themselves are never pruned.
        """
        if older_than.tzinfo is None or older_than.utcoffset() is None:
            raise ValueError("older_than must be a timezone-aware datetime")
        async with self._units.writing() as session:
            turns = await session.execute(delete(Turn).where(Turn.created_at < older_than))
        async with self._units.writing() as session:
            has_turns = exists().where(Turn.thread_id == Thread.id)
            threads = await session.execute(
                delete(Thread).where(Thread.updated_at < older_than, ~has_turns)
            )
        claims = await self._claims.prune_event_claims(older_than=older_than)
        async with self._units.writing() as session:
            audit = await session.execute(
                delete(SettingsAudit).where(SettingsAudit.changed_at < older_than)
            )
        panes = await self._assistant_threads.prune(older_than=older_than)
        return PruneCounts(
            turns=int(turns.rowcount),  # type: ignore[attr-defined]
            threads=int(threads.rowcount),  # type: ignore[attr-defined]
            event_claims=claims,
            settings_audit=int(audit.rowcount),  # type: ignore[attr-defined]
            assistant_threads=panes,
        )
