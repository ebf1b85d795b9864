"""Display names from ``users.info``, cached (names change rarely; threads name the same
people over and over)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.workspaces import WorkspaceClients, WorkspaceNotInstalled

__all__ = ["UserDirectory"]

logger = logging.getLogger(__name__)


class UserDirectory:
    def __init__(
        self,
        workspaces: WorkspaceClients,
        *,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspaces = workspaces
        self._ttl = ttl
        self._clock = clock
        self._names: dict[tuple[str, str], tuple[float, str]] = {}

    async def name(self, user_id: str, *, team_id: str) -> str:
        """``user_id``'s display name, asked with ``team_id``'s bot token."""
        cached = self._names.get((team_id, user_id))
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        name = user_id
        try:
            client = await self._workspaces.client(team_id)
            response = await client.users_info(user=user_id)
            user = response.get("user") or {}
            profile = user.get("profile") or {}
            name = (
                profile.get("display_name")
                or profile.get("real_name")
                or user.get("real_name")
                or user.get("name")
                or user_id
            )
        except (SlackApiError, SlackClientError, WorkspaceNotInstalled) as exc:
            # A name is a courtesy: without it the model reads the id.
            logger.info("users.info failed for a display name: %s", type(exc).__name__)
        self._names[(team_id, user_id)] = (self._clock(), str(name))
        return str(name)

    async def names(self, user_ids: Iterable[str], *, team_id: str) -> dict[str, str]:
        return {
            user_id: await self.name(user_id, team_id=team_id)
            for user_id in dict.fromkeys(user_ids)
        }
