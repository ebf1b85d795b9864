"""The records of tools: each tool call as accounting keeps it, and approval questions.

Plain frozen dataclasses and enums like ``storage.records`` (which re-exports them), importing
nothing of SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "ApprovalDecision",
    "ApprovalRecord",
    "ApprovalStatus",
    "ToolCallCount",
    "ToolCallRecord",
]


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call of a turn, as accounting keeps it: never its arguments or output."""

    turn_id: int
    team_id: str
    channel_id: str
    server: str
    tool: str
    status: str
    duration_ms: int
    output_chars: int


@dataclass(frozen=True, slots=True)
class ToolCallCount:
    """Tool calls of one server's tool since a time (``/ai usage``)."""

    server: str
    tool: str
    calls: int
    failed: int
    """Calls that did not end ``ok``."""
    duration_ms: int


# -- tool approvals (storage.tool_approvals) --------------------------------------------------


class ApprovalStatus(StrEnum):
    """Where a tool call's approval question stands (stored as its string value)."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    """No answer in time: a denial."""
    WITHDRAWN = "withdrawn"
    """The turn stopped waiting (a user stop, shutdown)."""


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A tool call's approval question as stored (ids and the bot-made title; never the
    call's arguments or output)."""

    id: int
    team_id: str
    channel_id: str
    thread_ts: str
    user_id: str
    """The asker: the only person whose click counts."""
    turn_id: int
    call_id: str
    server: str
    tool: str
    title: str
    status: ApprovalStatus
    decided_by: str | None
    message_ts: str | None
    created_at: datetime
    decided_at: datetime | None


class ApprovalDecision(StrEnum):
    """What became of a click on Approve / Deny."""

    DECIDED = "decided"
    """This click decided the question (exactly one click ever does)."""
    NOT_ASKER = "not_asker"
    """Someone other than the asker: nothing changed."""
    ALREADY_DECIDED = "already_decided"
    """The question was decided, expired or withdrawn before."""
    UNKNOWN = "unknown"
    """No such question (pruned with its turn, or not ours)."""
