"""Channel settings: the schema (each setting declared once), their kinds of values, how the
layers resolve, and the one service that changes them.

- ``schema``: ``SCHEMA``, the settings in order; everything else derives from it.
- ``kinds``: value types and ranges: parsing typed text, showing values, exact round trips.
- ``layers``: environment < workspace defaults < channel, and ``StoredChannelSettings``.
- ``editor``: ``SettingsEditor``: admin check, validation, save and audit, in one place.
- ``flags``: the CLI's ``--FIELD-NAME`` options.
"""

from bot.channel_settings.editor import (
    OPERATOR,
    Actor,
    InvalidSettings,
    NotAllowed,
    SettingsEditor,
    WrongLayer,
)
from bot.channel_settings.kinds import InvalidSetting
from bot.channel_settings.layers import EffectiveSettings, StoredChannelSettings, resolve
from bot.channel_settings.schema import (
    MAX_COUNT,
    MAX_INSTRUCTIONS_CHARS,
    SCHEMA,
    WORKSPACE_DEFAULTS,
    Layer,
    Schema,
    Setting,
    show_value,
)

__all__ = [
    "MAX_COUNT",
    "MAX_INSTRUCTIONS_CHARS",
    "OPERATOR",
    "SCHEMA",
    "WORKSPACE_DEFAULTS",
    "Actor",
    "EffectiveSettings",
    "InvalidSetting",
    "InvalidSettings",
    "Layer",
    "NotAllowed",
    "Schema",
    "Setting",
    "SettingsEditor",
    "StoredChannelSettings",
    "WrongLayer",
    "resolve",
    "show_value",
]
