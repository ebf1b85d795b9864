"""Table definitions (SQLAlchemy 2 declarative).

Storage keeps ids and metadata here; the text of conversations (the transcript the service can
re-send itself) lives in ``storage.conversation_state``, pruned with its turns.
Every timestamp is a timezone-aware UTC ``datetime`` set by Python, so SQLite and PostgreSQL
store and return the same values (see :class:`UTCDateTime`).

Changing a table here needs a new revision in ``migrations/versions``; a test checks that
``alembic upgrade head`` produces exactly these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    Double,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

# The base and column types (storage.base); kept importable from here.
from storage.base import (
    EXTERNAL_ID,
    INTEGER_MAX,
    NAMING_CONVENTION,
    SLACK_ID,
    SLACK_TS,
    Base,
    UTCDateTime,
    utcnow,
)

# Defined with the records (SQLAlchemy-free); kept importable from here.
from storage.records import WORKSPACE_DEFAULT_CHANNEL, TurnStatus

__all__ = [
    "INTEGER_MAX",
    "NAMING_CONVENTION",
    "SETTING_FIELDS",
    "WORKSPACE_DEFAULT_CHANNEL",
    "AcceptedMessage",
    "AnswerFeedback",
    "AssistantThread",
    "Base",
    "ChannelSettings",
    "EventClaim",
    "SettingsAudit",
    "Thread",
    "ToolApproval",
    "ToolCall",
    "Turn",
    "TurnStatus",
    "UTCDateTime",
    "utcnow",
]


class Thread(Base):
    """A Slack thread the bot takes part in, and the head of its response chain."""

    __tablename__ = "threads"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key referenced by ``turns.thread_id``."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace (team) id."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack channel id."""
    thread_ts: Mapped[str] = mapped_column(SLACK_TS)
    """Slack ts of the thread's parent message."""
    head_response_id: Mapped[str | None] = mapped_column(EXTERNAL_ID)
    """Response id of the last completed turn: the next turn's ``previous_response_id``."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the bot first answered in this thread."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    """When the row last changed (the chain head advanced)."""


class Turn(Base):
    """One user message and the bot's answer to it."""

    __tablename__ = "turns"
    __table_args__ = (
        # list_turns: a thread's turns in order.
        Index("ix_turns_thread_id_id", "thread_id", "id"),
        # close_abandoned_turns: find pending turns without scanning history.
        Index("ix_turns_status", "status"),
        # tokens_used_since: a channel's recent turns (daily budgets, /ai usage).
        Index("ix_turns_team_id_channel_id_created_at", "team_id", "channel_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key; increasing, so it orders a thread's turns."""
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    """The thread this turn belongs to."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace id (denormalised for per-team reporting)."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack channel id (denormalised for per-channel reporting)."""
    user_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack user who wrote the message."""
    event_id: Mapped[str | None] = mapped_column(String(64))
    """Slack event id that delivered the message, if it came from the Events API."""
    user_ts: Mapped[str] = mapped_column(SLACK_TS)
    """Slack ts of the user's message."""
    reply_ts: Mapped[str | None] = mapped_column(SLACK_TS)
    """Slack ts of the bot's first reply message, once posted."""
    status: Mapped[str] = mapped_column(String(16), default=TurnStatus.PENDING.value)
    """A :class:`TurnStatus` value."""
    error_code: Mapped[str | None] = mapped_column(String(128))
    """Why the turn did not complete (an endpoint error code or one of the service's own)."""
    response_id: Mapped[str | None] = mapped_column(EXTERNAL_ID)
    """Id of the model response that answered this turn."""
    previous_response_id: Mapped[str | None] = mapped_column(EXTERNAL_ID)
    """Response the request continued from (None: the chain started afresh)."""
    model: Mapped[str] = mapped_column(String(255))
    """Model name sent in the request."""
    input_tokens: Mapped[int] = mapped_column(default=0)
    """Input tokens billed, including cached ones."""
    cached_tokens: Mapped[int] = mapped_column(default=0)
    """Input tokens served from the endpoint's prompt cache."""
    output_tokens: Mapped[int] = mapped_column(default=0)
    """Output tokens billed, including reasoning ones."""
    reasoning_tokens: Mapped[int] = mapped_column(default=0)
    """Output tokens spent on reasoning."""
    reserved_tokens: Mapped[int] = mapped_column(default=0)
    """Tokens held against the daily budgets while the turn runs (an estimate made when it
    was admitted); 0 once it is closed and its real usage counts instead."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the turn was recorded."""
    started_at: Mapped[datetime | None] = mapped_column()
    """When the model call began."""
    first_token_at: Mapped[datetime | None] = mapped_column()
    """When the first output text arrived (time to first token)."""
    finished_at: Mapped[datetime | None] = mapped_column()
    """When the turn was closed, whatever its outcome."""
    duration_ms: Mapped[int | None] = mapped_column()
    """Milliseconds from ``started_at`` to ``finished_at``."""


class ChannelSettings(Base):
    """Admin overrides for one channel, or a workspace's defaults (channel ``""``).

    Every setting is nullable: NULL means "inherit" (channel → workspace row → environment).
    """

    __tablename__ = "channel_settings"
    __table_args__ = (UniqueConstraint("team_id", "channel_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace id."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack channel id, or :data:`WORKSPACE_DEFAULT_CHANNEL` for the workspace's defaults."""
    model: Mapped[str | None] = mapped_column(String(255))
    """Model name."""
    instructions: Mapped[str | None] = mapped_column(Text)
    """System instructions, sent with every request (they do not carry over a chain)."""
    temperature: Mapped[float | None] = mapped_column(Double)
    """Sampling temperature."""
    top_p: Mapped[float | None] = mapped_column(Double)
    """Nucleus sampling mass."""
    max_output_tokens: Mapped[int | None] = mapped_column()
    """Cap on output tokens per response."""
    reasoning_effort: Mapped[str | None] = mapped_column(String(32))
    """Reasoning effort for reasoning models (e.g. "low", "medium", "high")."""
    reasoning_summary: Mapped[bool | None] = mapped_column(Boolean)
    """Whether to ask the model for a summary of its reasoning."""
    truncation: Mapped[str | None] = mapped_column(String(16))
    """Context truncation strategy sent to the endpoint ("auto" or "disabled")."""
    require_mention: Mapped[bool | None] = mapped_column(Boolean)
    """Whether follow-ups in a thread need to mention the bot to be answered."""
    enabled: Mapped[bool | None] = mapped_column(Boolean)
    """Whether the bot answers in this channel at all."""
    daily_token_budget: Mapped[int | None] = mapped_column()
    """Input plus output tokens the channel may use per day (0: no budget)."""
    workspace_daily_token_budget: Mapped[int | None] = mapped_column()
    """Tokens the whole workspace may use per day (0: no budget); set on the workspace row."""
    user_hourly_requests: Mapped[int | None] = mapped_column()
    """Questions one person may ask per hour across the workspace (0: no limit)."""
    conversation_state: Mapped[str | None] = mapped_column(String(16))
    """How turns carry the conversation: "auto", "chain" or "transcript"."""
    suggested_prompts: Mapped[list[str] | None] = mapped_column(JSON)
    """Prompts offered when someone opens the assistant pane (workspace row only)."""
    loading_messages: Mapped[list[str] | None] = mapped_column(JSON)
    """Messages Slack rotates while the model works (workspace row only)."""
    language: Mapped[str | None] = mapped_column(String(16))
    """The bot's own words for everyone ("auto": each person's Slack locale; workspace row)."""
    mcp_servers: Mapped[list[str] | None] = mapped_column(JSON)
    """Names of declared MCP servers (``MCP_SERVERS``) whose tools the model may call; names
    only: their URLs and keys stay in the environment."""
    hosted_tools: Mapped[list[str] | None] = mapped_column(JSON)
    """Tools the endpoint runs itself: ``web_search``, ``file_search``, ``code_interpreter``."""
    vector_store_ids: Mapped[list[str] | None] = mapped_column(JSON)
    """Vector store ids that ``file_search`` searches."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    """When the row last changed."""
    updated_by: Mapped[str | None] = mapped_column(SLACK_ID)
    """Slack user id of whoever changed it last (None: changed by the operator's CLI)."""


class SettingsAudit(Base):
    """One change of one channel setting: who changed which field from what to what.

    Values are JSON-encoded so every setting type fits one column and reads back with its
    type; NULL means "inherit".
    """

    __tablename__ = "settings_audit"
    __table_args__ = (
        # list_settings_audit: a team's or a channel's changes, newest first.
        Index(
            "ix_settings_audit_team_id_channel_id_changed_at",
            "team_id",
            "channel_id",
            "changed_at",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key; increasing, so it orders changes made at the same instant."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace id."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack channel id, or :data:`WORKSPACE_DEFAULT_CHANNEL` for the workspace's defaults."""
    field: Mapped[str] = mapped_column(String(32))
    """The setting that changed (a name in :data:`SETTING_FIELDS`)."""
    old_value: Mapped[str | None] = mapped_column(Text)
    """JSON-encoded value before the change (NULL: it was inheriting)."""
    new_value: Mapped[str | None] = mapped_column(Text)
    """JSON-encoded value after the change (NULL: it now inherits)."""
    changed_by: Mapped[str | None] = mapped_column(SLACK_ID)
    """Slack user id of whoever made the change, "cli", or None if unknown."""
    changed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    """When the change was committed (with the settings row's ``updated_at``)."""


class HeldAnswer(Base):
    """The final text of an answer that Slack does not hold whole yet.

    Kept from the moment the model finished until Slack has every message (the row goes
    when the turn closes), so that a restart finishes delivering it instead of losing it.
    """

    __tablename__ = "held_answers"

    turn_id: Mapped[int] = mapped_column(
        ForeignKey("turns.id", ondelete="CASCADE"), primary_key=True
    )
    """The turn the answer belongs to (still ``pending``)."""
    text: Mapped[str] = mapped_column(Text)
    """The whole answer as it must appear in Slack (notices included)."""
    delivery: Mapped[str | None] = mapped_column(Text)
    """JSON: which message was being finished and where in ``text`` it starts."""
    held_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the model finished."""


class EventClaim(Base):
    """A processed-event marker: the first process to insert a key owns the event."""

    __tablename__ = "event_claims"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    """Dedupe key, e.g. ``event:Ev123`` or ``msg:T1:C1:1700000000.000100``."""
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    """When the key was claimed; old claims are pruned by this column."""


class AcceptedMessage(Base):
    """A message Slack delivered (and got its 200 for) that has not become a turn yet: it may
    be waiting behind a running turn of its thread. Stored before the acknowledgement, deleted
    in the transaction that starts its turn (or once it is refused or ignored), so a crash or
    a shutdown never loses it: the next start answers it in order.

    The one table that keeps a message body (``payload``), and only for as long as the message
    waits; the Slack thread stays the transcript.
    """

    __tablename__ = "accepted_messages"
    __table_args__ = (
        # The next message of a thread, in Slack order.
        Index(
            "ix_accepted_messages_team_id_channel_id_thread_ts_ts",
            "team_id",
            "channel_id",
            "thread_ts",
            "ts",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key; breaks ties between messages with the same ``ts``."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace id."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack channel id."""
    thread_ts: Mapped[str] = mapped_column(SLACK_TS)
    """The thread the answer goes to."""
    ts: Mapped[str] = mapped_column(SLACK_TS)
    """Slack ts of the message (orders a thread's waiting messages)."""
    user_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack user who wrote it."""
    event_id: Mapped[str | None] = mapped_column(String(64))
    """Slack event id that delivered it."""
    payload: Mapped[str] = mapped_column(Text)
    """JSON: the message as the conversation layer needs it (text, files, flags)."""
    owner: Mapped[str] = mapped_column(String(64), index=True)
    """The service process (replica) that accepted it and will answer it; another process
    adopts it only once that one is gone."""
    accepted_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When Slack's delivery was accepted."""


class AssistantThread(Base):
    """A conversation in Slack's assistant pane (an AI-app thread in the app's DM), and the
    context the pane last reported: the channel the person is looking at.

    Keyed by (channel, thread ts) as Bolt's thread context store is (Slack's DM channel ids are
    unique across workspaces); the row marks the thread as a pane thread, so every replica
    knows it (Bolt's default store keeps the context in a message's metadata instead).
    """

    __tablename__ = "assistant_threads"
    __table_args__ = (UniqueConstraint("channel_id", "thread_ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace id of the DM ("" when Slack did not say)."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """The app's DM with the person (``D…``)."""
    thread_ts: Mapped[str] = mapped_column(SLACK_TS)
    """The pane thread's root ts."""
    user_id: Mapped[str | None] = mapped_column(SLACK_ID)
    """Who opened the pane."""
    context: Mapped[str | None] = mapped_column(Text)
    """JSON: the context Slack reported last (``channel_id``, ``team_id``,
    ``enterprise_id``), as Bolt hands it over; None until one was reported."""
    titled_at: Mapped[datetime | None] = mapped_column()
    """When the thread got its title (after its first answer); set once."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the pane thread started."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
    """When the row last changed; retention prunes by it."""


class AnswerFeedback(Base):
    """One person's 👍 or 👎 on one answer (a turn). One row per answer and person: a second
    click changes the vote. Deleted with its turn (``RETENTION_DAYS``)."""

    __tablename__ = "answer_feedback"
    __table_args__ = (
        UniqueConstraint("turn_id", "user_id"),
        # Usage reports: a workspace's (or channel's) feedback since a time.
        Index(
            "ix_answer_feedback_team_id_channel_id_updated_at",
            "team_id",
            "channel_id",
            "updated_at",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key."""
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    """The answer voted on; the vote is pruned with it."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace id (denormalised for reports)."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack channel id (denormalised for reports)."""
    model: Mapped[str] = mapped_column(String(255))
    """The model that answered (denormalised for reports)."""
    user_id: Mapped[str] = mapped_column(SLACK_ID)
    """Who voted."""
    value: Mapped[str] = mapped_column(String(8))
    """``good`` or ``bad``."""
    comment: Mapped[str | None] = mapped_column(Text)
    """An optional short comment given with a 👎."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """The first vote."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    """The last change (a changed vote, a comment)."""


class ToolApproval(Base):
    """A tool call waiting for (or given) the asker's yes: one row per question asked in
    Slack. Decided once (a conditional update from ``pending``), whichever replica the click
    lands on. Deleted with its turn (``RETENTION_DAYS``)."""

    __tablename__ = "tool_approvals"
    __table_args__ = (Index("ix_tool_approvals_turn_id", "turn_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key; the value of the Approve / Deny buttons."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    thread_ts: Mapped[str] = mapped_column(SLACK_TS)
    """The thread the question is asked in."""
    user_id: Mapped[str] = mapped_column(SLACK_ID)
    """The asker: the only person whose click counts."""
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    """The turn whose tool call waits; the question is pruned with it."""
    call_id: Mapped[str] = mapped_column(String(255))
    """The model's ``call_id`` of the function call."""
    server: Mapped[str] = mapped_column(String(255))
    """The MCP server's name (as the operator declared it)."""
    tool: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text)
    """What the call will do, short and made by the bot (never the tool's output)."""
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """``pending``, ``approved``, ``denied``, ``expired`` or ``withdrawn``."""
    decided_by: Mapped[str | None] = mapped_column(SLACK_ID)
    """Who clicked (the asker), for approved and denied."""
    message_ts: Mapped[str | None] = mapped_column(SLACK_TS)
    """The question's Slack message, once posted."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()
    """When it stopped being pending."""


class ToolCall(Base):
    """One tool call made while answering a turn: which tool, how it ended, how long it took
    and how much it gave back. Never its arguments or output (those reach the logs only, and
    only with ``LOG_MESSAGE_CONTENT``). Deleted with its turn."""

    __tablename__ = "tool_calls"
    __table_args__ = (
        # Usage reports: a workspace's (or channel's) tool calls since a time.
        Index("ix_tool_calls_team_id_channel_id_created_at", "team_id", "channel_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    """Surrogate key."""
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    """The turn the call was made for; pruned with it."""
    team_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack workspace id (denormalised for reports)."""
    channel_id: Mapped[str] = mapped_column(SLACK_ID)
    """Slack channel id (denormalised for reports)."""
    server: Mapped[str] = mapped_column(String(64))
    """The MCP server's declared name (``""`` when the model named no known tool)."""
    tool: Mapped[str] = mapped_column(String(128))
    """The tool's name on its server (the function name when unknown)."""
    status: Mapped[str] = mapped_column(String(16))
    """``ok``, ``tool_error``, ``timeout``, ``unavailable``, ``protocol_error``, ``rejected``,
    ``denied`` (the asker said no or did not answer) or ``cancelled`` (the user stopped)."""
    duration_ms: Mapped[int] = mapped_column(default=0)
    """How long the call ran (0 when it never ran)."""
    output_chars: Mapped[int] = mapped_column(default=0)
    """Characters of the tool's own output, before truncation."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the call ended."""


_SETTINGS_ROW_COLUMNS: Final = frozenset(
    {"id", "team_id", "channel_id", "updated_at", "updated_by"}
)

SETTING_FIELDS: Final = tuple(
    column.name
    for column in ChannelSettings.__table__.columns
    if column.name not in _SETTINGS_ROW_COLUMNS
)
"""The per-channel settings an admin may set (every other column of ``channel_settings``), in
column order; a NULL value means "inherit". Read from the table, so a new setting is one new
column (and its migration); ``bot.channel_settings.SCHEMA`` declares the same names."""
