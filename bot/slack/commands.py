"""The slash command (``SLACK_COMMAND``, default ``/ai``): read-only for now.

``/ai show`` shows the channel's effective settings and where each comes from; ``/ai help``
lists the commands. Changing settings from Slack (set, reset, the modal) is not built yet, and
the answer says so and points at the operator CLI rather than failing silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.channel_config import FIELDS, EffectiveSettings
from bot.conversation import SettingsSource

__all__ = ["Ack", "command_reply", "payload_fields"]

Ack = Callable[..., Awaitable[None]]

_SOURCE_WORDS = {
    "channel": "set for this channel",
    "workspace": "workspace default",
    "default": "service default",
    "unset": "model's own default",
}


def _show(settings: EffectiveSettings, channel_id: str) -> str:
    lines = [f"*Model settings for <#{channel_id}>*"]
    for name in FIELDS:
        value = settings.value(name)
        shown = "not set" if value is None else str(value)
        if name == "instructions" and value is not None and len(shown) > 200:
            shown = shown[:199] + "…"
        lines.append(f"• `{name}`: {shown} _({_SOURCE_WORDS[settings.sources[name]]})_")
    return "\n".join(lines)


def _help(command: str) -> str:
    return "\n".join(
        [
            f"*{command}* — the model bot's settings for this channel",
            f"• `{command} show`: the channel's model, instructions and sampling settings",
            f"• `{command} help`: this help",
            "Mention me in a channel to start a conversation; reply in the thread to continue.",
        ]
    )


async def command_reply(
    *, command: str, text: str, team_id: str, channel_id: str, settings: SettingsSource
) -> str:
    """The ephemeral answer to ``/ai <text>``."""
    verb = (text.strip().split() or ["show"])[0].lower()
    if verb in {"show", ""}:
        effective = await settings.effective(team_id=team_id, channel_id=channel_id)
        return _show(effective, channel_id)
    if verb == "help":
        return _help(command)
    if verb in {"set", "reset", "config", "usage", "history"}:
        return (
            f"`{command} {verb}` is not available from Slack yet. A workspace operator can change "
            f"settings with `python -m bot config set --channel {channel_id} …`.\n\n"
            + _help(command)
        )
    return f"I don't know `{command} {verb}`.\n\n" + _help(command)


def payload_fields(body: dict[str, Any]) -> tuple[str, str, str]:
    return (
        str(body.get("text") or ""),
        str(body.get("team_id") or ""),
        str(body.get("channel_id") or ""),
    )
