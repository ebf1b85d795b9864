"""Block Kit for the settings modal and the App Home tab (pure functions: dicts in, dicts out).

The modal shows a channel's effective values and where each comes from; every field may be
left empty (or on "inherit") to use the default. It round-trips what it does not touch: each
value the channel has is shown exactly (a model missing from the endpoint's list is offered
as an option, floats are not rounded, text fits the input because the setting's limit is the
input's), and a value the form cannot hold is shown read-only and left alone. Fields, labels,
inputs and menus come from the settings schema (a setting with choices is a menu, a model is
the endpoint's list). ``parse_submission`` turns the submitted state back into the text typed
per field; ``SettingsEditor`` validates and saves it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bot.channel_settings import (
    MAX_INSTRUCTIONS_CHARS,
    SCHEMA,
    EffectiveSettings,
    Layer,
    Schema,
    Setting,
)
from bot.i18n import N_, shown_default, t, tn
from bot.slack.escaping import escape
from storage.repositories import ChannelSettingsRecord, SettingsAuditRecord

__all__ = [
    "EDIT_ACTION",
    "EDIT_DEFAULTS_ACTION",
    "MODAL_CALLBACK",
    "first_input",
    "home_view",
    "parse_submission",
    "settings_modal",
]

MODAL_CALLBACK = "channel_settings"
EDIT_ACTION = "edit_channel_settings"
EDIT_DEFAULTS_ACTION = "edit_workspace_defaults"
INHERIT = "__inherit__"

# Slack's Block Kit limits (a view breaking one is refused whole by views.open).
MAX_INPUT_CHARS = 3_000
"""``plain_text_input``: ``max_length`` 1-3,000."""
MAX_OPTIONS = 100
MAX_OPTION_VALUE_CHARS = 150
MAX_OPTION_TEXT_CHARS = 75
assert MAX_INSTRUCTIONS_CHARS <= MAX_INPUT_CHARS  # the setting fits the modal's input

_SOURCE = {
    "channel": N_("set for this channel"),
    "workspace": N_("workspace default"),
    "default": N_("service default"),
    "unset": N_("model default"),
}
_INHERIT_LABEL = N_("inherit (use the default)")


def _form_fields(schema: Schema, layer: Layer = "channel") -> tuple[Setting, ...]:
    """The form edits one layer: a channel's form holds what a channel may set, the workspace
    defaults' form every setting the workspace layer may hold (workspace-only ones too)."""
    return schema.on(layer)


def _own(settings: EffectiveSettings, layer: Layer, name: str) -> Any:
    """The value the edited layer itself holds (``None``: it inherits)."""
    return settings.values[name] if settings.sources[name] == layer else None


def _text(text: str, kind: str = "plain_text", limit: int = 150) -> dict[str, Any]:
    return {"type": kind, "text": _cut(text, limit) if kind == "plain_text" else text}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _option(value: str, label: str | None = None) -> dict[str, Any]:
    return {"text": _text(label or value, limit=MAX_OPTION_TEXT_CHARS), "value": value}


def _hint(settings: EffectiveSettings, setting: Setting, layer: Layer) -> str:
    source = settings.sources[setting.name]
    if source == layer == "workspace":
        return t(
            "Set as the workspace default. Clear it (or pick inherit) to use the service default."
        )
    if source == "channel":
        return t("Set for this channel. Clear it (or pick inherit) to use the default.")
    return t(
        "Now: {value} ({source}).",
        value=setting.show(shown_default(settings.value(setting.name), source))[:100],
        source=t(_SOURCE[source]),
    )


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
    options = [_option(INHERIT, t(_INHERIT_LABEL))]
    if own is not None and own not in listed:
        # Set elsewhere (the CLI, an older list): offered, so saving the form keeps it.
        options.append(_option(own, t("{model} (current)", model=own)))
    options += [_option(m) for m in listed[: MAX_OPTIONS - len(options)]]
    return _select(options, own)


def _choice_select(setting: Setting, own: Any) -> dict[str, Any]:
    choices = list(setting.kind.choices or ())
    shown = setting.text(own) if own is not None else None
    if shown is not None and shown not in choices:
        choices.insert(0, shown)  # a value the menu no longer lists still round-trips
    options = [_option(INHERIT, t(_INHERIT_LABEL))]
    options += [_option(choice) for choice in choices]
    return _select(options, shown)


def _input_limit(setting: Setting) -> int:
    return min(setting.kind.max_chars or MAX_INPUT_CHARS, MAX_INPUT_CHARS)


