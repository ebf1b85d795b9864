"""The storage facade: :class:`Store`, one object that wires each aggregate's repository to one
database and offers their methods under the names callers have always used.

Where each job lives (one module each, one small class each):

* ``storage.threads``: threads and turns, the chain head (:class:`~storage.threads.Threads`)
* ``storage.channel_settings``: channel settings and their audit
* ``storage.usage``: token usage and usage reports
* ``storage.retention``: pruning old history
* ``storage.claims``: event claims (each Slack event handled once)
* ``storage.held_answers``: finished answers Slack does not hold whole yet
* ``storage.assistant_threads``: conversations in Slack's assistant pane and their context
* ``storage.feedback``: 👍/👎 on answers and their counts
* ``storage.tool_approvals``: tool calls waiting for the asker's yes
* ``storage.tool_calls``: tool calls of turns and their counts
* ``storage.health``: ping and schema check
* ``storage.units``: the units of work they all run in
* ``storage.records``: the records they return (SQLAlchemy-free)

New code may take the one repository it needs (``store.threads``, ``store.usage``, …) instead
of the whole store. Repositories in other modules (``storage.intake``) share the store's units
of work through :meth:`Store.writing` and :meth:`Store.reading`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.assistant_threads import AssistantThreads
from storage.channel_settings import ChannelSettingsStore
from storage.claims import EventClaims
from storage.errors import TurnNotFoundError as TurnNotFoundError
from storage.feedback import FeedbackStore
from storage.health import Health
from storage.held_answers import HeldAnswers
from storage.records import AbandonedTurn as AbandonedTurn
from storage.records import ChannelSettingsRecord as ChannelSettingsRecord
from storage.records import HeldAnswerRecord as HeldAnswerRecord
from storage.records import PruneCounts as PruneCounts
from storage.records import SettingsAuditRecord as SettingsAuditRecord
from storage.records import ThreadRecord as ThreadRecord
from storage.records import TokenUsage as TokenUsage
from storage.records import TurnRecord as TurnRecord
from storage.records import TurnStart as TurnStart
from storage.records import UsageCounts as UsageCounts
from storage.records import UsageGrouping as UsageGrouping
from storage.records import UsageRow as UsageRow
from storage.retention import Retention
from storage.threads import Threads
from storage.tool_approvals import ToolApprovals
from storage.tool_calls import ToolCallStore
from storage.units import UnitsOfWork
from storage.usage import UsageReports

# The records and TurnNotFoundError are re-exported above (``X as X``) for callers that import
# them from here; their home is storage.records / storage.errors.
__all__ = ["Store"]


class Store:
    """All persistence the bot needs, one short transaction per method.

    Build it with ``Store(create_session_factory(engine))``. Methods take keyword arguments
    only, so the Slack keys (team, channel, thread ts) can never be passed in the wrong order.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.units = UnitsOfWork(session_factory)
        self.health = Health(self.units)
        self.claims = EventClaims(self.units)
        self.threads = Threads(self.units)
        self.held_answers = HeldAnswers(self.units)
        self.channel_settings = ChannelSettingsStore(self.units)
        self.usage = UsageReports(self.units)
        self.assistant_threads = AssistantThreads(self.units)
        self.tool_calls = ToolCallStore(self.units)
        self.feedback = FeedbackStore(self.units)
        self.tool_approvals = ToolApprovals(self.units)
        self.retention = Retention(
            self.units, claims=self.claims, assistant_threads=self.assistant_threads
        )

        # The facade: each name is the repository's own bound method (same signature and
        # docstring), so nothing is written twice.
        self.ping = self.health.ping
        self.schema_is_current = self.health.schema_is_current

        self.claim_event = self.claims.claim_event
        self.prune_event_claims = self.claims.prune_event_claims

        self.find_thread = self.threads.find_thread
        self.start_turn = self.threads.start_turn
        self.restart_chain = self.threads.restart_chain
        self.complete_turn = self.threads.complete_turn
        self.fail_turn = self.threads.fail_turn
        self.list_pending_turns = self.threads.list_pending_turns
        self.close_abandoned_turns = self.threads.close_abandoned_turns
        self.get_turn = self.threads.get_turn
        self.list_turns = self.threads.list_turns

        self.hold_answer = self.held_answers.hold_answer
        self.record_delivery = self.held_answers.record_delivery
        self.list_held_answers = self.held_answers.list_held_answers
        self.is_held = self.held_answers.is_held

        self.get_channel_settings = self.channel_settings.get_channel_settings
        self.update_channel_settings = self.channel_settings.update_channel_settings
        self.reset_channel_settings = self.channel_settings.reset_channel_settings
        self.list_channel_settings = self.channel_settings.list_channel_settings
        self.list_settings_audit = self.channel_settings.list_settings_audit

        self.tokens_used_since = self.usage.tokens_used_since
        self.turns_by_user_since = self.usage.turns_by_user_since
        self.usage_since = self.usage.usage_since
        self.top_users = self.usage.top_users
        self.feedback_since = self.feedback.counts_since
        self.record_tool_calls = self.tool_calls.record_tool_calls
        self.tool_calls_since = self.tool_calls.counts_since

        self.prune_history = self.retention.prune_history

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        """The factory the store was built with (for tests and one-off maintenance)."""
        return self.units.session_factory

    def writing(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A write unit of work, for repositories in other modules (``storage.intake``,
        ``storage.conversation_state``): it queues with this store's other writers."""
        return self.units.writing()

    def reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read-only unit of work, for repositories in other modules."""
        return self.units.reading()
