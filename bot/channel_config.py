"""Per-channel model settings: the fields, their validation and how layers resolve.

One place parses and validates a value, so the CLI and Slack refuse the same things with the
same words. A stored ``None`` means "inherit from the layer below".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FIELDS",
    "EffectiveSettings",
    "FieldSpec",
    "InvalidSetting",
    "display",
    "env_defaults",
    "parse_field_name",
    "parse_value",
    "resolve",
]

REASONING_EFFORTS = ("low", "medium", "high")
TRUNCATIONS = ("auto", "disabled")
CONVERSATION_STATES = ("auto", "chain", "transcript")
MAX_INSTRUCTIONS_CHARS = 8_000
MAX_MODEL_NAME_CHARS = 200
MAX_OUTPUT_TOKENS_LIMIT = 1_000_000


class InvalidSetting(ValueError):
    """A field name or value was refused; ``str()`` names the valid range."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    description: str
    valid: str
    parse: Callable[[str], Any]
    workspace_only: bool = False
    """Only meaningful on the workspace-defaults layer (a channel cannot set it)."""


def _parse_model(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > MAX_MODEL_NAME_CHARS or any(c.isspace() for c in value):
        raise InvalidSetting(
            f"model must be a model name without spaces, 1-{MAX_MODEL_NAME_CHARS} characters"
        )
    return value


def _parse_instructions(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise InvalidSetting("instructions must not be empty (use reset to inherit the default)")
    if len(value) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidSetting(
            f"instructions must be at most {MAX_INSTRUCTIONS_CHARS:,} characters "
            f"(got {len(value):,})"
        )
    return value


def _float_in(name: str, low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise InvalidSetting(f"{name} must be a number from {low:g} to {high:g}") from None
        if not low <= value <= high or value != value:  # value != value catches NaN
            raise InvalidSetting(f"{name} must be a number from {low:g} to {high:g}")
        return value

    return parse


def _whole_number(name: str, low: int, high: int | None, message: str) -> Callable[[str], int]:
    """Integers as people type them ("1,024", "10_000"), within ``low``..``high``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace(",", "").replace("_", ""))
        except ValueError:
            raise InvalidSetting(f"{name} must be {message}") from None
        if value < low or (high is not None and value > high):
            raise InvalidSetting(f"{name} must be {message}")
        return value

    return parse


_parse_max_tokens = _whole_number(
    "max_output_tokens",
    16,
    MAX_OUTPUT_TOKENS_LIMIT,
    f"a whole number from 16 to {MAX_OUTPUT_TOKENS_LIMIT:,}",
)


def _count(name: str, unit: str, zero: str = "no limit") -> Callable[[str], int]:
    return _whole_number(name, 0, None, f"a whole number of {unit}, 0 or more (0 = {zero})")


def _parse_effort(raw: str) -> str:
    value = raw.strip().lower()
    if value not in REASONING_EFFORTS:
        raise InvalidSetting(f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}")
    return value


_ON = {"on", "true", "yes", "1", "enabled"}
_OFF = {"off", "false", "no", "0", "disabled"}


def _on_off(name: str) -> Callable[[str], bool]:
    def parse(raw: str) -> bool:
        value = raw.strip().lower()
        if value in _ON:
            return True
        if value in _OFF:
            return False
        raise InvalidSetting(f"{name} must be on or off")

    return parse


def _parse_conversation_state(raw: str) -> str:
    value = raw.strip().lower()
    if value not in CONVERSATION_STATES:
        raise InvalidSetting(f"conversation_state must be one of {', '.join(CONVERSATION_STATES)}")
    return value


def _parse_truncation(raw: str) -> str:
    value = raw.strip().lower()
    if value not in TRUNCATIONS:
        raise InvalidSetting(f"truncation must be one of {', '.join(TRUNCATIONS)}")
    return value


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("model", "model name", "a model name", _parse_model),
        FieldSpec(
            "instructions",
            "system instructions",
            f"text up to {MAX_INSTRUCTIONS_CHARS:,} characters",
            _parse_instructions,
        ),
        FieldSpec("temperature", "sampling temperature", "0 to 2", _float_in("temperature", 0, 2)),
        FieldSpec("top_p", "nucleus sampling", "0 to 1", _float_in("top_p", 0, 1)),
        FieldSpec(
            "max_output_tokens",
            "answer length cap",
            f"16 to {MAX_OUTPUT_TOKENS_LIMIT:,}",
            _parse_max_tokens,
        ),
        FieldSpec(
            "reasoning_effort",
            "reasoning effort",
            " | ".join(REASONING_EFFORTS),
            _parse_effort,
        ),
        FieldSpec(
            "reasoning_summary",
            "ask reasoning models for a summary",
            "on | off",
            _on_off("reasoning_summary"),
        ),
        FieldSpec(
            "truncation",
            "drop the oldest context when a thread outgrows the model",
            " | ".join(TRUNCATIONS),
            _parse_truncation,
        ),
        FieldSpec(
            "require_mention",
            "thread follow-ups must mention the bot",
            "on | off",
            _on_off("require_mention"),
        ),
        FieldSpec("enabled", "the bot answers in this channel", "on | off", _on_off("enabled")),
        FieldSpec(
            "daily_token_budget",
            "tokens per day for this channel (0 = no budget)",
            "0 or more",
            _count("daily_token_budget", "tokens", "no budget"),
        ),
        FieldSpec(
            "workspace_daily_token_budget",
            "tokens per day for the whole workspace (0 = no budget)",
            "0 or more, workspace default only",
            _count("workspace_daily_token_budget", "tokens", "no budget"),
            workspace_only=True,
        ),
        FieldSpec(
            "user_hourly_requests",
            "questions one person may ask per hour (0 = no limit)",
            "0 or more",
            _count("user_hourly_requests", "questions"),
        ),
        FieldSpec(
            "conversation_state",
            "how follow-ups carry the conversation: chain (previous_response_id), transcript "
            "(the bot re-sends it) or auto",
            " | ".join(CONVERSATION_STATES),
            _parse_conversation_state,
        ),
    )
}

_ALIASES = {"max-output-tokens": "max_output_tokens", "reasoning-effort": "reasoning_effort"}


def parse_field_name(raw: str) -> str:
    name = raw.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in FIELDS:
        raise InvalidSetting(f"unknown setting '{raw}': valid settings are {', '.join(FIELDS)}")
    return name


def parse_value(field: str, raw: str) -> Any:
    """Parse and validate ``raw`` for ``field``; raises ``InvalidSetting`` naming the range."""
    return FIELDS[parse_field_name(field)].parse(raw)


@dataclass(frozen=True, slots=True)
class EffectiveSettings:
    """What a turn uses, and where each value came from (``channel`` or ``default``)."""

    model: str
    instructions: str
    temperature: float | None
    top_p: float | None
    max_output_tokens: int | None
    reasoning_effort: str | None
    reasoning_summary: bool | None
    truncation: str | None
    require_mention: bool | None
    enabled: bool | None
    daily_token_budget: int | None
    workspace_daily_token_budget: int | None
    user_hourly_requests: int | None
    conversation_state: str | None
    sources: Mapping[str, str]

    def value(self, field: str) -> Any:
        return getattr(self, field)


def display(value: Any) -> str:
    """A setting's value as people read it (booleans as on/off)."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def env_defaults(
    *, default_model: str, default_instructions: str, conversation_state: str = "auto"
) -> dict[str, Any]:
    return {
        "model": default_model,
        "instructions": default_instructions,
        "temperature": None,
        "top_p": None,
        "max_output_tokens": None,
        "reasoning_effort": None,
        "reasoning_summary": None,
        "truncation": "auto",
        "require_mention": False,
        "enabled": True,
        "daily_token_budget": 0,
        "workspace_daily_token_budget": 0,
        "user_hourly_requests": 0,
        "conversation_state": conversation_state,
    }


def resolve(
    layers: list[tuple[str, Mapping[str, Any] | None]],
) -> EffectiveSettings:
    """Resolve layers listed from lowest to highest priority, e.g. ``[("default", …),
    ("channel", …)]``: the highest layer with a non-``None`` value wins."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        values[name] = None
        sources[name] = "unset"
        for layer_name, layer in layers:
            if layer_name == "channel" and FIELDS[name].workspace_only:
                continue  # a channel cannot loosen the workspace's own limits
            if layer is not None and layer.get(name) is not None:
                values[name] = layer[name]
                sources[name] = layer_name
    return EffectiveSettings(sources=sources, **values)
