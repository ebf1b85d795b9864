"""The Bolt app: listeners that turn Slack events into conversation turns.

Each listener has one job and stays small; the turn itself lives in ``bot.conversation``.
Bolt acknowledges events before listeners run, so Slack gets its answer in well under 3 s
however long the model takes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.channel_settings import WORKSPACE_DEFAULTS
from bot.conversation import ConversationService, SettingsSource
from bot.metrics import Metrics
from bot.model_catalogue import ModelCatalogue
from bot.slack.accept import TICKET, EventIntake
from bot.slack.admins import AdminPolicy
from bot.slack.commands import SettingsCommands
from bot.slack.views import (
    EDIT_ACTION,
    MODAL_CALLBACK,
    home_view,
    parse_submission,
    settings_modal,
)
from bot.slack.workspaces import WorkspaceClients
from bot.turn_tracker import TurnTracker

__all__ = ["build_slack_app"]

logger = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[None]]


class SettingsStore(Protocol):
    async def update_channel_settings(
        self, *, team_id: str, channel_id: str, values: Any, updated_by: str | None
    ) -> Any: ...

    async def list_channel_settings(self, *, team_id: str) -> list[Any]: ...

    async def list_settings_audit(
        self, *, team_id: str, channel_id: str | None = None, limit: int = 50
    ) -> list[Any]: ...


def build_slack_app(
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    workspaces: WorkspaceClients,
    conversation: ConversationService,
    metrics: Metrics,
    tracker: TurnTracker,
    settings: SettingsSource,
    commands: SettingsCommands,
    admins: AdminPolicy,
    catalogue: ModelCatalogue,
    store: SettingsStore,
    verify_requests: bool = True,
    oauth_settings: AsyncOAuthSettings | None = None,
    intake: EventIntake | None = None,
) -> AsyncApp:
    """Build the Bolt app. ``verify_requests`` is only ``False`` in Socket Mode, where Slack
    sends no signature (the WebSocket itself is authenticated by the app token).

    With ``oauth_settings`` (multi-workspace install) ``client`` carries no token: Bolt finds
    each request's workspace token in the installation store, serves the install flow, and
    the OAuth ``oauth.v2.access`` call goes through ``client`` (so to ``SLACK_API_URL``).
    ``intake`` (made here when not given) accepts message events before their
    acknowledgement; the service also resumes adopted messages through it."""
    default_team = workspaces.default_team_id or ""
    app = AsyncApp(
        client=client,
        oauth_settings=oauth_settings,
        signing_secret=signing_secret,
        request_verification_enabled=verify_requests,
        # bot.slack.events filters the bot's own (and every other bot's) messages itself; with
        # Bolt's copy of that filter off, every event reaches a listener and is counted.
        ignoring_self_events_enabled=False,
        logger=logging.getLogger("bot.slack.bolt"),
    )

    intake = intake or EventIntake(
        conversation=conversation, workspaces=workspaces, metrics=metrics, tracker=tracker
    )

    @app.middleware
    async def accept_before_ack(
        body: dict[str, Any],
        context: AsyncBoltContext,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        """Stores every message event before Slack gets its answer (see bot.slack.accept)."""
        await intake.accept(body, context)
        return await next()

    @app.event("app_mention")
    async def on_app_mention(context: AsyncBoltContext) -> None:
        """A mention in a channel starts or continues a conversation in its thread."""
        await intake.answer("app_mention", context.get(TICKET))

    @app.event("message")
    async def on_message(context: AsyncBoltContext) -> None:
        """DMs, and follow-ups in threads the bot is part of (no mention needed)."""
        await intake.answer("message", context.get(TICKET))

    @app.command(commands.command)
    async def on_command(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """Answers ephemerally inside Slack's 3-second window; ``/ai config`` opens the modal."""
        team_id = str(body.get("team_id") or default_team)
        channel_id = str(body.get("channel_id") or "")
        user_id = str(body.get("user_id") or "")
        result = await commands.handle(
            text=str(body.get("text") or ""),
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
        )
        if not result.open_modal:
            await ack(text=result.text, response_type="ephemeral")
            return
        await ack()
        await _open_modal(client, str(body.get("trigger_id") or ""), team_id, channel_id)

    async def _open_modal(
        client: AsyncWebClient, trigger_id: str, team_id: str, channel_id: str
    ) -> None:
        effective = await settings.effective(team_id=team_id, channel_id=channel_id)
        view = settings_modal(
            team_id=team_id,
            channel_id=channel_id,
            settings=effective,
            models=await catalogue.choices(),
        )
        await client.views_open(trigger_id=trigger_id, view=view)

    @app.view(MODAL_CALLBACK)
    async def on_settings_submitted(ack: Ack, body: dict[str, Any]) -> None:
        """Checks the submitting user (from the signed payload) and validates every field
        before anything is saved; errors show on their fields."""
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or default_team)
        view = body.get("view") or {}
        try:
            channel_id = str(json.loads(view.get("private_metadata") or "{}")["channel_id"])
        except (ValueError, KeyError, TypeError):
            await ack(response_action="errors", errors={"model": "This form is out of date."})
            return
        if not await admins.may_change(user_id, team_id=team_id):
            await ack(
                response_action="errors",
                errors={"model": "Only admins can change these settings."},
            )
            return
        values, errors = parse_submission(
            (view.get("state") or {}).get("values") or {}, allowed_model=catalogue.permits
        )
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await store.update_channel_settings(
            team_id=team_id, channel_id=channel_id, values=values, updated_by=user_id
        )
        await ack()

    @app.event("app_home_opened")
    async def on_app_home_opened(
        event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """Publishes the Home tab: workspace defaults and every configured channel."""
        if event.get("tab") not in (None, "home"):
            return
        user_id = str(event.get("user") or "")
        team_id = str(body.get("team_id") or default_team)
        await client.views_publish(user_id=user_id, view=await _home(team_id, user_id))

    async def _home(team_id: str, user_id: str) -> dict[str, Any]:
        rows = await store.list_channel_settings(team_id=team_id)
        audit = await store.list_settings_audit(team_id=team_id, limit=200)
        last: dict[str, Any] = {}
        for row in audit:  # newest first: the first seen per channel is its last change
            last.setdefault(row.channel_id, row)
        return home_view(
            defaults=await settings.effective(team_id=team_id, channel_id=WORKSPACE_DEFAULTS),
            rows=rows,
            last_changes=last,
            is_admin=await admins.may_change(user_id, team_id=team_id),
            who_can_change=admins.who_can_change(),
        )

    @app.action(EDIT_ACTION)
    async def on_edit_channel(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The Home tab's Edit button: admins only (checked here, not just hidden)."""
        await ack()
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or default_team)
        actions = body.get("actions") or [{}]
        channel_id = str(actions[0].get("value") or "")
        if not channel_id or not await admins.may_change(user_id, team_id=team_id):
            return
        await _open_modal(client, str(body.get("trigger_id") or ""), team_id, channel_id)

    if oauth_settings is not None:
        installations = oauth_settings.installation_store

        async def forget_workspace(body: Mapping[str, Any], *, user_ids: list[str]) -> None:
            team_id = str(body.get("team_id") or "")
            enterprise_id = body.get("enterprise_id") or None
            if not team_id:
                return
            if user_ids:  # only user tokens were revoked: the bot stays
                for user_id in user_ids:
                    await installations.async_delete_installation(
                        enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
                    )
                return
            await installations.async_delete_all(enterprise_id=enterprise_id, team_id=team_id)
            workspaces.forget(team_id)
            logger.info("workspace tokens deleted", extra={"team": team_id})

        @app.event("app_uninstalled")
        async def on_app_uninstalled(body: dict[str, Any]) -> None:
            """The app was removed from a workspace: its tokens are deleted and forgotten."""
            metrics.events_received.labels(type="app_uninstalled").inc()
            await forget_workspace(body, user_ids=[])

        @app.event("tokens_revoked")
        async def on_tokens_revoked(body: dict[str, Any], event: dict[str, Any]) -> None:
            """Revoked bot tokens delete the workspace's installation; revoked user tokens
            delete only those users' installations."""
            metrics.events_received.labels(type="tokens_revoked").inc()
            tokens = event.get("tokens") or {}
            if tokens.get("bot"):
                await forget_workspace(body, user_ids=[])
            else:
                users = [str(u) for u in tokens.get("oauth") or [] if u]
                if users:
                    await forget_workspace(body, user_ids=users)

    return app
