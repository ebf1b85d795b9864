"""The shape of ``bot``: modules small enough to read, each about one job."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layout import REPO, imported_modules

BOT = REPO / "bot"
MODULES = sorted(BOT.rglob("*.py"))
MAX_LINES = 500
CORE_MAX_LINES = 400
"""The turn core (``bot/conversation/``) is read most often by newcomers: smaller still."""

WAITING_FOR_A_SPLIT: dict[str, str] = {}
"""Modules known to be too large, each with the change that splits it."""


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _name(path: Path) -> str:
    return path.relative_to(BOT).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_bot_module_is_over_500_lines(path: Path) -> None:
    if _name(path) in WAITING_FOR_A_SPLIT:
        pytest.skip(WAITING_FOR_A_SPLIT[_name(path)])
    lines = _lines(path)
    limit = CORE_MAX_LINES if _name(path).startswith("conversation/") else MAX_LINES
    assert lines <= limit, f"bot/{_name(path)} has {lines} lines: split it by job"


@pytest.mark.parametrize("name", sorted(WAITING_FOR_A_SPLIT))
def test_a_module_waiting_for_a_split_still_needs_it(name: str) -> None:
    # Once split, its entry goes: the list never hides a module that is fine again.
    assert _lines(BOT / name) > MAX_LINES, f"bot/{name} is small now: remove its entry"


# Imports point one way: the outer layer (service, CLI, doctor, HTTP server) wires the edges;
# the edges (Slack, model client, MCP tools, settings schema) may use the turn core's ports;
# the core uses only plain types (tests/conversation/test_imports.py); storage never imports
# bot (tests/storage/test_layout.py).
OUTER = (
    "bot.service",
    "bot.cli",
    "bot.doctor",
    "bot.doctor_model",
    "bot.doctor_report",
    "bot.server",
    "bot.__main__",
)
NEVER = {
    "bot/slack": OUTER,
    "bot/model": (*OUTER, "bot.slack", "bot.conversation", "bot.tools"),
    "bot/tools": (*OUTER, "bot.slack", "bot.conversation", "bot.model.client"),
    "bot/channel_settings": (*OUTER, "bot.slack", "bot.conversation", "bot.model", "storage"),
}


@pytest.mark.parametrize("folder", sorted(NEVER))
def test_imports_point_one_way(folder: str) -> None:
    wrong = {
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == banned or name.startswith(banned + ".") for banned in NEVER[folder])
    }
    assert wrong == set()
