"""Persistence for the bot: threads and their response chains, turns, channel settings (with
an audit trail of their changes) and event claims, on SQLite (aiosqlite) or PostgreSQL
(asyncpg) through SQLAlchemy's asyncio API.

Typical wiring::

    engine = create_engine(url)
    await upgrade_to_head(url)
    store = Store(create_session_factory(engine))
    ...
    await engine.dispose()

This package never imports ``bot``.
"""

from storage.conversation_state import ConversationStateStore
from storage.engine import READ_ONLY, create_engine, create_migration_engine, create_session_factory
from storage.migrate import current_revision, head_revision, upgrade_to_head
from storage.models import SETTING_FIELDS, WORKSPACE_DEFAULT_CHANNEL, Base, TurnStatus
from storage.repositories import (
    AbandonedTurn,
    ChannelSettingsRecord,
    PruneCounts,
    SettingsAuditRecord,
    Store,
    ThreadRecord,
    TokenUsage,
    TurnNotFoundError,
    TurnRecord,
    TurnStart,
    UsageCounts,
    UsageGrouping,
    UsageRow,
)

__all__ = [
    "READ_ONLY",
    "SETTING_FIELDS",
    "WORKSPACE_DEFAULT_CHANNEL",
    "AbandonedTurn",
    "Base",
    "ChannelSettingsRecord",
    "ConversationStateStore",
    "PruneCounts",
    "SettingsAuditRecord",
    "Store",
    "ThreadRecord",
    "TokenUsage",
    "TurnNotFoundError",
    "TurnRecord",
    "TurnStart",
    "TurnStatus",
    "UsageCounts",
    "UsageGrouping",
    "UsageRow",
    "create_engine",
    "create_migration_engine",
    "create_session_factory",
    "current_revision",
    "head_revision",
    "upgrade_to_head",
]
