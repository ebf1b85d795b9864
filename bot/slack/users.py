"""People's Slack profiles (``users.info``), per workspace: cached, and coalesced so that one
person asked about by many messages at once costs one call.

Display names, people's languages (``locale``, asked with ``include_locale=true``, and ``tz``)
and admin checks all read through here: one call per person serves the three.
``users.info`` is Tier 4 (~100 calls a minute per workspace), so lookups are bounded three
ways: answers are cached for ``ttl``
(Slack's refusals for a short while too), concurrent lookups of one person share one call
(``bot.lookup_cache``: cachetools' ``TTLCache``, at most ``max_cached`` people), and a message
or a turn looks up at most a fixed number of people it has not seen (``Allowance``); the
others are shown by id. A display-name lookup waits at most ``name_wait`` seconds for its slot
in the rate budget: a name is a courtesy, the answer should not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from bot.conversation.ports import PersonLocale
from bot.errors import DeliveryError, SlackRateLimitedError, SlackRefusedError
from bot.lookup_cache import SharedLookups
from bot.slack.budget import Priority
from bot.slack.client import slack_priority
from bot.slack.failures import slack_failures
from bot.slack.workspaces import WorkspaceClients

__all__ = ["Allowance", "UserDirectory", "UserLookupFailed"]

logger = logging.getLogger(__name__)

FAILURE_TTL = 60.0
"""Seconds Slack's refusal (``user_not_found``…) is remembered, so a burst does not ask again
and again; passing failures (rate limit, network) are not remembered."""


class UserLookupFailed(Exception):
    """Slack did not say who this is (refused, rate-limited past the wait, not installed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Allowance:
    """How many people not yet cached one message (or turn) may still look up."""

    remaining: int

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


class UserDirectory:
    def __init__(
        self,
        workspaces: WorkspaceClients,
        *,
        ttl: float = 300.0,
        name_wait: float = 3.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspaces = workspaces
        self._name_wait = name_wait
        # Keyed by (team, user): one workspace's answer is never another's.
        self._found: SharedLookups[tuple[str, str], Mapping[str, Any]] = SharedLookups(
            ttl=ttl,
            maxsize=max_cached,
            timer=clock,
            # The turn that asked was cancelled (stopped, shut down): the others go on unnamed.
            abandoned=lambda: UserLookupFailed("cancelled"),
        )
        self._refused: TTLCache[tuple[str, str], str] = TTLCache(
            maxsize=max_cached, ttl=min(ttl, FAILURE_TTL), timer=clock
        )

    def cached(self, user_id: str, *, team_id: str) -> bool:
        key = (team_id, user_id)
        return key in self._found or key in self._refused

    async def info(
        self, user_id: str, *, team_id: str, wait: float | None = None
    ) -> Mapping[str, Any]:
        """``user_id``'s ``users.info`` user object, asked with ``team_id``'s bot token;
        ``UserLookupFailed`` when Slack would not say."""
        key = (team_id, user_id)
        refused = self._refused.get(key)
        if refused is not None:
            raise UserLookupFailed(refused)
        return await self._found.get(key, lambda: self._ask(key, wait))

    async def name(
        self, user_id: str, *, team_id: str, allowance: Allowance | None = None
    ) -> str | None:
        """``user_id``'s display name; ``None`` (show the id) when unknown, or when it is not
        cached and ``allowance`` is spent."""
        if (
            allowance is not None
            and not self.cached(user_id, team_id=team_id)
            and not allowance.take()
        ):
            return None
        try:
            user = await self.info(user_id, team_id=team_id, wait=self._name_wait)
        except UserLookupFailed as failed:
            # A name is a courtesy: without it the model reads the id.
            logger.info("users.info failed for a display name: %s", failed.reason)
            return None
        profile = user.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
        )
        return str(name) if name else None

    async def locale(self, *, team_id: str, user_id: str) -> PersonLocale:
        """``user_id``'s Slack locale and time zone (the core's ``LocaleSource``); unknown
        when Slack would not say, within the same wait as a display name."""
        try:
            user = await self.info(user_id, team_id=team_id, wait=self._name_wait)
        except UserLookupFailed as failed:
            logger.info("users.info failed for a locale: %s", failed.reason)
            return PersonLocale()
        locale, zone = user.get("locale"), user.get("tz")
        return PersonLocale(
            locale=locale if isinstance(locale, str) and locale else None,
            timezone=zone if isinstance(zone, str) and zone else None,
        )

    async def names(
        self, user_ids: Iterable[str], *, team_id: str, allowance: Allowance | None = None
    ) -> dict[str, str]:
        """Display names by id, looked up together (each person once); ids without a name
        are left out."""
        wanted = list(dict.fromkeys(user_ids))
        found = await asyncio.gather(
            *(self.name(u, team_id=team_id, allowance=allowance) for u in wanted)
        )
        return {u: n for u, n in zip(wanted, found, strict=True) if n}

    async def _ask(self, key: tuple[str, str], wait: float | None) -> Mapping[str, Any]:
        team_id, user_id = key
        try:
            client = await self._workspaces.client(team_id)
            with slack_priority(Priority.NORMAL, wait=wait), slack_failures("users.info"):
                # With the locale: the person's language comes from this same cached answer.
                response = await client.users_info(user=user_id, include_locale=True)
        except SlackRateLimitedError as exc:
            raise UserLookupFailed(exc.code) from exc
        except SlackRefusedError as exc:
            self._refused[key] = exc.code  # Slack's own answer: remembered a while
            raise UserLookupFailed(exc.code) from exc
        except DeliveryError as exc:
            raise UserLookupFailed(exc.code) from exc
        user = response.get("user")
        if not isinstance(user, dict):
            raise UserLookupFailed("no_user")
        return user
