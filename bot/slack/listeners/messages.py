"""Mentions and messages: one guarantee, every human message for the bot is stored before
Slack gets its acknowledgement, and answered after it in its thread's order.

The middleware runs inside Bolt's dispatch, before the acknowledgement, and accepts message
events (``bot.slack.accept``); the listeners run after it and answer the accepted ticket. The
bot's own messages never get here: Bolt's self-event filter drops them, and
``bot.slack.events`` drops every bot's message again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse

from bot.slack.accept import TICKET
from bot.slack.listeners.deps import ListenerDeps

__all__ = ["register"]


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    intake = deps.intake

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
