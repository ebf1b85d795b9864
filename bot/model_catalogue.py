"""The models people may pick: the endpoint's ``GET /models`` (cached) and ``ALLOWED_MODELS``.

With an allow-list the choice is that list (intersected with the endpoint's list when it has
one); without one, whatever the endpoint lists. ``None`` means "no list": the settings modal
then offers free text. The list is cached for ``ttl`` seconds, and forms opened at the same
time share one request (``bot.lookup_cache``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from bot.errors import ModelError
from bot.lookup_cache import SharedLookups

__all__ = ["ModelCatalogue"]

logger = logging.getLogger(__name__)


class ModelCatalogue:
    def __init__(
        self,
        *,
        list_models: Callable[[], Awaitable[list[str]]],
        allowed: Iterable[str] = (),
        ttl: float = 600.0,
        timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_models = list_models
        self._allowed = tuple(dict.fromkeys(m for m in allowed if m))
        self._timeout = timeout
        self._lookups: SharedLookups[str, list[str] | None] = SharedLookups(
            ttl=ttl, maxsize=1, timer=clock
        )

    @property
    def allowed(self) -> tuple[str, ...]:
        return self._allowed

    def permits(self, model: str) -> bool:
        return not self._allowed or model in self._allowed

    async def choices(self) -> list[str] | None:
        listed = await self._lookups.get("models", self._fetch)
        if self._allowed:
            if listed is None:
                return list(self._allowed)
            return [m for m in self._allowed if m in set(listed)] or list(self._allowed)
        return listed

    async def _fetch(self) -> list[str] | None:
        try:
            # Bounded: the modal must open within Slack's 3-second trigger window.
            async with asyncio.timeout(self._timeout):
                models = await self._list_models()
        except (ModelError, TimeoutError) as exc:
            logger.info("the endpoint has no model list (%s)", type(exc).__name__)
            return None
        return sorted(set(models)) or None
