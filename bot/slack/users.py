"""People's Slack profiles (``users.info``), per workspace: cached, and coalesced so that one
person asked about by many messages at once costs one call.

Display names and admin checks both read through here. ``users.info`` is Tier 4 (~100 calls
a minute per workspace), so lookups are bounded three ways: answers are cached for ``ttl``
(failures for a short while too), concurrent lookups of one person share one call, and a
message or a turn looks up at most a fixed number of people it has not seen (``Allowance``);
the others are shown by id. A display-name lookup waits at most ``name_wait`` seconds for its
slot in the rate budget: a name is a courtesy, the answer should not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import DeliveryError, SlackRateLimitedError, SlackRefusedError
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

    def __init__(self, reason: str, *, lasting: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lasting = lasting
        """Slack's own answer (remembered a while), not a passing failure."""


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspaces = workspaces
        self._ttl = ttl
        self._name_wait = name_wait
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Mapping[str, Any] | None, str]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Mapping[str, Any]]] = {}

    def cached(self, user_id: str, *, team_id: str) -> bool:
        return self._fresh((team_id, user_id)) is not None

    async def info(
        self, user_id: str, *, team_id: str, wait: float | None = None
    ) -> Mapping[str, Any]:
        """``user_id``'s ``users.info`` user object, asked with ``team_id``'s bot token;
        ``UserLookupFailed`` when Slack would not say."""
        key = (team_id, user_id)
        fresh = self._fresh(key)
        if fresh is not None:
            user, reason = fresh
            if user is None:
                raise UserLookupFailed(reason)
            return user
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            user = await self._ask(user_id, team_id, wait)
        except UserLookupFailed as failed:
            if failed.lasting:
                self._cache[key] = (self._clock(), None, failed.reason)
            future.set_exception(failed)
            future.exception()  # retrieved: waiters re-raise their own copy
            raise
        except BaseException as exc:
            future.set_exception(UserLookupFailed(type(exc).__name__))
            future.exception()
            raise
        else:
            self._cache[key] = (self._clock(), user, "")
            future.set_result(user)
            return user
        finally:
            self._inflight.pop(key, None)

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

    def _fresh(self, key: tuple[str, str]) -> tuple[Mapping[str, Any] | None, str] | None:
        cached = self._cache.get(key)
        if cached is None:
            return None
        at, user, reason = cached
        ttl = self._ttl if user is not None else min(self._ttl, FAILURE_TTL)
        if self._clock() - at >= ttl:
            del self._cache[key]
            return None
        return user, reason

    async def _ask(self, user_id: str, team_id: str, wait: float | None) -> Mapping[str, Any]:
        try:
            client = await self._workspaces.client(team_id)
            with slack_priority(Priority.NORMAL, wait=wait), slack_failures("users.info"):
                response = await client.users_info(user=user_id)
        except SlackRateLimitedError as exc:
            raise UserLookupFailed(exc.code) from exc
        except SlackRefusedError as exc:
            raise UserLookupFailed(exc.code, lasting=True) from exc
        except DeliveryError as exc:
            raise UserLookupFailed(exc.code) from exc
        user = response.get("user")
        if not isinstance(user, dict):
            raise UserLookupFailed("no_user")
        return user
