"""Per-channel model settings: the fields, their validation and how layers resolve.

One place parses and validates a value, so the CLI, the slash command and the settings modal
refuse the same things with the same words (the allow-list of models included). A stored
``None`` means "inherit from the layer below".
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from storage.models import INTEGER_MAX

__all__ = [
    "FIELDS",
    "MAX_INSTRUCTIONS_CHARS",
    "EffectiveSettings",
    "FieldSpec",
    "InvalidSetting",
    "display",
    "env_defaults",
    "exact_text",
    "parse_field_name",
    "parse_value",
    "resolve",
]

REASONING_EFFORTS = ("low", "medium", "high")
TRUNCATIONS = ("auto", "disabled")
ON_OFF = ("on", "off")
MAX_INSTRUCTIONS_CHARS = 3_000
"""Slack's settings modal cannot hold more: a ``plain_text_input`` takes at most 3,000
characters (``max_length`` 1-3,000). Every path uses the same limit, so whatever is set can
be shown in the modal and saved back unchanged."""
CONVERSATION_STATES = ("auto", "chain", "transcript")
MAX_MODEL_NAME_CHARS = 200
MAX_OUTPUT_TOKENS_LIMIT = 1_000_000
MAX_COUNT = INTEGER_MAX
"""The largest budget or count: what every engine's integer column holds (PostgreSQL
``integer``). A bigger budget is no budget in practice: use 0."""


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
    choices: tuple[str, ...] | None = None
    """The values people pick from, as they type them (the modal shows a menu)."""


# Newlines and tabs belong in instructions; every other control character (NUL, escape
# sequences, C1 controls) and lone surrogates (which no encoder, database or JSON parser
# accepts) is refused rather than stored and sent to the model on every turn.
_ALLOWED_CONTROLS = frozenset("\n\t\r")


def _bad_character(value: str) -> str | None:
    """A description of the first control character or lone surrogate in ``value``."""
    for index, char in enumerate(value, start=1):
        if char in _ALLOWED_CONTROLS:
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            return f"U+{ord(char):04X} at character {index:,}"
    return None


def _parse_model(raw: str) -> str:
    value = raw.strip()
    if (
        not value
        or len(value) > MAX_MODEL_NAME_CHARS
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise InvalidSetting(
            f"model must be a model name without spaces or control characters, "
            f"1-{MAX_MODEL_NAME_CHARS} characters"
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
    bad = _bad_character(value)
    if bad is not None:
        raise InvalidSetting(f"instructions must be text without control characters (found {bad})")
    return value


def _float_in(name: str, low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise InvalidSetting(f"{name} must be a number from {low:g} to {high:g}") from None
        if not low <= value <= high or math.isnan(value):
            raise InvalidSetting(f"{name} must be a number from {low:g} to {high:g}")
        return value

    return parse


def _whole_number(name: str, low: int, high: int, message: str) -> Callable[[str], int]:
    """Integers as people type them ("1,024", "10_000"), within ``low``..``high``."""

    def parse(raw: str) -> int:
        try:
            # int() also refuses absurdly long digit strings (Python's 4,300-digit limit).
            value = int(raw.strip().replace(",", "").replace("_", ""))
        except ValueError:
            raise InvalidSetting(f"{name} must be {message}") from None
        if not low <= value <= high:
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
    return _whole_number(
        name, 0, MAX_COUNT, f"a whole number of {unit} from 0 to {MAX_COUNT:,} (0 = {zero})"
    )


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
            choices=REASONING_EFFORTS,
        ),
        FieldSpec(
            "reasoning_summary",
            "ask reasoning models for a summary",
            "on | off",
            _on_off("reasoning_summary"),
            choices=ON_OFF,
        ),
        FieldSpec(
            "truncation",
            "drop the oldest context when a thread outgrows the model",
            " | ".join(TRUNCATIONS),
            _parse_truncation,
            choices=TRUNCATIONS,
        ),
        FieldSpec(
            "require_mention",
            "thread follow-ups must mention the bot",
            "on | off",
            _on_off("require_mention"),
            choices=ON_OFF,
        ),
        FieldSpec(
            "enabled",
            "the bot answers in this channel",
            "on | off",
            _on_off("enabled"),
            choices=ON_OFF,
        ),
        FieldSpec(
            "daily_token_budget",
            "tokens per day for this channel (0 = no budget)",
            f"0 to {MAX_COUNT:,}",
            _count("daily_token_budget", "tokens", "no budget"),
        ),
        FieldSpec(
            "workspace_daily_token_budget",
            "tokens per day for the whole workspace (0 = no budget)",
            f"0 to {MAX_COUNT:,}, workspace default only",
            _count("workspace_daily_token_budget", "tokens", "no budget"),
            workspace_only=True,
        ),
        FieldSpec(
            "user_hourly_requests",
            "questions one person may ask per hour (0 = no limit)",
            f"0 to {MAX_COUNT:,}",
            _count("user_hourly_requests", "questions"),
        ),
        FieldSpec(
            "conversation_state",
            "how follow-ups carry the conversation: chain (previous_response_id), transcript "
            "(the bot re-sends it) or auto",
            " | ".join(CONVERSATION_STATES),
            _parse_conversation_state,
            choices=CONVERSATION_STATES,
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


def parse_value(field: str, raw: str, *, allowed_models: Collection[str] = ()) -> Any:
    """Parse and validate ``raw`` for ``field``; raises ``InvalidSetting`` naming the range.

    ``allowed_models`` is ``ALLOWED_MODELS``: when not empty, a model must be one of them.
    """
    name = parse_field_name(field)
    value = FIELDS[name].parse(raw)
    if name == "model" and allowed_models and value not in allowed_models:
        raise InvalidSetting(
            "model must be one of the allowed models: " + ", ".join(allowed_models)
        )
    return value


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


def exact_text(value: Any) -> str:
    """A stored value as text that parses back to exactly the same value (``display``
    rounds floats for reading; a form that shows a value must not change it on save)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return repr(value)
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
