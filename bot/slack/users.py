"""Display names from ``users.info``, cached (names change rarely; threads name the same
people over and over)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["UserDirectory"]

logger = logging.getLogger(__name__)


class UserDirectory:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._names: dict[str, tuple[float, str]] = {}

    async def name(self, user_id: str) -> str:
        cached = self._names.get(user_id)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        name = user_id
        try:
            response = await self._client.users_info(user=user_id)
            user = response.get("user") or {}
            profile = user.get("profile") or {}
            name = (
                profile.get("display_name")
                or profile.get("real_name")
                or user.get("real_name")
                or user.get("name")
                or user_id
            )
        except (SlackApiError, SlackClientError) as exc:
            # A name is a courtesy: without it the model reads the id.
            logger.info("users.info failed for a display name: %s", type(exc).__name__)
        self._names[user_id] = (self._clock(), str(name))
        return str(name)

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        return {user_id: await self.name(user_id) for user_id in dict.fromkeys(user_ids)}
