"""Who the bot is in its workspace, from ``auth.test``."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["BotIdentity", "fetch_identity"]


@dataclass(frozen=True, slots=True)
class BotIdentity:
    user_id: str
    bot_id: str | None
    team_id: str


async def fetch_identity(client: AsyncWebClient) -> BotIdentity:
    """Ask Slack who the token belongs to (raises slack_sdk errors: the caller maps them)."""
    response = await client.auth_test()
    return BotIdentity(
        user_id=str(response["user_id"]),
        bot_id=response.get("bot_id"),
        team_id=str(response["team_id"]),
    )
