"""Bolt listeners: one small module per Slack surface, each with ``register(app, deps)`` and
its one guarantee in its docstring.

- ``assistant``: Slack's assistant pane (Bolt's ``AsyncAssistant``): threads started, their
  context, suggested prompts; registered first (its middleware must run before ``messages``')
- ``messages``: mentions, DMs and thread follow-ups (stored before the acknowledgement)
- ``command``: the slash command (acknowledged first, answered through ``response_url``)
- ``settings_form``: the settings modal's submission (answered within the window)
- ``home``: the App Home tab and its Edit buttons (members only)
- ``installs``: install lifecycle events (tokens deleted and forgotten)
- ``feedback``: the 👍/👎 buttons every finished answer ends with, and the 👎 comment form
- ``approvals``: Approve / Deny on a tool call's approval question (the asker's click only)

A new surface is a new module here, added to ``SURFACES``.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import (
    approvals,
    assistant,
    command,
    feedback,
    home,
    installs,
    messages,
    settings_form,
)
from bot.slack.listeners.deps import ListenerDeps

__all__ = ["SURFACES", "ListenerDeps", "register_all"]

SURFACES = (assistant, messages, command, settings_form, home, installs, feedback, approvals)


def register_all(app: AsyncApp, deps: ListenerDeps) -> None:
    for surface in SURFACES:
        surface.register(app, deps)