def _input_element(setting: Setting, own: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": setting.kind.multiline,
    }
    if setting.kind.max_chars is not None:
        # The input's limit is the setting's: whatever can be set can be shown whole.
        element["max_length"] = _input_limit(setting)
    if own is not None:
        element["initial_value"] = setting.text(own)
    return element


def _too_long(setting: Setting, own: Any, layer: Layer) -> str:
    if layer == "workspace":
        return t(
            "*{label}*: set as the workspace default ({count} characters, more than this form "
            "holds). Saving keeps it; change it with the `set default {field}` command.",
            label=t(setting.label),
            count=len(setting.text(own)),
            field=setting.name,
        )
    return t(
        "*{label}*: set for this channel ({count} characters, more than this form "
        "holds). Saving keeps it; change it with the `set {field}` command.",
        label=t(setting.label),
        count=len(setting.text(own)),
        field=setting.name,
    )


def _block(
    setting: Setting, settings: EffectiveSettings, models: Sequence[str] | None, layer: Layer
) -> dict[str, Any]:
    field = setting.name
    own = _own(settings, layer, field)
    if own is not None and len(setting.text(own)) > _input_limit(setting):
        # Stored before today's limit: the form cannot hold it, so it shows how to change it
        # and leaves it out of the submission (an absent field is left as it is).
        return {
            "type": "section",
            "block_id": field,
            "text": _text(_too_long(setting, own, layer), "mrkdwn"),
        }
    if setting.from_catalogue and models and (own is None or len(own) <= MAX_OPTION_VALUE_CHARS):
        element = _model_select(own, models)
    elif setting.kind.choices:
        element = _choice_select(setting, own)
    else:
        element = _input_element(setting, own)
    return {
        "type": "input",
        "block_id": field,
        "optional": True,
        "label": _text(t(setting.label)),
        "hint": _text(_hint(settings, setting, layer)),
        "element": element,
    }


def settings_modal(
    *,
    team_id: str,
    channel_id: str,
    settings: EffectiveSettings,
    models: Sequence[str] | None,
    schema: Schema = SCHEMA,
    layer: Layer = "channel",
) -> dict[str, Any]:
    """The form for one channel, or (``layer="workspace"``, ``settings`` resolved for
    ``WORKSPACE_DEFAULTS``) for the workspace's defaults. ``private_metadata`` names the layer;
    the submission is checked again whatever it says."""
    if layer == "workspace":
        intro = t(
            "Defaults for every channel of this workspace (a channel's own settings win). "
            "Leave a field empty, or pick *inherit*, to use the service default."
        )
        title = t("Default settings")  # Slack cuts a modal title at 24 characters
    else:
        intro = t(
            "Model settings for {channel}. Leave a field empty, or pick *inherit*, to "
            "use the workspace or service default.",
            channel=f"<#{channel_id}>",
        )
        title = t("Channel settings")
    blocks: list[dict[str, Any]] = [{"type": "section", "text": _text(intro, "mrkdwn")}]
    blocks += [_block(setting, settings, models, layer) for setting in _form_fields(schema, layer)]
    metadata = {"team_id": team_id, "channel_id": channel_id, "layer": layer}
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "private_metadata": json.dumps(metadata),
        "title": _text(title, limit=24),
        "submit": _text(t("Save"), limit=24),
        "close": _text(t("Cancel"), limit=24),
        "blocks": blocks,
    }


def first_input(view: Mapping[str, Any], schema: Schema = SCHEMA, layer: Layer = "channel") -> str:
    """The block id to hang a form-wide error on (``response_action: errors`` needs an
    input block of the submitted view)."""
    values = (view.get("state") or {}).get("values") or {}
    names = [setting.name for setting in _form_fields(schema, layer)]
    return next((name for name in names if name in values), names[0])


def parse_submission(
    state: Mapping[str, Any], schema: Schema = SCHEMA, layer: Layer = "channel"
) -> dict[str, str | None]:
    """The text typed per field of ``layer``'s form in ``view.state.values`` (``None``:
    inherit). A field the view did not hold is left out, so it stays unchanged."""
    typed: dict[str, str | None] = {}
    for setting in _form_fields(schema, layer):
        if setting.name not in state:
            continue
        entry = (state.get(setting.name) or {}).get("value") or {}
        if entry.get("type") == "static_select":
            selected = (entry.get("selected_option") or {}).get("value")
            typed[setting.name] = None if selected in (None, INHERIT) else str(selected)
        else:
            text = entry.get("value")
            typed[setting.name] = text if isinstance(text, str) and text.strip() else None
    return typed


