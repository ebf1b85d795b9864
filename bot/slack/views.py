"""Block Kit for the settings modal and the App Home tab (pure functions: dicts in, dicts out).

The modal shows a channel's effective values and where each comes from; every field may be
left empty (or on "inherit") to use the default. ``parse_submission`` turns the submitted
state back into values, collecting a message per invalid field for ``response_action: errors``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot.channel_config import FIELDS, EffectiveSettings, InvalidSetting, display, parse_value
from storage.repositories import ChannelSettingsRecord, SettingsAuditRecord

__all__ = [
    "EDIT_ACTION",
    "MODAL_CALLBACK",
    "home_view",
    "parse_submission",
    "settings_modal",
]

MODAL_CALLBACK = "channel_settings"
# The modal edits one channel: workspace-only settings are set with `/ai set default`.
CHANNEL_FIELDS = [name for name, spec in FIELDS.items() if not spec.workspace_only]
EDIT_ACTION = "edit_channel_settings"
INHERIT = "__inherit__"

_SOURCE = {
    "channel": "set for this channel",
    "workspace": "workspace default",
    "default": "service default",
    "unset": "model default",
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "reasoning_effort": ("low", "medium", "high"),
    "reasoning_summary": ("on", "off"),
    "truncation": ("auto", "disabled"),
    "require_mention": ("on", "off"),
    "enabled": ("on", "off"),
    "conversation_state": ("auto", "chain", "transcript"),
}
_LABELS = {
    "model": "Model",
    "instructions": "Instructions",
    "temperature": "Temperature (0 to 2)",
    "top_p": "Top p (0 to 1)",
    "max_output_tokens": "Max output tokens",
    "reasoning_effort": "Reasoning effort",
    "reasoning_summary": "Reasoning summary",
    "truncation": "Truncation",
    "require_mention": "Follow-ups need a mention",
    "enabled": "Bot answers in this channel",
    "daily_token_budget": "Daily token budget (0 = none)",
    "workspace_daily_token_budget": "Workspace daily token budget (0 = none)",
    "user_hourly_requests": "Questions per person per hour (0 = no limit)",
    "conversation_state": "Conversation state",
}


def _text(text: str, kind: str = "plain_text") -> dict[str, Any]:
    return {"type": kind, "text": text[:150] if kind == "plain_text" else text}


def _option(value: str, label: str | None = None) -> dict[str, Any]:
    return {"text": _text(label or value), "value": value}


def _hint(settings: EffectiveSettings, field: str) -> str:
    source = settings.sources[field]
    if source == "channel":
        return "Set for this channel. Clear it (or pick inherit) to use the default."
    return f"Now: {display(settings.value(field))[:100]} ({_SOURCE[source]})."


def _element(
    field: str, settings: EffectiveSettings, models: Sequence[str] | None
) -> dict[str, Any]:
    own = settings.sources[field] == "channel"
    value = settings.value(field) if own else None
    action_id = "value"
    if field == "model" and models:
        options = [_option(INHERIT, "inherit (use the default)")]
        options += [_option(m) for m in models[:99]]
        element: dict[str, Any] = {
            "type": "static_select",
            "action_id": action_id,
            "options": options,
        }
        if value in models:
            element["initial_option"] = _option(str(value))
        else:
            element["initial_option"] = options[0]
        return element
    if field in _CHOICES:
        options = [_option(INHERIT, "inherit (use the default)")]
        options += [_option(choice) for choice in _CHOICES[field]]
        element = {"type": "static_select", "action_id": action_id, "options": options}
        shown = display(value) if value is not None else None
        element["initial_option"] = _option(shown) if shown in _CHOICES[field] else options[0]
        return element
    element = {
        "type": "plain_text_input",
        "action_id": action_id,
        "multiline": field == "instructions",
    }
    if field == "instructions":
        element["max_length"] = 3000
    if value is not None:
        element["initial_value"] = display(value)[:3000]
    return element


def settings_modal(
    *,
    team_id: str,
    channel_id: str,
    settings: EffectiveSettings,
    models: Sequence[str] | None,
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": _text(
                f"Model settings for <#{channel_id}>. Leave a field empty, or pick "
                "*inherit*, to use the workspace or service default.",
                "mrkdwn",
            ),
        }
    ]
    for field in CHANNEL_FIELDS:
        blocks.append(
            {
                "type": "input",
                "block_id": field,
                "optional": True,
                "label": _text(_LABELS[field]),
                "hint": _text(_hint(settings, field)),
                "element": _element(field, settings, models),
            }
        )
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "private_metadata": json.dumps({"team_id": team_id, "channel_id": channel_id}),
        "title": _text("Channel settings"),
        "submit": _text("Save"),
        "close": _text("Cancel"),
        "blocks": blocks,
    }


def parse_submission(
    state: Mapping[str, Any], *, allowed_model: Any = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values, errors)`` from ``view.state.values``: ``None`` means inherit."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in CHANNEL_FIELDS:
        entry = (state.get(field) or {}).get("value") or {}
        if entry.get("type") == "static_select":
            selected = (entry.get("selected_option") or {}).get("value")
            raw = None if selected in (None, INHERIT) else str(selected)
        else:
            text = entry.get("value")
            raw = text if isinstance(text, str) and text.strip() else None
        if raw is None:
            values[field] = None
            continue
        try:
            values[field] = parse_value(field, raw)
        except InvalidSetting as exc:
            errors[field] = str(exc)[:150]
            continue
        if field == "model" and allowed_model is not None and not allowed_model(values[field]):
            errors[field] = "this model is not in the allowed list (ALLOWED_MODELS)"
    return values, errors


def _who(user: str | None) -> str:
    if user and user[:1] in {"U", "W"}:
        return f"<@{user}>"
    return user or "someone"


def _channel_lines(record: ChannelSettingsRecord) -> str:
    parts = [
        f"`{field}` {display(getattr(record, field))[:60]}"
        for field in FIELDS
        if getattr(record, field) is not None
    ]
    return ", ".join(parts) or "_all inherited_"


def home_view(
    *,
    defaults: EffectiveSettings,
    rows: Sequence[ChannelSettingsRecord],
    last_changes: Mapping[str, SettingsAuditRecord],
    is_admin: bool,
    who_can_change: str,
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _text("Model bot settings")},
        {
            "type": "section",
            "text": _text(
                "*Workspace defaults*\n"
                + "\n".join(
                    f"• `{field}`: {display(defaults.value(field))[:80]} "
                    f"_({_SOURCE[defaults.sources[field]]})_"
                    for field in FIELDS
                ),
                "mrkdwn",
            ),
        },
        {"type": "divider"},
        {"type": "section", "text": _text("*Configured channels*", "mrkdwn")},
    ]
    channels = [r for r in rows if r.channel_id]
    if not channels:
        blocks.append(
            {"type": "context", "elements": [_text("No channel has its own settings yet.")]}
        )
    for record in channels[:40]:  # Slack allows 100 blocks per view
        change = last_changes.get(record.channel_id)
        last = (
            f"\n_last change: `{change.field}` by {_who(change.changed_by)} "
            f"<!date^{int(change.changed_at.timestamp())}^{{date_short_pretty}} {{time}}|"
            f"{change.changed_at:%Y-%m-%d %H:%M} UTC>_"
            if change is not None
            else ""
        )
        section: dict[str, Any] = {
            "type": "section",
            "text": _text(f"<#{record.channel_id}>: {_channel_lines(record)}{last}", "mrkdwn"),
        }
        if is_admin:
            section["accessory"] = {
                "type": "button",
                "text": _text("Edit"),
                "action_id": EDIT_ACTION,
                "value": record.channel_id,
            }
        blocks.append(section)
    if not is_admin:
        blocks.append({"type": "context", "elements": [_text(who_can_change, "mrkdwn")]})
    return {"type": "home", "blocks": blocks}
