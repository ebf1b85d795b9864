"""Moved to ``bot.channel_settings`` (the schema, kinds of values, layers and the editor).

Only re-exports the names code written against the old module imports, so branches made
before the move still merge; import from ``bot.channel_settings`` instead.
"""

from bot.channel_settings import (
    MAX_INSTRUCTIONS_CHARS,
    EffectiveSettings,
    InvalidSetting,
    resolve,
)

__all__ = ["MAX_INSTRUCTIONS_CHARS", "EffectiveSettings", "InvalidSetting", "resolve"]
