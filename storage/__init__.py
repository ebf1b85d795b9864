"""Persistence for the bot: threads and their response chains, turns, channel settings (with
an audit trail of their changes) and event claims, on SQLite (aiosqlite) or PostgreSQL
(asyncpg) through SQLAlchemy's asyncio API.

Typical wiring::

    engine = create_engine(url)
    await upgrade_to_head(url)
    store = Store(create_session_factory(engine))
    ...
    await engine.dispose()

Each module has one job (see ``storage.repositories`` for the map). The names below are
importable from ``storage`` itself, loaded on first use: importing ``storage.records`` or
``storage.errors`` (what the conversation core needs) must not load SQLAlchemy, and Python
runs this file before any submodule.

This package never imports ``bot``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from storage.conversation_state import ConversationStateStore
    from storage.engine import (
        READ_ONLY,
        create_engine,
        create_migration_engine,
        create_session_factory,
    )
    from storage.errors import StorageError, TurnNotFoundError
    from storage.migrate import current_revision, head_revision, upgrade_to_head
    from storage.models import SETTING_FIELDS, Base
    from storage.records import (
        WORKSPACE_DEFAULT_CHANNEL,
        AbandonedTurn,
        ChannelSettingsRecord,
        PruneCounts,
        SettingsAuditRecord,
        ThreadRecord,
        TokenUsage,
        TurnRecord,
        TurnStart,
        TurnStatus,
        UsageCounts,
        UsageGrouping,
        UsageRow,
    )
    from storage.repositories import Store

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
    "StorageError",
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

# Where each name above lives; a name not listed here comes from storage.records.
_HOMES: Final = {
    "READ_ONLY": "storage.engine",
    "create_engine": "storage.engine",
    "create_migration_engine": "storage.engine",
    "create_session_factory": "storage.engine",
    "StorageError": "storage.errors",
    "TurnNotFoundError": "storage.errors",
    "current_revision": "storage.migrate",
    "head_revision": "storage.migrate",
    "upgrade_to_head": "storage.migrate",
    "Base": "storage.models",
    "SETTING_FIELDS": "storage.models",
    "ConversationStateStore": "storage.conversation_state",
    "Store": "storage.repositories",
}


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES.get(name, "storage.records")), name)
    globals()[name] = value  # once found, an ordinary module attribute
    return value
