"""The turn core imports no Slack, HTTP or database type: adapters stay at the edges.

Two checks: every import statement in ``bot/conversation/`` names the standard library or one
of the few project modules the core may use (read from the source, so an import inside a
function or under ``TYPE_CHECKING`` counts too); and importing the package in a fresh
interpreter loads none of the forbidden libraries, however indirectly (a package's
``__init__`` can pull a whole client in).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.layout import REPO, imported_modules, loaded_after

PACKAGE = REPO / "bot" / "conversation"

ALLOWED = (
    "bot.conversation",
    "bot.channel_settings",
    "bot.errors",
    "bot.model.types",
    "bot.model.error_meaning",
    "bot.text_safety",
    "bot.thread_locks",
    "bot.user_messages",
    "bot.i18n",
    "storage.records",
    "storage.tool_records",
    "storage.errors",
)
"""Project modules the core may import: plain types, pure rules, the one error trees."""
_PLAIN_STORAGE = ("storage.records", "storage.tool_records", "storage.errors")
"""Storage modules without SQLAlchemy: the records and the one error tree."""

ALLOWED_LIBRARIES = ("cachetools", "babel")
"""Third-party libraries the core may import: pure, no I/O."""

FORBIDDEN_LIBRARIES = (
    "slack_sdk",
    "slack_bolt",
    "aiohttp",
    "httpx",
    "httpx2",
    "mcp",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "pydantic_settings",
)
FORBIDDEN_MODULES = ("bot.slack", "bot.model.client", "bot.service", "bot.settings", "bot.tools")


def _allowed(name: str) -> bool:
    # A relative import ("." first) is refused too: the allow-list reads absolute names.
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top == "__future__" or top in ALLOWED_LIBRARIES:
        return True
    return any(name == ok or name.startswith(ok + ".") for ok in ALLOWED)


def test_every_import_of_the_core_is_allowed() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5, "the core's modules were not found"
    stray = {
        f"{path.name}: {name}"
        for path in modules
        for name in imported_modules(path)
        if not _allowed(name)
    }
    assert stray == set()


def test_the_allow_list_check_catches_a_foreign_import(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from slack_sdk.web.async_client import AsyncWebClient\n"
        "def f():\n    import sqlalchemy\n"
    )
    assert sorted(n for n in imported_modules(sneaky) if not _allowed(n)) == [
        "slack_sdk.web.async_client",
        "sqlalchemy",
    ]


def test_importing_the_core_loads_no_slack_http_or_database_library() -> None:
    loaded = loaded_after("import bot.conversation")
    assert "bot.conversation.service" in loaded  # the whole package was imported
    forbidden = [
        name
        for name in loaded
        if name.split(".")[0] in FORBIDDEN_LIBRARIES
        or any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES)
        or (name.startswith("storage.") and name not in _PLAIN_STORAGE)
    ]
    assert forbidden == []
