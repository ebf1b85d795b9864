"""Event claims: each Slack event is handled by one process at most, however often it comes.

A claim is a row per key (``event:<event_id>``, ``msg:<team>:<channel>:<ts>``); the primary key
decides, across processes, which claimant owns the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert

from storage.errors import StorageError
from storage.models import EventClaim, utcnow
from storage.units import UnitsOfWork

__all__ = ["EventClaims", "claim_rows"]


def claim_rows(keys: Sequence[str], *, now: datetime) -> list[dict[str, object]]:
    """The ``event_claims`` rows that claim ``keys`` (at least one) at ``now``.

    Sorted and de-duplicated: every claimant inserts shared keys in the same order, so two
    PostgreSQL transactions cannot deadlock waiting on each other's rows.
    """
    unique_keys = sorted(set(keys))
    if not unique_keys:
        raise ValueError("a claim needs at least one key")
    return [{"key": key, "claimed_at": now} for key in unique_keys]


class EventClaims:
    """Claims of incoming Slack events, and their pruning."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def claim_event(self, *, keys: Sequence[str]) -> bool:
        """Claim an incoming Slack event under all of ``keys`` at once.

        True: the caller owns the event and must handle it. False: some key was already
        claimed (a Slack retry, or the same message as both ``app_mention`` and ``message``)
        and nothing was written. Atomic across processes: it relies on the primary key, so
        of any number of concurrent claims sharing a key exactly one wins.
        """
        rows = claim_rows(keys, now=utcnow())
        try:
            async with self._units.writing() as session:
                await session.execute(insert(EventClaim), rows)
        except StorageError as exc:
            if exc.code != "integrity":
                raise
            # A key was claimed before; the transaction was rolled back: no key of this
            # claim was stored.
            return False
        return True

    async def prune_event_claims(self, *, older_than: datetime) -> int:
        """Delete claims made before ``older_than`` (aware datetime); returns how many."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be a timezone-aware datetime")
        async with self._units.writing() as session:
            result = await session.execute(
                delete(EventClaim).where(EventClaim.claimed_at < older_than)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]
