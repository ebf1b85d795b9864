"""Tool calls waiting for the asker's yes: the one home of the ``tool_approvals`` table.

A question is decided exactly once, whichever replica a click lands on and however often it
is clicked: every change of status is one conditional ``UPDATE … WHERE status = 'pending'``,
and only the caller whose update changed the row acts on it (tells Slack, answers the
model). Rows belong to their turn (``ON DELETE CASCADE``), so ``RETENTION_DAYS`` prunes them
with it.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select, update

from storage.models import ToolApproval, utcnow
from storage.records import ApprovalDecision, ApprovalRecord, ApprovalStatus
from storage.units import UnitsOfWork

__all__ = ["ToolApprovals"]

_PENDING: Final = ApprovalStatus.PENDING.value
_CLOSED: Final = frozenset({ApprovalStatus.EXPIRED, ApprovalStatus.WITHDRAWN})


class ToolApprovals:
    """Approval questions, one short transaction per method."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def create(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        turn_id: int,
        call_id: str,
        server: str,
        tool: str,
        title: str,
    ) -> ApprovalRecord:
        """A pending question, asked of ``user_id`` in the thread."""
        async with self._units.writing() as session:
            row = ToolApproval(
                team_id=team_id,
                channel_id=channel_id,
                thread_ts=thread_ts,
                user_id=user_id,
                turn_id=turn_id,
                call_id=call_id[:255],
                server=server[:255],
                tool=tool[:255],
                title=title,
                status=_PENDING,
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            return _record(row)

    async def set_message(self, *, approval_id: int, message_ts: str) -> None:
        """The question's Slack message, once posted."""
        async with self._units.writing() as session:
            await session.execute(
                update(ToolApproval)
                .where(ToolApproval.id == approval_id)
                .values(message_ts=message_ts)
            )

    async def get(self, approval_id: int) -> ApprovalRecord | None:
        async with self._units.reading() as session:
            row = await session.get(ToolApproval, approval_id)
            return _record(row) if row is not None else None

    async def decide(
        self, *, approval_id: int, team_id: str, user_id: str, approve: bool
    ) -> tuple[ApprovalDecision, ApprovalRecord | None]:
        """A click on Approve (``approve``) or Deny by ``user_id`` of ``team_id``: decides the
        question only if it is pending and ``user_id`` asked it. Returns what the click did
        and the question as it stands after it (``None`` when there is no such question, or
        it belongs to another workspace)."""
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        async with self._units.writing() as session:
            row = await session.get(ToolApproval, approval_id)
            if row is None or row.team_id != team_id:
                return ApprovalDecision.UNKNOWN, None
            if row.user_id != user_id:
                return ApprovalDecision.NOT_ASKER, _record(row)
            changed = await session.execute(
                update(ToolApproval)
                .where(
                    ToolApproval.id == approval_id,
                    ToolApproval.user_id == user_id,
                    ToolApproval.status == _PENDING,
                )
                .values(status=status.value, decided_by=user_id, decided_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await session.refresh(row)
            won = _rowcount(changed) == 1
            return (
                ApprovalDecision.DECIDED if won else ApprovalDecision.ALREADY_DECIDED,
                _record(row),
            )

    async def close(
        self, *, approval_id: int, status: ApprovalStatus
    ) -> tuple[bool, ApprovalRecord | None]:
        """End a pending question without a click (``expired`` or ``withdrawn``). Returns
        whether this call closed it, and the question as it stands (a click may have decided
        it first: then that decision holds)."""
        if status not in _CLOSED:
            raise ValueError(f"close() takes expired or withdrawn, not {status!r}")
        async with self._units.writing() as session:
            changed = await session.execute(
                update(ToolApproval)
                .where(ToolApproval.id == approval_id, ToolApproval.status == _PENDING)
                .values(status=status.value, decided_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            row = await session.get(ToolApproval, approval_id, populate_existing=True)
            return _rowcount(changed) == 1, _record(row) if row is not None else None

    async def list_for_turn(self, turn_id: int) -> list[ApprovalRecord]:
        """A turn's questions, oldest first."""
        async with self._units.reading() as session:
            rows = await session.scalars(
                select(ToolApproval)
                .where(ToolApproval.turn_id == turn_id)
                .order_by(ToolApproval.id)
            )
            return [_record(row) for row in rows]


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _record(row: ToolApproval) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id,
        team_id=row.team_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        user_id=row.user_id,
        turn_id=row.turn_id,
        call_id=row.call_id,
        server=row.server,
        tool=row.tool,
        title=row.title,
        status=ApprovalStatus(row.status),
        decided_by=row.decided_by,
        message_ts=row.message_ts,
        created_at=row.created_at,
        decided_at=row.decided_at,
    )
