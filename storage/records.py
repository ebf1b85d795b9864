"""What storage hands out and takes in: plain frozen dataclasses and enums, never ORM objects.

Callers (the conversation core above all) read these without touching SQLAlchemy: this module
imports nothing of it (a test checks), so code that only needs the records can import them
without loading the database layer. Records are frozen, so callers cannot trigger lazy loads
or change rows by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

# The records of tool calls and their approvals (storage.tool_records); kept importable here.
from storage.tool_records import (
    ApprovalDecision,
    ApprovalRecord,
    ApprovalStatus,
    ToolCallCount,
    ToolCallRecord,
)

__all__ = [
    "WORKSPACE_DEFAULT_CHANNEL",
    "AbandonedTurn",
    "AcceptResult",
    "Acceptance",
    "ApprovalDecision",
    "ApprovalRecord",
    "ApprovalStatus",
    "AssistantThreadRecord",
    "CapabilityRecord",
    "ChannelSettingsRecord",
    "FeedbackCount",
    "FeedbackGrouping",
    "FeedbackValue",
    "FeedbackVote",
    "HeldAnswerRecord",
    "LimitKind",
    "LimitReached",
    "PruneCounts",
    "QueuedMessage",
    "ResponseUsage",
    "SettingsAuditRecord",
    "ThreadRecord",
    "TokenUsage",
    "ToolCallCount",
    "ToolCallRecord",
    "TranscriptRecord",
    "TurnLimits",
    "TurnRecord",
    "TurnStart",
    "TurnStatus",
    "UsageCounts",
    "UsageGrouping",
    "UsageRow",
]

WORKSPACE_DEFAULT_CHANNEL: Final = ""
"""``channel_settings.channel_id`` of a workspace's default row.

An empty string rather than NULL, because NULLs never collide in a unique constraint on
either engine, so NULL would allow several "default" rows per workspace.
"""

"""The per-channel settings an admin may set; a NULL value means "inherit"."""


class TurnStatus(StrEnum):
    """Lifecycle of a turn (stored as its string value)."""

    PENDING = "pending"
    """The request is in flight (or a crash left it so: see ``close_abandoned_turns``)."""
    COMPLETED = "completed"
    """The answer was delivered; the thread's chain head now points at its response."""
    FAILED = "failed"
    """The model call or its delivery failed; ``error_code`` says why."""
    INCOMPLETE = "incomplete"
    """The endpoint ended the response early (e.g. ``max_output_tokens``)."""
    STOPPED = "stopped"
    """The user stopped the streamed answer in Slack."""
    UNDELIVERED = "undelivered"
    """The model answered but the reply could not be posted to Slack."""