def form_errors(errors: Mapping[str, Exception]) -> dict[str, str]:
    """``response_action: errors`` for the refused fields (Slack shows up to 150 characters)."""
    return {name: _cut(str(error), 150) for name, error in errors.items()}


def _who(user: str | None) -> str:
    if user and user[:1] in {"U", "W"}:
        return f"<@{user}>"
    return user or t("someone")


def _channel_lines(record: ChannelSettingsRecord, schema: Schema) -> str:
    parts = [
        f"`{setting.name}` {escape(setting.show(value)[:60])}"
        for setting in schema
        if (value := record.values.get(setting.name)) is not None
    ]
    return ", ".join(parts) or "_" + t("all inherited") + "_"


_MEMBERSHIP_UNKNOWN = N_(
    "Channel settings are hidden: Slack would not tell me which channels you are in (the app "
    "needs the channels:read and groups:read scopes; reinstall it from its manifest). Run the "
    "settings command in a channel to see its settings."
)


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_text(text, "mrkdwn")]}


def _default_line(defaults: EffectiveSettings, setting: Setting) -> str:
    source = defaults.sources[setting.name]
    value = setting.show(shown_default(defaults.value(setting.name), source))
    return f"• `{setting.name}`: {escape(value[:80])} _({t(_SOURCE[source])})_"


def home_view(
    *,
    defaults: EffectiveSettings,
    rows: Sequence[ChannelSettingsRecord],
    last_changes: Mapping[str, SettingsAuditRecord],
    is_admin: bool,
    who_can_change: str,
    visible: Collection[str] | None,
    schema: Schema = SCHEMA,
) -> dict[str, Any]:
    """The Home tab for one viewer. ``visible``: the channels the viewer is a member of
    (``None``: unknown); a channel's settings are listed only when it is one of them, so a
    private channel's instructions never reach someone outside it."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _text(t("Model bot settings"))},
        {
            "type": "section",
            "text": _text(
                "*"
                + t("Workspace defaults")
                + "*\n"
                + "\n".join(_default_line(defaults, s) for s in schema),
                "mrkdwn",
            ),
        },
    ]
    if is_admin:
        # A block of its own (not an accessory): the defaults' list can be long.
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": _text(t("Edit workspace defaults")),
                        "action_id": EDIT_DEFAULTS_ACTION,
                    }
                ],
            }
        )
    blocks += [
        {"type": "divider"},
        {"type": "section", "text": _text("*" + t("Configured channels") + "*", "mrkdwn")},
    ]
    configured = [r for r in rows if r.channel_id]
    channels = [r for r in configured if visible is not None and r.channel_id in visible]
    hidden = len(configured) - len(channels)
    if not configured:
        blocks.append(
            {"type": "context", "elements": [_text(t("No channel has its own settings yet."))]}
        )
    elif visible is None:
        blocks.append(_context(t(_MEMBERSHIP_UNKNOWN)))
    elif hidden:
        blocks.append(
            _context(
                tn(
                    "{count} more channel has settings of its own, shown only to its members.",
                    "{count} more channels have settings of their own, shown only to members.",
                    hidden,
                )
            )
        )
    for record in channels[:40]:  # Slack allows 100 blocks per view
        change = last_changes.get(record.channel_id)
        last = (
            "\n_"
            + t(
                "last change: `{field}` by {who} {when}",
                field=change.field,
                who=_who(change.changed_by),
                # Slack shows the date in the viewer's own zone and language.
                when=f"<!date^{int(change.changed_at.timestamp())}^{{date_short_pretty}} {{time}}|"
                f"{change.changed_at:%Y-%m-%d %H:%M} UTC>",
            )
            + "_"
            if change is not None
            else ""
        )
        section: dict[str, Any] = {
            "type": "section",
            "text": _text(
                f"<#{record.channel_id}>: {_channel_lines(record, schema)}{last}", "mrkdwn"
            ),
        }
        if is_admin:
            section["accessory"] = {
                "type": "button",
                "text": _text(t("Edit")),
                "action_id": EDIT_ACTION,
                "value": record.channel_id,
            }
        blocks.append(section)
    if not is_admin:
        blocks.append({"type": "context", "elements": [_text(who_can_change, "mrkdwn")]})
    return {"type": "home", "blocks": blocks}
