"""Answers the model finished that Slack does not hold whole yet.

A finished answer is kept with its (still pending) turn until every message of it is in
Slack; ``complete_turn`` / ``fail_turn`` (storage.threads) let it go in the same transaction
that closes the turn. A restart delivers what is still held instead of losing it, so held
turns are not "interrupted" turns (``storage.threads.pending_turns`` leaves them out).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from storage.models import HeldAnswer, Thread, Turn
from storage.records import HeldAnswerRecord, TokenUsage, TurnStatus
from storage.units import UnitsOfWork

__all__ = ["HeldAnswers", "is_held_clause"]


def is_held_clause() -> ColumnElement[bool]:
    """SQL: the turn of the current row has an answer held."""
    return exists().where(HeldAnswer.turn_id == Turn.id)


class HeldAnswers:
    """Held answers, one short transaction per method."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def hold_answer(
        self,
        *,
        turn_id: int,
        text: str,
        response_id: str,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None:
        """Keep a finished answer with its pending turn until Slack holds it whole."""
        async with self._units.writing() as session:
            await session.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(
                    response_id=response_id,
                    first_token_at=first_token_at,
                    input_tokens=usage.input_tokens,
                    cached_tokens=usage.cached_tokens,
                    output_tokens=usage.output_tokens,
                    reasoning_tokens=usage.reasoning_tokens,
                )
            )
            await session.execute(delete(HeldAnswer).where(HeldAnswer.turn_id == turn_id))
            await session.execute(insert(HeldAnswer).values(turn_id=turn_id, text=text))

    async def record_delivery(
        self, *, team_id: str, channel_id: str, user_ts: str, state: str
    ) -> None:
        """Note how far the held answer to the message ``user_ts`` got into Slack."""
        async with self._units.writing() as session:
            turn_ids = select(Turn.id).where(
                Turn.team_id == team_id,
                Turn.channel_id == channel_id,
                Turn.user_ts == user_ts,
                Turn.status == TurnStatus.PENDING.value,
            )
            await session.execute(
                update(HeldAnswer).where(HeldAnswer.turn_id.in_(turn_ids)).values(delivery=state)
            )

    async def list_held_answers(self) -> list[HeldAnswerRecord]:
        """Answers held for turns still pending, oldest first."""
        async with self._units.reading() as session:
            rows = (
                await session.execute(
                    select(HeldAnswer, Turn, Thread.thread_ts)
                    .join(Turn, Turn.id == HeldAnswer.turn_id)
                    .join(Thread, Thread.id == Turn.thread_id)
                    .where(Turn.status == TurnStatus.PENDING.value)
                    .order_by(Turn.id)
                )
            ).all()
        return [
            HeldAnswerRecord(
                turn_id=turn.id,
                team_id=turn.team_id,
                channel_id=turn.channel_id,
                thread_ts=thread_ts,
                user_ts=turn.user_ts,
                user_id=turn.user_id,
                text=held.text,
                delivery=held.delivery,
                response_id=turn.response_id or "",
                usage=TokenUsage(
                    input_tokens=turn.input_tokens,
                    cached_tokens=turn.cached_tokens,
                    output_tokens=turn.output_tokens,
                    reasoning_tokens=turn.reasoning_tokens,
                ),
                first_token_at=turn.first_token_at,
            )
            for held, turn, thread_ts in rows
        ]

    async def is_held(self, *, turn_id: int) -> bool:
        """Whether the turn is still pending with an answer held."""
        async with self._units.reading() as session:
            found = await session.scalar(
                select(HeldAnswer.turn_id)
                .join(Turn, Turn.id == HeldAnswer.turn_id)
                .where(HeldAnswer.turn_id == turn_id, Turn.status == TurnStatus.PENDING.value)
            )
        return found is not None
