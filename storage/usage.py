"""Token usage of turns: what daily budgets and hourly limits count, and the reports of
``/ai usage`` and ``python -m bot usage``.

Every figure counts turns of every status (a failed or stopped turn may still have been
billed), by the time the turn was created.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from storage.models import Turn
from storage.records import UsageCounts, UsageGrouping, UsageRow
from storage.units import UnitsOfWork

__all__ = ["UsageReports"]


class UsageReports:
    """Sums of the ``turns`` table's token counts, one read per method."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def tokens_used_since(
        self, *, team_id: str, channel_id: str | None, since: datetime
    ) -> int:
        """Input plus output tokens of a channel's (``channel_id=None``: the whole workspace's)
        turns created at or after ``since``.

        Counts turns of every status (a failed or stopped turn may still have been billed).
        """
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        query = select(func.coalesce(func.sum(Turn.input_tokens + Turn.output_tokens), 0)).where(
            Turn.team_id == team_id,
            Turn.created_at >= since,
        )
        if channel_id is not None:
            query = query.where(Turn.channel_id == channel_id)
        async with self._units.reading() as session:
            total = await session.scalar(query)
        return int(total or 0)

    async def turns_by_user_since(self, *, team_id: str, user_id: str, since: datetime) -> int:
        """How many turns (questions) one person started in the workspace since ``since``."""
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        query = select(func.count(Turn.id)).where(
            Turn.team_id == team_id, Turn.user_id == user_id, Turn.created_at >= since
        )
        async with self._units.reading() as session:
            total = await session.scalar(query)
        return int(total or 0)

    async def usage_since(
        self,
        *,
        since: datetime,
        by: UsageGrouping,
        team_id: str | None = None,
        channel_id: str | None = None,
    ) -> list[UsageRow]:
        """Tokens and turn counts of the turns created at or after ``since``, grouped ``by``
        channel, user or model, per workspace; most tokens (input plus output) first.

        ``team_id`` None covers every workspace; ``channel_id`` (which needs ``team_id``)
        narrows to one channel. Counts turns of every status, like ``tokens_used_since``.
        """
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        if channel_id is not None and team_id is None:
            raise ValueError("channel_id needs team_id")
        columns = {"channel": Turn.channel_id, "user": Turn.user_id, "model": Turn.model}
        if by not in columns:
            raise ValueError(f"by must be one of {', '.join(columns)}, not {by!r}")
        key = columns[by]
        query = select(
            Turn.team_id,
            key.label("key"),
            Turn.model,
            func.count(Turn.id),
            func.coalesce(func.sum(Turn.input_tokens), 0),
            func.coalesce(func.sum(Turn.cached_tokens), 0),
            func.coalesce(func.sum(Turn.output_tokens), 0),
            func.coalesce(func.sum(Turn.reasoning_tokens), 0),
        ).where(Turn.created_at >= since)
        if team_id is not None:
            query = query.where(Turn.team_id == team_id)
        if channel_id is not None:
            query = query.where(Turn.channel_id == channel_id)
        # Grouped by model too, so callers can price each model's share.
        query = query.group_by(Turn.team_id, key, Turn.model)
        async with self._units.reading() as session:
            parts = (await session.execute(query)).all()
        groups: dict[tuple[str, str], dict[str, UsageCounts]] = {}
        for team, group_key, model, turns, input_t, cached_t, output_t, reasoning_t in parts:
            counts = UsageCounts(
                turns=int(turns),
                input_tokens=int(input_t),
                cached_tokens=int(cached_t),
                output_tokens=int(output_t),
                reasoning_tokens=int(reasoning_t),
            )
            models = groups.setdefault((team, group_key), {})
            models[model] = models.get(model, UsageCounts()) + counts
        rows = [
            UsageRow(
                team_id=team,
                key=group_key,
                counts=sum(models.values(), UsageCounts()),
                by_model=dict(sorted(models.items())),
            )
            for (team, group_key), models in groups.items()
        ]
        rows.sort(key=lambda row: (-row.counts.total_tokens, row.team_id, row.key))
        return rows

    async def top_users(
        self, *, team_id: str, since: datetime, channel_id: str | None = None, limit: int = 5
    ) -> list[UsageRow]:
        """The ``limit`` users of a workspace (or of one channel) with the most tokens since
        ``since``, most first."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        rows = await self.usage_since(
            since=since, by="user", team_id=team_id, channel_id=channel_id
        )
        return rows[:limit]
