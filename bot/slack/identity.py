"""Who the bot is in its workspace, from ``auth.test``."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.failures import slack_failures

__all__ = ["BotIdentity", "fetch_identity"]


@dataclass(frozen=True, slots=True)
class BotIdentity:
    user_id: str
    bot_id: str | None
    team_id: str


async def fetch_identity(client: AsyncWebClient) -> BotIdentity:
    """Ask Slack who the token belongs to (``SlackRefusedError`` when it refuses the token;
    any failure as a ``DeliveryError``)."""
    with slack_failures("auth.test"):
        response = await client.auth_test()
    return BotIdentity(
        user_id=str(response["user_id"]),
        bot_id=response.get("bot_id"),
        team_id=str(response["team_id"]),
    )
