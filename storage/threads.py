"""Threads and their turns: the chain head each thread continues from, and every turn's
record (pending, then closed exactly once).

Every method is one short transaction. None is held open across a network call: the
conversation layer calls ``start_turn`` (or ``Intake.admit_turn``) before the model request and
``complete_turn`` / ``fail_turn`` after it, each its own unit of work.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import TurnNotFoundError
from storage.held_answers import is_held_clause
from storage.models import HeldAnswer, Thread, Turn, utcnow
from storage.records import (
    AbandonedTurn,
    ThreadRecord,
    TokenUsage,
    TurnRecord,
    TurnStart,
    TurnStatus,
)
from storage.units import UnitsOfWork

__all__ = ["Threads", "get_or_create_thread", "insert_pending_turn"]

_CLOSING_STATUSES: Final = frozenset(
    {TurnStatus.FAILED, TurnStatus.INCOMPLETE, TurnStatus.STOPPED, TurnStatus.UNDELIVERED}
)

_TURN_FIELDS: Final = tuple(field.name for field in dataclasses.fields(TurnRecord))


def _turn_record(turn: Turn) -> TurnRecord:
    return TurnRecord(**{name: getattr(turn, name) for name in _TURN_FIELDS})


def _duration_ms(started_at: datetime | None, finished_at: datetime) -> int | None:
    if started_at is None:
        return None
    return max(0, round((finished_at - started_at).total_seconds() * 1000))


def _usage_values(usage: TokenUsage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "cached_tokens": usage.cached_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
    }


class Threads:
    """Threads and turns, one short transaction per method (keyword arguments only, so the
    Slack keys can never be passed in the wrong order)."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def find_thread(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        """The thread with these Slack keys, or None if the bot never answered in it."""
        async with self._units.reading() as session:
            row = await session.scalar(
                select(Thread).where(
                    Thread.team_id == team_id,
                    Thread.channel_id == channel_id,
                    Thread.thread_ts == thread_ts,
                )
            )
        if row is None:
            return None
        return ThreadRecord(
            id=row.id,
            team_id=row.team_id,
            channel_id=row.channel_id,
            thread_ts=row.thread_ts,
            head_response_id=row.head_response_id,
        )

    async def start_turn(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        user_ts: str,
        event_id: str | None,
        model: str,
    ) -> TurnStart:
        """Record a pending turn, creating the thread row on its first turn.

        The turn continues from the thread's current chain head, returned as
        ``previous_response_id`` for the request.
        """
        now = utcnow()
        async with self._units.writing() as session:
            thread_id, head = await get_or_create_thread(
                session, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts
            )
            turn_id = await insert_pending_turn(
                session,
                thread_id=thread_id,
                previous_response_id=head,
                team_id=team_id,
                channel_id=channel_id,
                user_id=user_id,
                user_ts=user_ts,
                event_id=event_id,
                model=model,
                now=now,
            )
        return TurnStart(turn_id=turn_id, thread_id=thread_id, previous_response_id=head)

    async def restart_chain(self, *, turn_id: int, previous_response_id: str | None) -> None:
        """Record that the turn is being re-sent continuing from ``previous_response_id``.

        Used when the endpoint lost the chain and the turn is rebuilt from the Slack thread
        (usually with None: a fresh chain).
        """
        async with self._units.writing() as session:
            result = await session.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(previous_response_id=previous_response_id)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise TurnNotFoundError(turn_id)

    async def complete_turn(
        self,
        *,
        turn_id: int,
        response_id: str,
        reply_ts: str | None,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None:
        """Close the turn as completed and advance its thread's chain head to ``response_id``.

        Both changes commit together, so the head only ever points at a response whose turn
        is recorded as completed.
        """
        async with self._units.writing() as session:
            found = (
                await session.execute(
                    select(Turn.thread_id, Turn.started_at).where(Turn.id == turn_id)
                )
            ).one_or_none()
            if found is None:
                raise TurnNotFoundError(turn_id)
            thread_id, started_at = found
            now = utcnow()
            await session.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(
                    status=TurnStatus.COMPLETED.value,
                    error_code=None,
                    response_id=response_id,
                    reply_ts=reply_ts,
                    first_token_at=first_token_at,
                    finished_at=now,
                    duration_ms=_duration_ms(started_at, now),
                    reserved_tokens=0,  # settled: the real usage counts from now on
                    **_usage_values(usage),
                )
            )
            await session.execute(
                update(Thread)
                .where(Thread.id == thread_id)
                .values(head_response_id=response_id, updated_at=now)
            )
            # Slack holds the whole answer now: nothing is left to deliver.
            await session.execute(delete(HeldAnswer).where(HeldAnswer.turn_id == turn_id))

    async def fail_turn(
        self,
        *,
        turn_id: int,
        status: str,
        error_code: str | None,
        response_id: str | None = None,
        reply_ts: str | None = None,
        usage: TokenUsage | None = None,
        first_token_at: datetime | None = None,
        only_if_pending: bool = False,
    ) -> bool:
        """Close the turn without a usable answer; the thread's chain head stays put.

        ``status`` is one of failed, incomplete, stopped or undelivered (a ``TurnStatus``).
        With ``only_if_pending`` a turn that has closed meanwhile keeps its outcome; returns
        whether this call closed it.
        """
        if status not in _CLOSING_STATUSES:
            allowed = ", ".join(sorted(_CLOSING_STATUSES))
            raise ValueError(f"fail_turn status must be one of {allowed}, not {status!r}")
        async with self._units.writing() as session:
            started_at = await session.scalar(select(Turn.started_at).where(Turn.id == turn_id))
            now = utcnow()
            values: dict[str, Any] = {
                "status": str(status),
                "error_code": error_code,
                "response_id": response_id,
                "reply_ts": reply_ts,
                "first_token_at": first_token_at,
                "finished_at": now,
                "duration_ms": _duration_ms(started_at, now),
                "reserved_tokens": 0,  # settled (see complete_turn)
            }
            if usage is not None:
                values.update(_usage_values(usage))
            statement = update(Turn).where(Turn.id == turn_id)
            if only_if_pending:
                statement = statement.where(Turn.status == TurnStatus.PENDING.value)
            result = await session.execute(statement.values(values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                if only_if_pending and started_at is not None:
                    return False
                raise TurnNotFoundError(turn_id)
            await session.execute(delete(HeldAnswer).where(HeldAnswer.turn_id == turn_id))
            return True

    async def list_pending_turns(self) -> list[AbandonedTurn]:
        """Every turn still pending, oldest first (with several replicas some of them are
        running right now: see ``storage.thread_locks``)."""
        async with self._units.reading() as session:
            return await _pending_turns(session)

    async def close_abandoned_turns(
        self, *, error_code: str = "interrupted"
    ) -> list[AbandonedTurn]:
        """Close every turn still pending (left by a crash) as failed with ``error_code``.

        Call it once at start-up, before taking events; returns the closed turns so the
        service can tell each thread that its answer was lost.
        """
        async with self._units.writing() as session:
            abandoned = await _pending_turns(session)
            if abandoned:
                await session.execute(
                    update(Turn)
                    .where(
                        Turn.id.in_([turn.turn_id for turn in abandoned]),
                        # Re-checked so a turn that finished meanwhile keeps its real outcome.
                        Turn.status == TurnStatus.PENDING.value,
                    )
                    .values(
                        status=TurnStatus.FAILED.value,
                        error_code=error_code,
                        finished_at=utcnow(),
                        reserved_tokens=0,
                    )
                )
        return abandoned

    async def get_turn(self, *, turn_id: int) -> TurnRecord:
        """The turn with this id (raises :class:`TurnNotFoundError`)."""
        async with self._units.reading() as session:
            turn = await session.get(Turn, turn_id)
        if turn is None:
            raise TurnNotFoundError(turn_id)
        return _turn_record(turn)

    async def list_turns(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> list[TurnRecord]:
        """A thread's turns, oldest first (empty if the thread is unknown)."""
        async with self._units.reading() as session:
            turns = await session.scalars(
                select(Turn)
                .join(Thread, Thread.id == Turn.thread_id)
                .where(
                    Thread.team_id == team_id,
                    Thread.channel_id == channel_id,
                    Thread.thread_ts == thread_ts,
                )
                .order_by(Turn.id)
            )
            return [_turn_record(turn) for turn in turns]


