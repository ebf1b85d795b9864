"""Which channels a person is in, so settings of a private channel are shown only to members.

Asked with ``users.conversations`` (the bot token, ``user=…``): Slack lists the person's public
channels, and their private channels only where the bot is a member too. A channel outside
that list is treated as one the person may not see: the check fails closed. A lookup reads at
most ``max_pages`` pages (a person in more channels sees the first ones; the rest are hidden,
never leaked), answers are cached per person for ``ttl`` seconds (the Home tab is opened
often), concurrent lookups for one person share one request, and at most ``max_cached``
people are remembered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.errors import DeliveryError
from bot.lookup_cache import SharedLookups
from bot.slack.failures import slack_failures
from bot.slack.workspaces import WorkspaceClients

__all__ = ["MEMBERSHIP_SCOPES", "ChannelMembership"]

logger = logging.getLogger(__name__)

MEMBERSHIP_SCOPES = ("channels:read", "groups:read")
"""What ``users.conversations`` needs for public and private channels."""

_PAGE_SIZE = 200  # Slack recommends no more than 200 per page


class ChannelMembership:
    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        ttl: float = 300.0,
        max_pages: int = 5,
        max_cached: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspaces = workspaces
        self._max_pages = max_pages
        self._lookups: SharedLookups[tuple[str, str], frozenset[str] | None] = SharedLookups(
            ttl=ttl, maxsize=max_cached, timer=clock
        )

    async def channels_of(self, user_id: str, *, team_id: str) -> frozenset[str] | None:
        """The channel ids ``user_id`` is a member of, or ``None`` when Slack would not say
        (a missing scope, an error): then no channel counts as visible (and nothing is
        cached, so the next look asks again)."""
        return await self._lookups.get(
            (team_id, user_id),
            lambda: self._fetch(user_id, team_id),
            keep=lambda channels: channels is not None,
        )

    async def is_member(self, user_id: str, channel_id: str, *, team_id: str) -> bool:
        channels = await self.channels_of(user_id, team_id=team_id)
        return channels is not None and channel_id in channels

    async def _fetch(self, user_id: str, team_id: str) -> frozenset[str] | None:
        found: set[str] = set()
        cursor: str | None = None
        try:
            client = await self._workspaces.client(team_id)
            for _ in range(self._max_pages):
                with slack_failures("users.conversations"):
                    response = await client.users_conversations(
                        user=user_id,
                        types="public_channel,private_channel",
                        exclude_archived=True,
                        limit=_PAGE_SIZE,
                        cursor=cursor,
                    )
                for channel in response.get("channels") or []:
                    if isinstance(channel, dict) and isinstance(channel.get("id"), str):
                        found.add(channel["id"])
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if cursor is None:
                    break
        except DeliveryError as exc:
            logger.warning("users.conversations failed: %s", exc.code)
            return None
        return frozenset(found)
