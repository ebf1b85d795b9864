"""What a previous run left, handled once the service listens again (``Service.start``).

Turns a crash (or a shutdown past its grace) left ``pending`` are closed as failed and their
threads told to send the message again; then the messages that run accepted but never started
are answered, per thread in Slack order, a few threads at a time. With several replicas only
what processes that are gone left is taken (``storage.replicas``, ``Intake.adopt_orphans``),
and a pending turn whose thread is locked by a live replica is left to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from bot.conversation import TurnOutcome
from bot.i18n import N_, t
from bot.slack.language import PersonLanguages, speaking_to
from bot.slack.workspaces import WorkspaceClients
from bot.turn_tracker import TurnTracker
from storage.intake import QueuedMessage
from storage.repositories import AbandonedTurn, Store
from storage.thread_locks import DistributedThreadLocks

__all__ = ["INTERRUPTED_NOTICE", "RECOVERY_CONCURRENCY", "StartupRecovery"]

logger = logging.getLogger(__name__)

INTERRUPTED_NOTICE = N_(
    ":warning: My answer to this message was interrupted because the bot restarted. "
    "Please send your message again."
)
RECOVERY_CONCURRENCY = 8
"""Threads recovered at once after a restart (notes posted, waiting messages answered)."""

ThreadKey = tuple[str, str, str]


class StartupRecovery:
    """Runs once per start, in the background, tracked like a turn (shutdown waits for it
    within its grace)."""

    def __init__(
        self,
        *,
        store: Store,
        thread_locks: DistributedThreadLocks,
        workspaces: WorkspaceClients,
        tracker: TurnTracker,
        resume: Callable[[QueuedMessage], Awaitable[TurnOutcome]],
        languages: PersonLanguages | None = None,
    ) -> None:
        self._store = store
        # The turn's author is not kept: the note is in the workspace's language setting
        # (English when it is "auto").
        self._languages = languages
        self._thread_locks = thread_locks
        self._workspaces = workspaces
        self._tracker = tracker
        self._resume = resume

    async def run(self, pending: list[AbandonedTurn], adopted: list[QueuedMessage]) -> None:
        """Close the turns a previous run left pending (telling each thread), then answer the
        messages it accepted but never started, per thread in order, ``RECOVERY_CONCURRENCY``
        threads at a time."""
        threads: dict[ThreadKey, tuple[list[AbandonedTurn], list[QueuedMessage]]] = defaultdict(
            lambda: ([], [])
        )
        for turn in pending:
            threads[(turn.team_id, turn.channel_id, turn.thread_ts)][0].append(turn)
        for queued in adopted:
            threads[(queued.team_id, queued.channel_id, queued.thread_ts)][1].append(queued)
        if not threads:
            return
        logger.info(
            "recovering what the previous run left",
            extra={"pending_turns": len(pending), "waiting_messages": len(adopted)},
        )
        slots = asyncio.Semaphore(RECOVERY_CONCURRENCY)
        async with self._tracker.track():
            await asyncio.gather(
                *(self._recover_thread(turns, queued, slots) for turns, queued in threads.values())
            )

    async def _recover_thread(
        self, turns: list[AbandonedTurn], queued: list[QueuedMessage], slots: asyncio.Semaphore
    ) -> None:
        try:
            async with slots:
                for turn in turns:
                    await self._close_interrupted_turn(turn)
            for message in queued:
                if not self._tracker.accepting:
                    return  # shutting down: it stays stored for the next start
                async with slots:
                    await self._resume(message)
        except Exception:  # one thread's trouble must not stop the others' recovery
            logger.exception("could not recover a thread")

    async def _close_interrupted_turn(self, turn: AbandonedTurn) -> None:
        """Close one turn a crash left pending, and tell its thread. With several replicas on
        PostgreSQL a pending turn may be running on another replica right now: only a turn
        whose thread lock is free (its owner is gone) is closed."""
        if self._thread_locks.distributed and not await self._thread_locks.is_free(
            team_id=turn.team_id, channel_id=turn.channel_id, thread_ts=turn.thread_ts
        ):
            return
        if not await self._store.fail_turn(
            turn_id=turn.turn_id, status="failed", error_code="interrupted", only_if_pending=True
        ):
            return  # it closed meanwhile: it keeps its real outcome
        logger.warning(
            "closed a turn left pending by a previous run",
            extra={"turn_id": turn.turn_id, "channel": turn.channel_id},
        )
        try:
            # In the asker's language (one cached users.info; bounded, then English).
            async with speaking_to(
                self._languages, team_id=turn.team_id, user_id=turn.user_id, within=2.0
            ):
                text = t(INTERRUPTED_NOTICE)
            slack = await self._workspaces.client(turn.team_id)
            await slack.chat_postMessage(
                channel=turn.channel_id, thread_ts=turn.thread_ts, text=text
            )
        except Exception as exc:  # telling the thread is best effort; the turn is closed
            logger.warning("could not tell the thread: %s", type(exc).__name__)
