"""The validation shared by the CLI and Slack: each bad value is refused with its range."""

from __future__ import annotations

import pytest

from bot.channel_config import InvalidSetting, parse_field_name, parse_value, resolve


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
    ],
)
def test_valid_values_are_parsed(field: str, raw: str, expected: object) -> None:
    assert parse_value(field, raw) == expected


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
        ("colour", "blue", "unknown setting 'colour': valid settings are model, instructions"),
    ],
)
def test_invalid_values_name_the_valid_range(field: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidSetting, match=message.replace("(", r"\(")):
        parse_value(field, raw)


def test_field_names_accept_cli_spelling() -> None:
    assert parse_field_name("max-output-tokens") == "max_output_tokens"


def test_the_highest_layer_with_a_value_wins_and_none_inherits() -> None:
    effective = resolve(
        [
            ("default", {"model": "base", "instructions": "be nice", "temperature": None}),
            ("workspace", {"model": "ws-model", "temperature": 0.2}),
            ("channel", {"model": None, "temperature": 1.0}),
        ]
    )
    assert effective.model == "ws-model"
    assert effective.temperature == 1.0
    assert effective.instructions == "be nice"
    assert effective.sources["model"] == "workspace"
    assert effective.sources["temperature"] == "channel"
    assert effective.sources["top_p"] == "unset"
