"""The Bolt app: listeners that turn Slack events into conversation turns.

Each listener has one job and stays small; the turn itself lives in ``bot.conversation``.
Bolt acknowledges events before listeners run, so Slack gets its answer in well under 3 s
however long the model takes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationService, IncomingMessage, SettingsSource, TurnOutcome
from bot.metrics import Metrics
from bot.slack.commands import Ack, command_reply, payload_fields
from bot.slack.events import from_app_mention, from_message
from bot.slack.identity import BotIdentity
from bot.turn_tracker import TurnTracker

__all__ = ["build_slack_app"]

logger = logging.getLogger(__name__)

Converter = Callable[..., IncomingMessage | None]


def build_slack_app(
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    identity: BotIdentity,
    conversation: ConversationService,
    metrics: Metrics,
    tracker: TurnTracker,
    settings: SettingsSource,
    command: str = "/ai",
    verify_requests: bool = True,
) -> AsyncApp:
    """Build the Bolt app. ``verify_requests`` is only ``False`` in Socket Mode, where Slack
    sends no signature (the WebSocket itself is authenticated by the app token)."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=verify_requests,
        # bot.slack.events filters the bot's own (and every other bot's) messages itself; with
        # Bolt's copy of that filter off, every event reaches a listener and is counted.
        ignoring_self_events_enabled=False,
        logger=logging.getLogger("bot.slack.bolt"),
    )

    async def handle(body: Mapping[str, Any], convert: Converter) -> None:
        event = body.get("event") or {}
        metrics.events_received.labels(type=str(event.get("type", "unknown"))).inc()
        message = convert(
            event,
            team_id=str(body.get("team_id") or identity.team_id),
            bot_user_id=identity.user_id,
            event_id=body.get("event_id"),
        )
        if message is None:
            metrics.turns.labels(outcome=TurnOutcome.IGNORED).inc()
            return
        started = time.monotonic()
        async with tracker.track():
            with metrics.turns_in_flight.track_inprogress():
                outcome = await conversation.handle(message)
        metrics.turns.labels(outcome=outcome).inc()
        if outcome not in (TurnOutcome.IGNORED, TurnOutcome.DUPLICATE):
            metrics.turn_seconds.observe(time.monotonic() - started)

    @app.event("app_mention")
    async def on_app_mention(body: dict[str, Any]) -> None:
        """A mention in a channel starts or continues a conversation in its thread."""
        await handle(body, from_app_mention)

    @app.event("message")
    async def on_message(body: dict[str, Any]) -> None:
        """DMs, and follow-ups in threads the bot is part of (no mention needed)."""
        await handle(body, from_message)

    @app.command(command)
    async def on_command(ack: Ack, body: dict[str, Any]) -> None:
        """The slash command answers ephemerally, inside Slack's 3-second window."""
        text, team_id, channel_id = payload_fields(body)
        reply = await command_reply(
            command=command,
            text=text,
            team_id=team_id or identity.team_id,
            channel_id=channel_id,
            settings=settings,
        )
        await ack(text=reply, response_type="ephemeral")

    @app.event("app_home_opened")
    async def on_app_home_opened() -> None:
        """Acknowledged so Slack does not retry it; the Home tab is not built yet."""

    return app
