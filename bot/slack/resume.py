"""After a restart, finish delivering the answers the model had finished but Slack did not
hold whole yet (held with their turns by ``ConversationService``; see ``HeldAnswer``).

Start-up lists the held answers and, before the service takes any event, takes the in-process
lock of each one's thread, so a follow-up in that thread waits until the answer before it is
whole and the chain has advanced. Each answer is then finished in the background (a few at a
time) through the same ``LiveReplySink`` as a live answer, starting from the message its
delivery had reached (``ResumeState``), and its turn is completed: the chain head advances to
it. Where Slack refuses the rest, the turn is closed as undelivered.

With several replicas on PostgreSQL an answer is resumed only under its thread's lock in the
database, and only if it is still held once the lock is ours: a replica that is delivering it
right now holds that lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from bot.conversation import IncomingMessage, ThreadLockProvider, TurnCompletion
from bot.errors import DeliveryError
from bot.slack.language import PersonLanguages, speaking_to
from bot.slack.reply import LiveReplySinks, ResumeState
from bot.thread_locks import KeyedLocks
from storage.records import HeldAnswerRecord
from storage.thread_locks import ThreadLockTimeout

__all__ = ["resume_held_answers"]

logger = logging.getLogger(__name__)

CONCURRENCY = 4


class HeldAnswerStore(TurnCompletion, Protocol):
    async def list_held_answers(self) -> list[HeldAnswerRecord]: ...

    async def is_held(self, *, turn_id: int) -> bool: ...

    async def fail_turn(
        self, *, turn_id: int, status: str, error_code: str | None, only_if_pending: bool = False
    ) -> bool: ...


async def resume_held_answers(
    *,
    store: HeldAnswerStore,
    sinks: LiveReplySinks,
    locks: KeyedLocks,
    thread_locks: ThreadLockProvider | None = None,
    languages: PersonLanguages | None = None,
) -> Callable[[], Awaitable[None]]:
    """Take the held answers' thread locks now and finish them in the background; returns a
    function that stops the work (the answers stay held for the next start)."""
    held = await store.list_held_answers()
    if not held:
        return _nothing
    taken: dict[tuple[str, str, str], AbstractAsyncContextManager[None]] = {}
    for answer in held:
        key = (answer.team_id, answer.channel_id, answer.thread_ts)
        if key not in taken:
            hold = locks.hold(key)
            await hold.__aenter__()  # uncontended before events flow: returns at once
            taken[key] = hold
    logger.info("finishing %d answer(s) held by the previous run", len(held))
    task = asyncio.create_task(_resume_all(store, sinks, thread_locks, held, taken, languages))

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop


async def _nothing() -> None:
    return None


async def _resume_all(
    store: HeldAnswerStore,
    sinks: LiveReplySinks,
    thread_locks: ThreadLockProvider | None,
    held: list[HeldAnswerRecord],
    taken: dict[tuple[str, str, str], AbstractAsyncContextManager[None]],
    languages: PersonLanguages | None,
) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    by_thread: dict[tuple[str, str, str], list[HeldAnswerRecord]] = {}
    for answer in held:
        by_thread.setdefault((answer.team_id, answer.channel_id, answer.thread_ts), []).append(
            answer
        )

    async def thread(key: tuple[str, str, str], answers: list[HeldAnswerRecord]) -> None:
        try:
            async with gate:
                for answer in answers:  # in order: the chain advances answer by answer
                    # The sink's own words (a note, the feedback buttons) in the asker's
                    # language, as when the answer was first being delivered.
                    async with speaking_to(
                        languages, team_id=answer.team_id, user_id=answer.user_id, within=2.0
                    ):
                        await _resume_one(store, sinks, thread_locks, answer)
        finally:
            await taken[key].__aexit__(None, None, None)

    await asyncio.gather(*(thread(key, answers) for key, answers in by_thread.items()))


async def _resume_one(
    store: HeldAnswerStore,
    sinks: LiveReplySinks,
    thread_locks: ThreadLockProvider | None,
    answer: HeldAnswerRecord,
) -> None:
    try:
        if thread_locks is None:
            await _deliver(store, sinks, answer)
            return
        async with thread_locks.hold(
            team_id=answer.team_id, channel_id=answer.channel_id, thread_ts=answer.thread_ts
        ):
            await _deliver(store, sinks, answer)
    except ThreadLockTimeout:
        logger.info("a held answer's thread is busy on another replica; leaving it to it")
    except Exception:  # one answer's failure must not stop the others
        logger.exception("could not finish a held answer", extra={"turn_id": answer.turn_id})


async def _deliver(store: HeldAnswerStore, sinks: LiveReplySinks, answer: HeldAnswerRecord) -> None:
    if not await store.is_held(turn_id=answer.turn_id):
        return  # finished meanwhile (by another replica)
    message = IncomingMessage(
        team_id=answer.team_id,
        channel_id=answer.channel_id,
        thread_ts=answer.thread_ts,
        ts=answer.user_ts,
        user_id=answer.user_id,
        text="",
    )
    sink = sinks.open(message, resume=ResumeState.from_json(answer.delivery))
    log_extra = {"turn_id": answer.turn_id, "channel": answer.channel_id}
    try:
        reply_ts = await sink.finish(answer.text)
    except DeliveryError as exc:
        logger.error("held answer could not be delivered: %s", exc.code, extra=log_extra)
        await store.fail_turn(
            turn_id=answer.turn_id, status="undelivered", error_code=exc.code, only_if_pending=True
        )
        return
    await store.complete_turn(
        turn_id=answer.turn_id,
        response_id=answer.response_id,
        reply_ts=reply_ts,
        usage=answer.usage,
        first_token_at=answer.first_token_at,
    )
    logger.info("held answer delivered after a restart", extra=log_extra)
