"""The settings schema: each setting declared once, and every surface derived from it.

Pure unit tests (no network, no database): parsing and ranges, exact round trips, layer
resolution, that the schema agrees with the storage columns, the environment and README, and
that a new kind of setting (a list, workspace-only) works through every surface as one entry.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from bot.channel_settings import (
    MAX_COUNT,
    SCHEMA,
    WORKSPACE_DEFAULTS,
    InvalidSetting,
    Schema,
    Setting,
    resolve,
)
from bot.channel_settings.flags import add_setting_flags, typed_settings
from bot.channel_settings.kinds import Name, TextList
from bot.channel_settings.schema import BOTH, WORKSPACE_ONLY
from bot.settings import Settings, StorageSettings
from storage.models import INTEGER_MAX, SETTING_FIELDS, WORKSPACE_DEFAULT_CHANNEL

REPO = Path(__file__).resolve().parents[2]


def parse(name: str, raw: str) -> Any:
    return SCHEMA.find(name).parse(raw)


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("model", " gpt-4o ", "gpt-4o"),
        ("temperature", "0", 0.0),
        ("temperature", "2", 2.0),
        ("top_p", "0.5", 0.5),
        ("max_output_tokens", "1,024", 1024),
        ("reasoning_effort", "HIGH", "high"),
        ("reasoning-effort", "low", "low"),
        ("instructions", "Be brief.", "Be brief."),
        ("enabled", "yes", True),
        ("require_mention", "OFF", False),
        ("daily_token_budget", "10_000", 10_000),
    ],
)
def test_valid_values_are_parsed(field: str, raw: str, expected: object) -> None:
    assert parse(field, raw) == expected


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("temperature", "2.5", "temperature must be a number from 0 to 2"),
        ("temperature", "-1", "temperature must be a number from 0 to 2"),
        ("temperature", "hot", "temperature must be a number from 0 to 2"),
        ("temperature", "nan", "temperature must be a number from 0 to 2"),
        ("top_p", "1.5", "top_p must be a number from 0 to 1"),
        ("max_output_tokens", "-5", "max_output_tokens must be a whole number from 16"),
        ("max_output_tokens", "many", "max_output_tokens must be a whole number from 16"),
        ("reasoning_effort", "extreme", "reasoning_effort must be one of low, medium, high"),
        ("model", "two words", "model must be a model name without spaces"),
        ("instructions", "x" * 3001, "instructions must be at most 3,000 characters"),
        ("instructions", "a\x1bb", "instructions must be text without control characters"),
        ("enabled", "maybe", "enabled must be on or off"),
        (
            "daily_token_budget",
            "3000000000",
            "a whole number of tokens from 0 to 2,147,483,647 (0 = no budget)",
        ),
        ("colour", "blue", "unknown setting 'colour': valid settings are model, instructions"),
    ],
)
def test_invalid_values_name_the_valid_range(field: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidSetting, match=re.escape(message)):
        parse(field, raw)


def test_field_names_accept_cli_spelling() -> None:
    assert SCHEMA.find("Max-Output-Tokens").name == "max_output_tokens"


def test_the_allow_list_applies_to_model_names_only() -> None:
    model = SCHEMA["model"]
    assert model.parse("gpt-a", allowed_models=("gpt-a",)) == "gpt-a"
    with pytest.raises(InvalidSetting, match="model must be one of the allowed models: gpt-a"):
        model.parse("gpt-z", allowed_models=("gpt-a",))
    assert SCHEMA["instructions"].parse("gpt-z", allowed_models=("gpt-a",)) == "gpt-z"


SAMPLES: dict[str, object] = {
    "model": "gpt-4o-mini",
    "instructions": "Line one.\n\tLine two, R&D <b>.",
    "temperature": 0.1234567,
    "top_p": 1.0,
    "max_output_tokens": 1_000_000,
    "reasoning_effort": "medium",
    "reasoning_summary": False,
    "truncation": "disabled",
    "require_mention": True,
    "enabled": False,
    "daily_token_budget": 0,
    "workspace_daily_token_budget": MAX_COUNT,
    "user_hourly_requests": 7,
    "conversation_state": "transcript",
    "suggested_prompts": ("Summarise this channel, briefly", "What's new?"),
    "loading_messages": ("Reading…", "Thinking, hard…"),
    "language": "zh-CN",
    "mcp_servers": ("orders", "wiki-search"),
    "hosted_tools": ("web_search", "code_interpreter"),
    "vector_store_ids": ("vs_abc123", "vs_def456"),
}

# The names only the running service knows (MCP_SERVERS), as the service declares them.
DECLARED = SCHEMA.declaring(mcp_servers=("orders", "wiki-search", "admin"))


@pytest.mark.parametrize("setting", list(DECLARED), ids=lambda s: s.name)
def test_every_value_round_trips_through_its_exact_text(setting: Setting) -> None:
    # What the form shows is what it saves: text() parses back to the very same value.
    value = SAMPLES[setting.name]
    again = setting.parse(setting.text(value))
    assert again == value
    assert type(again) is type(value)


def test_mcp_servers_are_checked_against_the_declared_servers() -> None:
    setting = DECLARED["mcp_servers"]
    assert setting.parse(" Orders , admin,orders") == ("orders", "admin")
    with pytest.raises(InvalidSetting) as refused:
        setting.parse("orders, billing")
    assert str(refused.value) == (
        "mcp_servers: unknown 'billing'; the valid values are: orders, wiki-search, admin"
    )
    # A path that did not say which servers exist refuses every name, and says why.
    with pytest.raises(InvalidSetting, match=r"none \(no MCP servers \(MCP_SERVERS\) are"):
        SCHEMA["mcp_servers"].parse("orders")
    assert SCHEMA["mcp_servers"].valid == "comma-separated, some of the MCP servers (MCP_SERVERS)"


def test_hosted_tools_are_the_three_the_endpoint_runs() -> None:
    setting = SCHEMA["hosted_tools"]
    assert setting.parse("file_search,web_search") == ("file_search", "web_search")
    with pytest.raises(InvalidSetting, match="unknown 'browser'"):
        setting.parse("web_search, browser")
    assert SCHEMA["vector_store_ids"].parse("vs_1, vs_2") == ("vs_1", "vs_2")
    with pytest.raises(InvalidSetting, match="one word"):
        SCHEMA["vector_store_ids"].parse("vs 1")


def test_the_schema_is_the_storage_columns_and_matches_the_environment() -> None:
    # Adding a setting = one schema entry + one migration adding its column: this says so.
    assert SCHEMA.names == SETTING_FIELDS
    assert MAX_COUNT == INTEGER_MAX
    assert WORKSPACE_DEFAULTS == WORKSPACE_DEFAULT_CHANNEL
    for name in SCHEMA.environment_names():
        assert name in Settings.model_fields
        assert name in StorageSettings.model_fields  # the CLI shows the same defaults
    assert set(SAMPLES) == set(SCHEMA.names)


def test_readme_describes_every_setting_as_the_schema_does() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Channel settings in Slack") :]
    rows = {
        m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M)
    }
    assert list(rows)[: len(SCHEMA)] == list(SCHEMA.names)
    for setting in SCHEMA:
        assert rows[setting.name].strip().startswith(setting.valid), setting.name
    assert "python -m bot config set (--channel C123 | --default) [--team T123] [--FIELD-NAME" in (
        readme.replace("\\|", "|")
    )


def test_the_highest_layer_with_a_value_wins_and_none_inherits() -> None:
    effective = resolve(
        [
            ("default", {"model": "base", "instructions": "be nice", "temperature": None}),
            ("workspace", {"model": "ws-model", "temperature": 0.2}),
            ("channel", {"model": None, "temperature": 1.0, "workspace_daily_token_budget": 5}),
        ]
    )
    assert effective.model == "ws-model"
    assert effective.temperature == 1.0
    assert effective.instructions == "be nice"
    assert effective.sources["model"] == "workspace"
    assert effective.sources["temperature"] == "channel"
    assert effective.sources["top_p"] == "unset"
    # A channel row cannot loosen a workspace-only limit.
    assert effective.workspace_daily_token_budget is None
    assert effective.own("temperature") == 1.0
    assert effective.own("model") is None
    with pytest.raises(AttributeError):
        _ = effective.colour


def test_defaults_come_from_the_environment_or_the_schema() -> None:
    defaults = SCHEMA.defaults(
        {"default_model": "m", "default_instructions": "i", "conversation_state": "chain"}
    )
    assert (defaults["model"], defaults["instructions"]) == ("m", "i")
    assert defaults["conversation_state"] == "chain"
    assert (defaults["truncation"], defaults["enabled"], defaults["temperature"]) == (
        "auto",
        True,
        None,
    )
    with pytest.raises(TypeError, match="default_instructions"):
        SCHEMA.defaults({"default_model": "m"})


# ----------------------------------------------- a new kind of setting, as one entry


LISTS = Schema(
    [
        Setting("model", Name(200, noun="a model name"), help="model", label="Model"),
        Setting(
            "suggested_prompts",
            TextList(max_items=4, max_item_length=100, separator="\n"),
            help="prompts offered in a new conversation",
            label="Suggested prompts",
            layers=WORKSPACE_ONLY,
        ),
        Setting(
            "mcp_servers",
            TextList(max_items=8, max_item_length=32, words=True),
            help="the MCP servers this channel may use",
            label="MCP servers",
            layers=BOTH,
        ),
    ]
)


def test_a_list_valued_workspace_only_setting_parses_shows_and_round_trips() -> None:
    prompts = LISTS["suggested_prompts"]
    value = prompts.parse("Summarise this thread\n\nWhat changed, and why?\nSummarise this thread")
    assert value == ("Summarise this thread", "What changed, and why?")  # commas kept
    assert prompts.show(value) == "Summarise this thread, What changed, and why?"
    assert prompts.parse(prompts.text(value)) == value
    assert prompts.parse(prompts.text(list(value))) == value  # as storage reads it back
    assert prompts.kind.multiline
    assert prompts.valid.endswith("workspace default only")
    with pytest.raises(InvalidSetting, match="at most 4 items"):
        prompts.parse("a\nb\nc\nd\ne")
    servers = LISTS["mcp_servers"]
    assert servers.parse(" orders, admin ,orders") == ("orders", "admin")
    with pytest.raises(InvalidSetting, match="one word"):
        servers.parse("orders, two words")
    with pytest.raises(InvalidSetting, match="control characters"):
        servers.parse("ord\x00ers")


def test_every_setting_gets_a_cli_flag_named_after_it() -> None:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, schema=LISTS)
    args = parser.parse_args(["--mcp-servers", "orders,admin", "--suggested-prompts", "Hi"])
    assert typed_settings(args, schema=LISTS) == {
        "suggested_prompts": "Hi",
        "mcp_servers": "orders,admin",
    }
    real = argparse.ArgumentParser()
    add_setting_flags(real)
    flags = {a.option_strings[0] for a in real._actions if a.option_strings[0].startswith("--")}
    assert {s.flag for s in SCHEMA} <= flags
    assert "--workspace-daily-token-budget" in flags


def test_prompts_and_loading_messages_are_workspace_lists_typed_on_one_line_or_several() -> None:
    prompts = SCHEMA["suggested_prompts"]
    assert prompts.workspace_only
    assert prompts.parse("Summarise this channel | What changed, and why?") == (
        "Summarise this channel",
        "What changed, and why?",
    )
    assert prompts.parse("One\nTwo | Three") == ("One", "Two", "Three")
    with pytest.raises(InvalidSetting, match="at most 4 items"):
        prompts.parse("a|b|c|d|e")
    with pytest.raises(InvalidSetting, match="at most 150 characters"):
        prompts.parse("x" * 151)
    loading = SCHEMA["loading_messages"]
    assert loading.workspace_only
    with pytest.raises(InvalidSetting, match="at most 10 items"):
        loading.parse("|".join(str(n) for n in range(11)))
    defaults = SCHEMA.defaults(
        {"default_model": "m", "default_instructions": "i", "conversation_state": "auto"}
    )
    assert 1 <= len(defaults["suggested_prompts"]) <= 4
    assert 1 <= len(defaults["loading_messages"]) <= 10
