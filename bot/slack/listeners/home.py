"""The App Home tab and its Edit buttons. One guarantee: a channel's settings are shown only
to its members, and only an admin who is a member can open its form; only an admin can open
the workspace defaults' form.

``app_home_opened`` is acknowledged by Bolt before this listener runs; the Edit button
acknowledges first and checks (on the server, whatever the view showed) after.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.channel_settings import WORKSPACE_DEFAULTS, Actor, Layer
from bot.slack.language import speaking_to
from bot.slack.listeners.deps import Ack, ListenerDeps
from bot.slack.listeners.settings_form import open_settings_form
from bot.slack.views import EDIT_ACTION, EDIT_DEFAULTS_ACTION, home_view

__all__ = ["register"]


async def _home(deps: ListenerDeps, team_id: str, user_id: str) -> dict[str, Any]:
    rows = await deps.store.list_channel_settings(team_id=team_id)
    audit = await deps.store.list_settings_audit(team_id=team_id, limit=200)
    last: dict[str, Any] = {}
    for row in audit:  # newest first: the first seen per channel is its last change
        last.setdefault(row.channel_id, row)
    configured = any(row.channel_id for row in rows)
    return home_view(
        defaults=await deps.settings.effective(team_id=team_id, channel_id=WORKSPACE_DEFAULTS),
        rows=rows,
        last_changes=last,
        is_admin=await deps.editor.may_edit(Actor.slack(user_id), team_id=team_id),
        who_can_change=deps.admins.who_can_change(),
        # Asked only when there is something to hide.
        visible=await deps.membership.channels_of(user_id, team_id=team_id)
        if configured
        else frozenset(),
        schema=deps.editor.schema,
    )


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    @app.event("app_home_opened")
    async def on_app_home_opened(
        event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """Publishes the Home tab: workspace defaults, and the configured channels the viewer
        is a member of (a private channel's settings stay with its members)."""
        if event.get("tab") not in (None, "home"):
            return
        user_id = str(event.get("user") or "")
        team_id = str(body.get("team_id") or deps.default_team)
        async with speaking_to(deps.languages, team_id=team_id, user_id=user_id):
            view = await _home(deps, team_id, user_id)
        await client.views_publish(user_id=user_id, view=view)

    @app.action(EDIT_ACTION)
    async def on_edit_channel(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The Home tab's Edit button: admins who are members of the channel only (checked
        here, not just hidden)."""
        await ack()
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or deps.default_team)
        actions = body.get("actions") or [{}]
        channel_id = str(actions[0].get("value") or "")
        if not channel_id:
            return
        if not await deps.editor.may_edit(Actor.slack(user_id), team_id=team_id):
            return
        if not await deps.membership.is_member(user_id, channel_id, team_id=team_id):
            return
        await _open_form(
            deps, client, body, team_id=team_id, user_id=user_id, channel_id=channel_id
        )

    @app.action(EDIT_DEFAULTS_ACTION)
    async def on_edit_defaults(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The Home tab's "Edit workspace defaults" button: admins only (checked here, and
        again when the form is saved)."""
        await ack()
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or deps.default_team)
        if not await deps.editor.may_edit(Actor.slack(user_id), team_id=team_id):
            return
        await _open_form(
            deps,
            client,
            body,
            team_id=team_id,
            user_id=user_id,
            channel_id=WORKSPACE_DEFAULTS,
            layer="workspace",
        )


async def _open_form(
    deps: ListenerDeps,
    client: AsyncWebClient,
    body: dict[str, Any],
    *,
    team_id: str,
    user_id: str,
    channel_id: str,
    layer: Layer = "channel",
) -> None:
    """The settings form for ``channel_id`` (or the workspace defaults), in the language of the
    admin who pressed the button; the language may take at most 1 s of the trigger's 3."""
    async with speaking_to(deps.languages, team_id=team_id, user_id=user_id, within=1.0):
        await open_settings_form(
            deps,
            client,
            trigger_id=str(body.get("trigger_id") or ""),
            team_id=team_id,
            channel_id=channel_id,
            layer=layer,
        )
