"""The Bolt app: listeners that turn Slack events into conversation turns.

Each listener has one job and stays small; the turn itself lives in ``bot.conversation``.
Bolt acknowledges events before listeners run, so Slack gets its answer in well under 3 s
however long the model takes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.channel_settings import WORKSPACE_DEFAULTS
from bot.conversation import ConversationService, SettingsSource
from bot.metrics import Metrics
from bot.model_catalogue import ModelCatalogue
from bot.slack.accept import TICKET, EventIntake
from bot.slack.admins import AdminPolicy
from bot.slack.commands import SettingsCommands
from bot.slack.membership import ChannelMembership
from bot.slack.views import (
    EDIT_ACTION,
    MODAL_CALLBACK,
    first_input,
    home_view,
    parse_submission,
    settings_modal,
)
from bot.slack.workspaces import WorkspaceClients
from bot.turn_tracker import TurnTracker

__all__ = ["ACK_WINDOW", "RECEIVED_AT", "build_slack_app"]

logger = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]

RECEIVED_AT: Final = "received_at"
"""Context key: ``time.monotonic()`` when the HTTP edge received the request (``bot.server``
sets it; Socket Mode has none, and then a listener counts from its own start)."""
ACK_WINDOW: Final = 2.5
"""Seconds after receipt by which Slack must have our answer: its limit is 3 s from sending,
and the network takes its share."""

TOO_LATE = (
    ":warning: Slack stopped waiting before I could answer, so I did nothing. "
    "Please run the command again."
)
COMMAND_FAILED = ":warning: Something went wrong on my side. Please try the command again."
MODAL_FAILED = ":warning: I couldn't open the settings form in time. Please run the command again."
FORM_TOO_LATE = "This took too long and nothing was saved. Please press Save again."


def _time_left(context: Mapping[str, Any]) -> float:
    """Seconds left of the ``ACK_WINDOW`` of the request being handled."""
    received = context.get(RECEIVED_AT)
    if not isinstance(received, float):
        return ACK_WINDOW
    return ACK_WINDOW - (time.monotonic() - received)


def _too_late(context: Mapping[str, Any]) -> bool:
    return _time_left(context) <= 0


async def _answer(respond: Respond, text: str) -> None:
    """An ephemeral answer through the command's ``response_url`` (valid for 30 minutes)."""
    try:
        await respond(text=text, response_type="ephemeral")
    except Exception as exc:  # nothing else can reach the person; the log says why
        logger.warning("could not answer through response_url: %s", type(exc).__name__)


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
    membership: ChannelMembership | None = None,
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
    members = membership or ChannelMembership(workspaces=workspaces)
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
    async def on_command(
        ack: Ack,
        body: dict[str, Any],
        respond: Respond,
        client: AsyncWebClient,
        context: Mapping[str, Any],
    ) -> None:
        """Acknowledges first: Slack waits 3 s, and a command it reports as failed must change
        nothing. The work (admin lookup, database, the modal) comes after, and the answer goes
        back through ``response_url``, ephemerally."""
        await ack()
        if _too_late(context):
            # Slack has most likely told the person the command failed: keep that true.
            await _answer(respond, TOO_LATE)
            return
        team_id = str(body.get("team_id") or default_team)
        channel_id = str(body.get("channel_id") or "")
        user_id = str(body.get("user_id") or "")
        try:
            result = await commands.handle(
                text=str(body.get("text") or ""),
                team_id=team_id,
                channel_id=channel_id,
                user_id=user_id,
            )
            if result.open_modal:
                trigger_id = str(body.get("trigger_id") or "")
                if not await _open_modal(client, trigger_id, team_id, channel_id):
                    await _answer(respond, MODAL_FAILED)
                return
        except Exception as exc:  # the person gets an answer whatever broke; the log says what
            logger.warning("slash command failed: %s", type(exc).__name__, exc_info=True)
            await _answer(respond, COMMAND_FAILED)
            return
        await _answer(respond, result.text)

    async def _open_modal(
        client: AsyncWebClient, trigger_id: str, team_id: str, channel_id: str
    ) -> bool:
        effective = await settings.effective(team_id=team_id, channel_id=channel_id)
        view = settings_modal(
            team_id=team_id,
            channel_id=channel_id,
            settings=effective,
            models=await catalogue.choices(),
        )
        try:
            await client.views_open(trigger_id=trigger_id, view=view)
        except (SlackApiError, SlackClientError) as exc:
            reason = (
                exc.response.get("error") if isinstance(exc, SlackApiError) else None
            ) or type(exc).__name__
            logger.warning("views.open failed: %s", reason)
            return False
        return True

    @app.view(MODAL_CALLBACK)
    async def on_settings_submitted(
        ack: Ack, body: dict[str, Any], context: Mapping[str, Any]
    ) -> None:
        """Checks the submitting user (from the signed payload) and validates every field
        before anything is saved; errors show on their fields. The answer to Slack (close, or
        errors) must come within its 3 s: when the check and the save cannot finish in that
        window nothing is saved and the form says so, so the form never fails while the
        settings change anyway."""
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or default_team)
        view = body.get("view") or {}
        state = (view.get("state") or {}).get("values") or {}
        field = first_input(view)
        try:
            channel_id = str(json.loads(view.get("private_metadata") or "{}")["channel_id"])
        except (ValueError, KeyError, TypeError):
            await ack(response_action="errors", errors={field: "This form is out of date."})
            return
        try:
            async with asyncio.timeout(_time_left(context)):
                if not await admins.may_change(user_id, team_id=team_id):
                    await ack(
                        response_action="errors",
                        errors={field: "Only admins can change these settings."},
                    )
                    return
                effective = await settings.effective(team_id=team_id, channel_id=channel_id)
                values, errors = parse_submission(
                    state,
                    allowed_models=catalogue.allowed,
                    current_model=effective.model
                    if effective.sources["model"] == "channel"
                    else None,
                )
                if errors:
                    await ack(response_action="errors", errors=errors)
                    return
                await store.update_channel_settings(
                    team_id=team_id, channel_id=channel_id, values=values, updated_by=user_id
                )
        except TimeoutError:
            logger.warning("settings form not saved: Slack's 3-second window ran out")
            await ack(response_action="errors", errors={field: FORM_TOO_LATE})
            return
        await ack()

    @app.event("app_home_opened")
    async def on_app_home_opened(
        event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """Publishes the Home tab: workspace defaults, and the configured channels the viewer
        is a member of (a private channel's settings stay with its members)."""
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
        configured = any(row.channel_id for row in rows)
        return home_view(
            defaults=await settings.effective(team_id=team_id, channel_id=WORKSPACE_DEFAULTS),
            rows=rows,
            last_changes=last,
            is_admin=await admins.may_change(user_id, team_id=team_id),
            who_can_change=admins.who_can_change(),
            # Asked only when there is something to hide.
            visible=await members.channels_of(user_id, team_id=team_id)
            if configured
            else frozenset(),
        )

    @app.action(EDIT_ACTION)
    async def on_edit_channel(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The Home tab's Edit button: admins who are members of the channel only (checked
        here, not just hidden)."""
        await ack()
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or default_team)
        actions = body.get("actions") or [{}]
        channel_id = str(actions[0].get("value") or "")
        if not channel_id or not await admins.may_change(user_id, team_id=team_id):
            return
        if not await members.is_member(user_id, channel_id, team_id=team_id):
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
