"""Block Kit for the settings modal and the App Home tab (pure functions: dicts in, dicts out).

The modal shows a channel's effective values and where each comes from; every field may be
left empty (or on "inherit") to use the default. It round-trips what it does not touch: each
value the channel has is shown exactly (a model missing from the endpoint's list is offered
as an option, floats are not rounded, instructions fit the input because the setting's limit
is the input's), and a value the form cannot hold is shown read-only and left alone.
``parse_submission`` turns the submitted state back into values, collecting a message per
invalid field for ``response_action: errors``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bot.channel_config import (
    FIELDS,
    MAX_INSTRUCTIONS_CHARS,
    EffectiveSettings,
    InvalidSetting,
    display,
    exact_text,
    parse_value,
)
from bot.slack.escaping import escape
from storage.repositories import ChannelSettingsRecord, SettingsAuditRecord

__all__ = [
    "CHANNEL_FIELDS",
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

# Slack's Block Kit limits (a view breaking one is refused whole by views.open).
MAX_INPUT_CHARS = 3_000
"""``plain_text_input``: ``max_length`` 1-3,000."""
MAX_OPTIONS = 100
MAX_OPTION_VALUE_CHARS = 150
MAX_OPTION_TEXT_CHARS = 75
assert MAX_INSTRUCTIONS_CHARS <= MAX_INPUT_CHARS  # the setting fits the modal's input

_SOURCE = {
    "channel": "set for this channel",
    "workspace": "workspace default",
    "default": "service default",
    "unset": "model default",
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


def _text(text: str, kind: str = "plain_text", limit: int = 150) -> dict[str, Any]:
    return {"type": kind, "text": _cut(text, limit) if kind == "plain_text" else text}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _option(value: str, label: str | None = None) -> dict[str, Any]:
    return {"text": _text(label or value, limit=MAX_OPTION_TEXT_CHARS), "value": value}


def _label(field: str) -> str:
    return _LABELS.get(field) or FIELDS[field].description.capitalize()


def _hint(settings: EffectiveSettings, field: str) -> str:
    source = settings.sources[field]
    if source == "channel":
        return "Set for this channel. Clear it (or pick inherit) to use the default."
    return f"Now: {display(settings.value(field))[:100]} ({_SOURCE[source]})."


def _select(options: list[dict[str, Any]], selected: str | None) -> dict[str, Any]:
    initial = next((o for o in options if o["value"] == selected), options[0])
    return {
        "type": "static_select",
        "action_id": "value",
        "options": options,
        "initial_option": initial,
    }


def _model_select(own: str | None, models: Sequence[str]) -> dict[str, Any]:
    listed = [m for m in models if len(m) <= MAX_OPTION_VALUE_CHARS]
    options = [_option(INHERIT, "inherit (use the default)")]
    if own is not None and own not in listed:
        # Set elsewhere (the CLI, an older list): offered, so saving the form keeps it.
        options.append(_option(own, f"{own} (current)"))
    options += [_option(m) for m in listed[: MAX_OPTIONS - len(options)]]
    return _select(options, own)


def _choice_select(field: str, own: Any) -> dict[str, Any]:
    choices = list(FIELDS[field].choices or ())
    shown = exact_text(own) if own is not None else None
    if shown is not None and shown not in choices:
        choices.insert(0, shown)  # a value the menu no longer lists still round-trips
    options = [_option(INHERIT, "inherit (use the default)")]
    options += [_option(choice) for choice in choices]
    return _select(options, shown)


def _input_element(field: str, own: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": field == "instructions",
    }
    if field == "instructions":
        element["max_length"] = MAX_INSTRUCTIONS_CHARS
    if own is not None:
        element["initial_value"] = exact_text(own)
    return element


def _fits(own: Any) -> bool:
    return own is None or len(exact_text(own)) <= MAX_INPUT_CHARS


def _block(field: str, settings: EffectiveSettings, models: Sequence[str] | None) -> dict[str, Any]:
    own = settings.value(field) if settings.sources[field] == "channel" else None
    if not _fits(own):
        # Stored before today's limit: the form cannot hold it, so it shows how to change it
        # and leaves it out of the submission (an absent field is left as it is).
        return {
            "type": "section",
            "block_id": field,
            "text": _text(
                f"*{_label(field)}*: set for this channel ({len(exact_text(own)):,} "
                f"characters, more than this form holds). Saving keeps it; change it with "
                f"the `set {field}` command.",
                "mrkdwn",
            ),
        }
    if field == "model" and models and (own is None or len(own) <= MAX_OPTION_VALUE_CHARS):
        element = _model_select(own, models)
    elif FIELDS[field].choices:
        element = _choice_select(field, own)
    else:
        element = _input_element(field, own)
    return {
        "type": "input",
        "block_id": field,
        "optional": True,
        "label": _text(_label(field)),
        "hint": _text(_hint(settings, field)),
        "element": element,
    }


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
    blocks += [_block(field, settings, models) for field in CHANNEL_FIELDS]
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "private_metadata": json.dumps({"team_id": team_id, "channel_id": channel_id}),
        "title": _text("Channel settings", limit=24),
        "submit": _text("Save", limit=24),
        "close": _text("Cancel", limit=24),
        "blocks": blocks,
    }


def first_input(view: Mapping[str, Any]) -> str:
    """The block id to hang a form-wide error on (``response_action: errors`` needs an
    input block of the submitted view)."""
    values = (view.get("state") or {}).get("values") or {}
    return next((field for field in CHANNEL_FIELDS if field in values), CHANNEL_FIELDS[0])


def parse_submission(
    state: Mapping[str, Any],
    *,
    allowed_models: Collection[str] = (),
    current_model: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values, errors)`` from ``view.state.values``: ``None`` means inherit; a field the
    view did not hold is left out (unchanged). ``current_model`` (the channel's own model)
    passes even when ``ALLOWED_MODELS`` no longer lists it: left as it was, it is no change."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in CHANNEL_FIELDS:
        if field not in state:
            continue
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
        unchanged = field == "model" and raw.strip() == current_model
        try:
            values[field] = parse_value(
                field, raw, allowed_models=() if unchanged else allowed_models
            )
        except InvalidSetting as exc:
            errors[field] = _cut(str(exc), 150)
    return values, errors


def _who(user: str | None) -> str:
    if user and user[:1] in {"U", "W"}:
        return f"<@{user}>"
    return user or "someone"


def _channel_lines(record: ChannelSettingsRecord) -> str:
    parts = [
        f"`{field}` {escape(display(getattr(record, field))[:60])}"
        for field in FIELDS
        if getattr(record, field) is not None
    ]
    return ", ".join(parts) or "_all inherited_"


_MEMBERSHIP_UNKNOWN = (
    "Channel settings are hidden: Slack would not tell me which channels you are in (the app "
    "needs the channels:read and groups:read scopes; reinstall it from its manifest). Run the "
    "settings command in a channel to see its settings."
)


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_text(text, "mrkdwn")]}


def home_view(
    *,
    defaults: EffectiveSettings,
    rows: Sequence[ChannelSettingsRecord],
    last_changes: Mapping[str, SettingsAuditRecord],
    is_admin: bool,
    who_can_change: str,
    visible: Collection[str] | None,
) -> dict[str, Any]:
    """The Home tab for one viewer. ``visible``: the channels the viewer is a member of
    (``None``: unknown); a channel's settings are listed only when it is one of them, so a
    private channel's instructions never reach someone outside it."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _text("Model bot settings")},
        {
            "type": "section",
            "text": _text(
                "*Workspace defaults*\n"
                + "\n".join(
                    f"• `{field}`: {escape(display(defaults.value(field))[:80])} "
                    f"_({_SOURCE[defaults.sources[field]]})_"
                    for field in FIELDS
                ),
                "mrkdwn",
            ),
        },
        {"type": "divider"},
        {"type": "section", "text": _text("*Configured channels*", "mrkdwn")},
    ]
    configured = [r for r in rows if r.channel_id]
    channels = [r for r in configured if visible is not None and r.channel_id in visible]
    hidden = len(configured) - len(channels)
    if not configured:
        blocks.append(
            {"type": "context", "elements": [_text("No channel has its own settings yet.")]}
        )
    elif visible is None:
        blocks.append(_context(_MEMBERSHIP_UNKNOWN))
    elif hidden == 1:
        blocks.append(
            _context("1 more channel has settings of its own, shown only to its members.")
        )
    elif hidden:
        blocks.append(
            _context(f"{hidden:,} more channels have settings of their own, shown only to members.")
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
