"""Feedback on answers: one 👍 or 👎 per answer (turn) and person, changeable, with an
optional comment; and the counts ``/ai usage`` and ``python -m bot usage`` show.

The one home of the ``answer_feedback`` table. Rows belong to their turn (``ON DELETE
CASCADE``), so ``RETENTION_DAYS`` prunes them with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from storage.models import AnswerFeedback, Turn, utcnow
from storage.records import FeedbackCount, FeedbackGrouping, FeedbackValue, FeedbackVote
from storage.units import UnitsOfWork

__all__ = ["MAX_COMMENT_CHARS", "FeedbackStore"]

MAX_COMMENT_CHARS: Final = 500
_VALUES: Final = frozenset({"good", "bad"})


class FeedbackStore:
    """Votes on answers, one short transaction per method."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def vote(
        self, *, team_id: str, channel_id: str, user_ts: str, user_id: str, value: FeedbackValue
    ) -> FeedbackVote | None:
        """Record ``user_id``'s vote on the answer to the message ``user_ts`` (a second vote
        replaces the first). None when no such answer is stored (pruned, or not ours)."""
        if value not in _VALUES:
            raise ValueError(f"value must be good or bad, not {value!r}")
        async with self._units.writing() as session:
            turn = await session.scalar(
                select(Turn)
                .where(
                    Turn.team_id == team_id,
                    Turn.channel_id == channel_id,
                    Turn.user_ts == user_ts,
                )
                .order_by(Turn.id.desc())
                .limit(1)
            )
            if turn is None:
                return None
            query = select(AnswerFeedback).where(
                AnswerFeedback.turn_id == turn.id, AnswerFeedback.user_id == user_id
            )
            row = await session.scalar(query.with_for_update())
            previous: FeedbackValue | None = None
            if row is None:
                try:
                    async with session.begin_nested():  # a concurrent first vote wins the race
                        row = AnswerFeedback(
                            turn_id=turn.id,
                            team_id=team_id,
                            channel_id=channel_id,
                            model=turn.model,
                            user_id=user_id,
                            value=value,
                        )
                        session.add(row)
                except IntegrityError:
                    row = await session.scalar(query)
                    assert row is not None
                    previous = _value(row.value)
            else:
                previous = _value(row.value)
            row.value = value
            row.updated_at = utcnow()
            return FeedbackVote(
                turn_id=turn.id,
                team_id=team_id,
                channel_id=channel_id,
                model=turn.model,
                user_id=user_id,
                value=value,
                previous=previous,
            )

    async def comment(
        self, *, team_id: str, channel_id: str, user_ts: str, user_id: str, text: str
    ) -> bool:
        """Attach a comment (cut to ``MAX_COMMENT_CHARS``) to the person's vote on that answer;
        False when they have no vote there."""
        async with self._units.writing() as session:
            row = await session.scalar(
                select(AnswerFeedback)
                .join(Turn, Turn.id == AnswerFeedback.turn_id)
                .where(
                    Turn.team_id == team_id,
                    Turn.channel_id == channel_id,
                    Turn.user_ts == user_ts,
                    AnswerFeedback.user_id == user_id,
                )
                .with_for_update()
            )
            if row is None:
                return False
            row.comment = text.strip()[:MAX_COMMENT_CHARS] or None
            row.updated_at = utcnow()
        return True

    async def counts_since(
        self,
        *,
        since: datetime,
        by: FeedbackGrouping,
        team_id: str | None = None,
        channel_id: str | None = None,
    ) -> list[FeedbackCount]:
        """👍 and 👎 of the votes last changed at or after ``since``, per channel or model of
        each workspace; most votes first. ``channel_id`` needs ``team_id``."""
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        if channel_id is not None and team_id is None:
            raise ValueError("channel_id needs team_id")
        columns = {"channel": AnswerFeedback.channel_id, "model": AnswerFeedback.model}
        if by not in columns:
            raise ValueError(f"by must be one of {', '.join(columns)}, not {by!r}")
        key = columns[by]
        good = func.sum(case((AnswerFeedback.value == "good", 1), else_=0))
        bad = func.sum(case((AnswerFeedback.value == "bad", 1), else_=0))
        query = (
            select(AnswerFeedback.team_id, key, good, bad)
            .where(AnswerFeedback.updated_at >= since)
            .group_by(AnswerFeedback.team_id, key)
            .order_by(func.count().desc(), AnswerFeedback.team_id, key)
        )
        if team_id is not None:
            query = query.where(AnswerFeedback.team_id == team_id)
        if channel_id is not None:
            query = query.where(AnswerFeedback.channel_id == channel_id)
        async with self._units.reading() as session:
            rows = (await session.execute(query)).all()
        return [
            FeedbackCount(team_id=row[0], key=row[1], good=int(row[2] or 0), bad=int(row[3] or 0))
            for row in rows
        ]


def _value(raw: str) -> FeedbackValue:
    return "good" if raw == "good" else "bad"
