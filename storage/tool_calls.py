"""Tool calls made for turns: recorded as they end, counted for ``/ai usage``.

The one home of the ``tool_calls`` table. A row names the server, the tool, how the call ended,
how long it ran and how much it gave back; never its arguments or output. Rows belong to their
turn (``ON DELETE CASCADE``), so ``RETENTION_DAYS`` prunes them with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, func, select

from storage.models import INTEGER_MAX, ToolCall
from storage.records import ToolCallCount, ToolCallRecord
from storage.units import UnitsOfWork

__all__ = ["ToolCallStore"]


class ToolCallStore:
    """Tool-call accounting, one short transaction per method."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def record_tool_calls(self, records: Sequence[ToolCallRecord]) -> None:
        if not records:
            return
        async with self._units.writing() as session:
            session.add_all(
                ToolCall(
                    turn_id=r.turn_id,
                    team_id=r.team_id,
                    channel_id=r.channel_id,
                    server=r.server[:64],
                    tool=r.tool[:128],
                    status=r.status[:16],
                    duration_ms=min(max(r.duration_ms, 0), INTEGER_MAX),
                    output_chars=min(max(r.output_chars, 0), INTEGER_MAX),
                )
                for r in records
            )

    async def counts_since(
        self, *, team_id: str, since: datetime, channel_id: str | None = None
    ) -> list[ToolCallCount]:
        """Calls per (server, tool) of a workspace (or one channel) since ``since``, most
        called first."""
        failed = func.sum(case((ToolCall.status != "ok", 1), else_=0))
        query = (
            select(
                ToolCall.server,
                ToolCall.tool,
                func.count(ToolCall.id),
                failed,
                func.coalesce(func.sum(ToolCall.duration_ms), 0),
            )
            .where(ToolCall.team_id == team_id, ToolCall.created_at >= since)
            .group_by(ToolCall.server, ToolCall.tool)
            .order_by(func.count(ToolCall.id).desc(), ToolCall.server, ToolCall.tool)
        )
        if channel_id is not None:
            query = query.where(ToolCall.channel_id == channel_id)
        async with self._units.reading() as session:
            rows = (await session.execute(query)).all()
        return [
            ToolCallCount(
                server=server,
                tool=tool,
                calls=int(calls),
                failed=int(failed_calls or 0),
                duration_ms=int(duration or 0),
            )
            for server, tool, calls, failed_calls, duration in rows
        ]
