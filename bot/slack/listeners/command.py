"""The slash command (``SLACK_COMMAND``). One guarantee: Slack's acknowledgement comes first,
and a command Slack reports as failed changes nothing.

The work (admin check, database, the form) comes after the acknowledgement; the answer goes
back ephemerally through the command's ``response_url`` (valid for 30 minutes), in the
language of the person who asked (``bot.slack.language``). The grammar and the answers live in
``bot.slack.commands``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.i18n import N_, t
from bot.slack.language import speaking_to
from bot.slack.listeners.ack_window import too_late
from bot.slack.listeners.deps import Ack, ListenerDeps, Respond
from bot.slack.listeners.settings_form import open_settings_form

__all__ = ["COMMAND_FAILED", "MODAL_FAILED", "TOO_LATE", "register"]

logger = logging.getLogger(__name__)

TOO_LATE = N_(
    ":warning: Slack stopped waiting before I could answer, so I did nothing. "
    "Please run the command again."
)
COMMAND_FAILED = N_(":warning: Something went wrong on my side. Please try the command again.")
MODAL_FAILED = N_(
    ":warning: I couldn't open the settings form in time. Please run the command again."
)


async def _answer(respond: Respond, text: str) -> None:
    """An ephemeral answer through the command's ``response_url``."""
    try:
        await respond(text=text, response_type="ephemeral")
    except Exception as exc:  # nothing else can reach the person; the log says why
        logger.warning("could not answer through response_url: %s", type(exc).__name__)


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    @app.command(deps.commands.command)
    async def on_command(
        ack: Ack,
        body: dict[str, Any],
        respond: Respond,
        client: AsyncWebClient,
        context: Mapping[str, Any],
    ) -> None:
        """Acknowledges first, then works and answers through ``response_url``."""
        await ack()
        # Whether Slack still waits is decided by when the request came, not by how long the
        # person's language took to look up.
        late = too_late(context)
        team_id = str(body.get("team_id") or deps.default_team)
        user_id = str(body.get("user_id") or "")
        try:
            async with speaking_to(deps.languages, team_id=team_id, user_id=user_id):
                await _handle(deps, body, respond, client, late, team_id)
        except Exception as exc:  # the language lookup is a courtesy; never worth a silence
            logger.warning("slash command failed: %s", type(exc).__name__, exc_info=True)
            await _answer(respond, COMMAND_FAILED)


async def _handle(
    deps: ListenerDeps,
    body: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    late: bool,
    team_id: str,
) -> None:
    commands = deps.commands
    if late:
        # Slack has most likely told the person the command failed: keep that true.
        await _answer(respond, t(TOO_LATE))
        return
    channel_id = str(body.get("channel_id") or "")
    try:
        result = await commands.handle(
            text=str(body.get("text") or ""),
            team_id=team_id,
            channel_id=channel_id,
            user_id=str(body.get("user_id") or ""),
        )
        if result.open_modal:
            opened = await open_settings_form(
                deps,
                client,
                trigger_id=str(body.get("trigger_id") or ""),
                team_id=team_id,
                channel_id=channel_id,
                layer=result.layer,
            )
            if not opened:
                await _answer(respond, t(MODAL_FAILED))
            return
    except Exception as exc:  # the person gets an answer whatever broke; the log says what
        logger.warning("slash command failed: %s", type(exc).__name__, exc_info=True)
        await _answer(respond, t(COMMAND_FAILED))
        return
    await _answer(respond, result.text)