async def get_or_create_thread(
    session: AsyncSession, *, team_id: str, channel_id: str, thread_ts: str
) -> tuple[int, str | None]:
    """(id, head_response_id) of the thread, inserting it if needed; race-safe."""
    query = select(Thread.id, Thread.head_response_id).where(
        Thread.team_id == team_id,
        Thread.channel_id == channel_id,
        Thread.thread_ts == thread_ts,
    )
    found = (await session.execute(query)).one_or_none()
    if found is not None:
        existing_id, head = found
        return existing_id, head
    now = utcnow()
    try:
        # A savepoint, so losing the race to another process only undoes this insert. On
        # PostgreSQL the insert waits for the other transaction and then hits the unique
        # constraint; the re-select below (READ COMMITTED) sees the winner's row. On SQLite
        # BEGIN IMMEDIATE already serialises writers, so the race cannot happen there.
        async with session.begin_nested():
            thread_id = await session.scalar(
                insert(Thread)
                .values(
                    team_id=team_id,
                    channel_id=channel_id,
                    thread_ts=thread_ts,
                    created_at=now,
                    updated_at=now,
                )
                .returning(Thread.id)
            )
    except IntegrityError:
        winner_id, head = (await session.execute(query)).one()
        return winner_id, head
    assert thread_id is not None
    return thread_id, None


async def insert_pending_turn(
    session: AsyncSession,
    *,
    thread_id: int,
    previous_response_id: str | None,
    team_id: str,
    channel_id: str,
    user_id: str,
    user_ts: str,
    event_id: str | None,
    model: str,
    now: datetime,
    reserved_tokens: int = 0,
) -> int:
    """Insert a pending turn continuing from ``previous_response_id``; returns its id."""
    turn_id: int | None = await session.scalar(
        insert(Turn)
        .values(
            thread_id=thread_id,
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            event_id=event_id,
            user_ts=user_ts,
            status=TurnStatus.PENDING.value,
            previous_response_id=previous_response_id,
            model=model,
            reserved_tokens=reserved_tokens,
            created_at=now,
            started_at=now,
        )
        .returning(Turn.id)
    )
    assert turn_id is not None
    return turn_id


async def _pending_turns(session: AsyncSession) -> list[AbandonedTurn]:
    rows = (
        await session.execute(
            select(
                Turn.id,
                Turn.team_id,
                Turn.channel_id,
                Thread.thread_ts,
                Turn.user_ts,
                Turn.user_id,
            )
            .join(Thread, Thread.id == Turn.thread_id)
            # A turn with a held answer is not lost: the start-up delivers it (bot.slack.resume).
            .where(Turn.status == TurnStatus.PENDING.value, ~is_held_clause())
            .order_by(Turn.id)
        )
    ).all()
    return [
        AbandonedTurn(
            turn_id=row.id,
            team_id=row.team_id,
            channel_id=row.channel_id,
            thread_ts=row.thread_ts,
            user_ts=row.user_ts,
            user_id=row.user_id,
        )
        for row in rows
    ]
