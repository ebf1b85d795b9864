"""The settings form (modal): opened for admins, and its submission saved, or refused with the
reason on the fields. One guarantee: the form never fails while the settings change anyway.

The form edits one layer: a channel, or the workspace's defaults (``private_metadata`` names
which; either way the signed user must be an admin when the form is saved, not only when it
was opened).

The submission is answered in its acknowledgement (close, or errors on fields), so the admin
check, the validation and the save (``SettingsEditor``, the same service the slash command and
the CLI use) must finish within what is left of Slack's 3 seconds; when they cannot, nothing
is saved and the form says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.channel_settings import WORKSPACE_DEFAULTS, Actor, InvalidSettings, Layer, NotAllowed
from bot.errors import DeliveryError
from bot.i18n import N_, Reader, reading, t
from bot.slack.failures import slack_failures
from bot.slack.language import speaking_to
from bot.slack.listeners.ack_window import time_left
from bot.slack.listeners.deps import Ack, ListenerDeps
from bot.slack.views import (
    MODAL_CALLBACK,
    first_input,
    form_errors,
    parse_submission,
    settings_modal,
)

__all__ = ["FORM_TOO_LATE", "open_settings_form", "register"]

logger = logging.getLogger(__name__)

FORM_TOO_LATE = N_("This took too long and nothing was saved. Please press Save again.")
NOT_AN_ADMIN = N_("Only admins can change these settings.")
OUT_OF_DATE = N_("This form is out of date.")


async def open_settings_form(
    deps: ListenerDeps,
    client: AsyncWebClient,
    *,
    trigger_id: str,
    team_id: str,
    channel_id: str,
    layer: Layer = "channel",
) -> bool:
    """Open the form for one channel, or (``layer="workspace"``) for the workspace's defaults
    (the caller has checked the person); ``False`` when Slack refused it."""
    if layer == "workspace":
        channel_id = WORKSPACE_DEFAULTS
    effective = await deps.settings.effective(team_id=team_id, channel_id=channel_id)
    view = settings_modal(
        team_id=team_id,
        channel_id=channel_id,
        settings=effective,
        models=await deps.catalogue.choices(),
        schema=deps.editor.schema,
        layer=layer,
    )
    try:
        with slack_failures("views.open"):
            await client.views_open(trigger_id=trigger_id, view=view)
    except DeliveryError as exc:
        logger.warning("views.open failed: %s", exc.code)
        return False
    return True


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    editor = deps.editor

    @app.view(MODAL_CALLBACK)
    async def on_settings_submitted(
        ack: Ack, body: dict[str, Any], context: Mapping[str, Any]
    ) -> None:
        """Checks the submitting user (from the signed payload, whatever the form carries)
        and every field before anything is saved; errors show on their fields."""
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or deps.default_team)
        # Field errors in the submitter's language; their users.info is cached from opening
        # the form, and the lookup counts against Slack's 3 seconds like the rest.
        reader = Reader()
        try:
            async with asyncio.timeout(time_left(context)):
                async with speaking_to(deps.languages, team_id=team_id, user_id=user_id) as reader:
                    await _submitted(ack, body, context, user_id, team_id)
        except TimeoutError:
            logger.warning("settings form not saved: Slack's 3-second window ran out")
            view = body.get("view") or {}
            field = first_input(view, editor.schema, _layer(view))
            with reading(reader.language, reader.timezone):
                await ack(response_action="errors", errors={field: t(FORM_TOO_LATE)})

    async def _submitted(
        ack: Ack, body: dict[str, Any], context: Mapping[str, Any], user_id: str, team_id: str
    ) -> None:
        view = body.get("view") or {}
        layer = _layer(view)
        field = first_input(view, editor.schema, layer)
        try:
            channel_id = str(json.loads(view.get("private_metadata") or "{}")["channel_id"])
        except (ValueError, KeyError, TypeError):
            await ack(response_action="errors", errors={field: t(OUT_OF_DATE)})
            return
        if layer == "workspace":
            channel_id = WORKSPACE_DEFAULTS
        elif channel_id == WORKSPACE_DEFAULTS:
            # A channel's form naming no channel would write the workspace's row.
            await ack(response_action="errors", errors={field: t(OUT_OF_DATE)})
            return
        typed = parse_submission(
            (view.get("state") or {}).get("values") or {}, editor.schema, layer
        )
        try:
            await editor.change(
                Actor.slack(user_id), team_id=team_id, channel_id=channel_id, typed=typed
            )
        except NotAllowed:
            await ack(response_action="errors", errors={field: t(NOT_AN_ADMIN)})
            return
        except InvalidSettings as exc:
            await ack(response_action="errors", errors=form_errors(exc.errors))
            return
        await ack()


def _layer(view: Mapping[str, Any]) -> Layer:
    """The layer the form names (a form from before layers existed edits a channel)."""
    try:
        named = json.loads(view.get("private_metadata") or "{}").get("layer")
    except (ValueError, AttributeError):
        return "channel"
    return "workspace" if named == "workspace" else "channel"