# -- threads and turns ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one response, already normalised by the model client."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    """A thread and the head of its response chain."""

    id: int
    team_id: str
    channel_id: str
    thread_ts: str
    head_response_id: str | None


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What ``start_turn`` created: the request continues from ``previous_response_id``."""

    turn_id: int
    thread_id: int
    previous_response_id: str | None


@dataclass(frozen=True, slots=True)
class AbandonedTurn:
    """A turn a crash left pending, now closed; enough to tell its thread in Slack."""

    turn_id: int
    team_id: str
    channel_id: str
    thread_ts: str
    user_ts: str
    user_id: str = ""
    """Who asked: the note is in their language."""


@dataclass(frozen=True, slots=True)
class HeldAnswerRecord:
    """An answer the model finished that Slack does not hold whole yet (see
    ``storage.held_answers``)."""

    turn_id: int
    team_id: str
    channel_id: str
    thread_ts: str
    user_ts: str
    user_id: str
    text: str
    delivery: str | None
    response_id: str
    usage: TokenUsage
    first_token_at: datetime | None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """Every column of a ``turns`` row."""

    id: int
    thread_id: int
    team_id: str
    channel_id: str
    user_id: str
    event_id: str | None
    user_ts: str
    reply_ts: str | None
    status: str
    error_code: str | None
    response_id: str | None
    previous_response_id: str | None
    model: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    reserved_tokens: int
    created_at: datetime
    started_at: datetime | None
    first_token_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None

    @property
    def usage(self) -> TokenUsage:
        """The token counts as a :class:`TokenUsage`."""
        return TokenUsage(
            input_tokens=self.input_tokens,
            cached_tokens=self.cached_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


# -- channel settings ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelSettingsRecord:
    """A ``channel_settings`` row; a None setting means "inherit"."""

    team_id: str
    channel_id: str
    values: Mapping[str, object]
    """Every setting of the row by name (the columns' order); None: inherit."""
    updated_at: datetime
    updated_by: str | None

    def overrides(self) -> dict[str, object]:
        """The settings this row sets (non-None), by name."""
        return {name: value for name, value in self.values.items() if value is not None}

    def __getattr__(self, name: str) -> object:
        # A setting by name (``record.model``); only reached for names that are not fields.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True, slots=True)
class SettingsAuditRecord:
    """One recorded change of one setting; a None value means "inherit"."""

    id: int
    team_id: str
    channel_id: str
    """The channel, or ``""`` for the workspace defaults."""
    field: str
    old_value: object
    """The value before the change, with its Python type (None: it was inheriting)."""
    new_value: object
    """The value after the change (None: it now inherits)."""
    changed_by: str | None
    changed_at: datetime


# -- usage and retention -------------------------------------------------------------------

UsageGrouping = Literal["channel", "user", "model"]
"""What ``Store.usage_since`` groups turns by."""


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """Tokens and turns summed over some turns (input includes cached, output reasoning)."""

    turns: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (what daily budgets count)."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(
            turns=self.turns + other.turns,
            input_tokens=self.input_tokens + other.input_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of ``Store.usage_since``: a channel, user or model of one workspace."""

    team_id: str
    key: str
    """The channel id, user id or model name the row groups by."""
    counts: UsageCounts
    by_model: Mapping[str, UsageCounts]
    """The same counts split by model (for cost estimates; one entry when grouped by model)."""


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """Rows ``Store.prune_history`` deleted, per table."""

    turns: int = 0
    threads: int = 0
    event_claims: int = 0
    settings_audit: int = 0
    assistant_threads: int = 0

    @property
    def total(self) -> int:
        return (
            self.turns
            + self.threads
            + self.event_claims
            + self.settings_audit
            + self.assistant_threads
        )


# -- intake (storage.intake) ---------------------------------------------------------------

LimitKind = Literal["user_hourly_requests", "daily_token_budget", "workspace_daily_token_budget"]


class Acceptance(StrEnum):
    ACCEPTED = "accepted"
    """Stored; it will be answered (or refused, or found not for the bot) in order."""
    DUPLICATE = "duplicate"
    """Its event was claimed before (a Slack retry, or the same message twice)."""
    NOT_IN_THREAD = "not_in_thread"
    """Not addressed to the bot, in a thread the bot is not part of: nothing stored."""


@dataclass(frozen=True, slots=True)
class AcceptResult:
    status: Acceptance
    queued_id: int | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """An accepted message that has not become a turn yet."""

    id: int
    team_id: str
    channel_id: str
    thread_ts: str
    ts: str
    user_id: str
    event_id: str | None
    payload: dict[str, Any]
    owner: str


@dataclass(frozen=True, slots=True)
class TurnLimits:
    """The limits a new turn must fit in (0: no limit)."""

    user_hourly_requests: int = 0
    channel_daily_tokens: int = 0
    workspace_daily_tokens: int = 0
    reserve_tokens: int = 0
    """The caller's estimate for the new message and its answer; the thread's size so far is
    added to it (see ``storage.intake``)."""


@dataclass(frozen=True, slots=True)
class LimitReached:
    """Why a turn was not admitted."""

    kind: LimitKind
    limit: int
    used: int
    """Questions asked in the last hour, or tokens used today."""
    held: int
    """Tokens held by turns still running (token budgets only)."""
    again_at: datetime
    """When the person can ask again: when enough of their questions have left the hour, or
    when the day's budget resets (00:00 UTC)."""


# -- conversation state (storage.conversation_state) ---------------------------------------


@dataclass(frozen=True, slots=True)
class TranscriptRecord:
    """A ``transcript_entries`` row; ``files`` are the Slack descriptors as stored."""

    id: int
    turn_id: int
    role: str
    author_id: str | None
    text: str
    files: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CapabilityRecord:
    """An ``endpoint_capabilities`` row."""

    endpoint: str
    model: str
    chains: str
    chains_source: str
    tools: bool | None
    streaming: bool | None
    detail: str | None
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class ResponseUsage:
    """Token counts and model of the turn that produced a response (for continuity checks)."""

    model: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int


# -- the assistant pane (storage.assistant_threads) ------------------------------------------


@dataclass(frozen=True, slots=True)
class AssistantThreadRecord:
    """A conversation in Slack's assistant pane and the context it reported last."""

    team_id: str
    channel_id: str
    thread_ts: str
    user_id: str | None
    context: Mapping[str, str] | None
    """``channel_id`` (the channel the person is viewing), ``team_id``, ``enterprise_id``."""
    titled: bool

    @property
    def viewing(self) -> str | None:
        """The channel the person was last seen viewing, if the pane said."""
        channel = (self.context or {}).get("channel_id")
        return channel if isinstance(channel, str) and channel else None


# -- feedback on answers (storage.feedback) ---------------------------------------------------

FeedbackValue = Literal["good", "bad"]
FeedbackGrouping = Literal["channel", "model"]


@dataclass(frozen=True, slots=True)
class FeedbackVote:
    """A vote as stored: whose, on which answer, and what it was before (None: a first vote)."""

    turn_id: int
    team_id: str
    channel_id: str
    model: str
    user_id: str
    value: FeedbackValue
    previous: FeedbackValue | None


@dataclass(frozen=True, slots=True)
class FeedbackCount:
    """👍 and 👎 of one channel or model of one workspace."""

    team_id: str
    key: str
    good: int
    bad: int
