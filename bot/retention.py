"""Retention: delete turns, empty threads, event claims and settings-audit rows older than
``RETENTION_DAYS`` (0 keeps everything), once at start and then daily.

The service starts it as a background task (``start_daily_prune``); ``python -m bot prune``
runs one pass by hand. Errors are logged and the loop carries on: pruning never stops the
service. With several replicas each prunes; deleting the same old rows twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from storage.models import utcnow
from storage.repositories import PruneCounts

__all__ = ["prune_once", "run_daily_prune", "start_daily_prune"]

logger = logging.getLogger(__name__)

DAY = 86400.0


class _Store(Protocol):
    async def prune_history(self, *, older_than: datetime) -> PruneCounts: ...


async def prune_once(
    store: _Store, retention_days: int, *, now: datetime | None = None
) -> PruneCounts | None:
    """One pass: prune what is older than ``retention_days``; None when retention is off."""
    if retention_days <= 0:
        return None
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    counts = await store.prune_history(older_than=cutoff)
    logger.info(
        "pruned rows older than %d days",
        retention_days,
        extra={
            "turns": counts.turns,
            "threads": counts.threads,
            "event_claims": counts.event_claims,
            "settings_audit": counts.settings_audit,
        },
    )
    return counts


async def run_daily_prune(store: _Store, retention_days: int, *, interval: float = DAY) -> None:
    """Prune at once, then every ``interval`` seconds, until cancelled.

    Returns at once when ``retention_days`` is 0 (keep forever). Errors are logged, never
    raised; cancellation ends the loop.
    """
    if retention_days <= 0:
        logger.info("RETENTION_DAYS is 0: history is kept forever")
        return
    while True:
        try:
            await prune_once(store, retention_days)
        except Exception as exc:  # a failed pass must not stop the service; retried later
            logger.warning("pruning old history failed: %s", type(exc).__name__, exc_info=True)
        await asyncio.sleep(interval)


def start_daily_prune(
    store: _Store, retention_days: int, *, interval: float = DAY
) -> Callable[[], Awaitable[None]]:
    """Start ``run_daily_prune`` as a background task; returns the coroutine function that
    cancels it and waits for it to end (for the service's clean-up list)."""
    task = asyncio.create_task(
        run_daily_prune(store, retention_days, interval=interval), name="daily-prune"
    )

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
