"""Slack's rate limits as a schedule: one budget per workspace and method, shared by every
answer in flight, so a call waits for its slot instead of being fired and refused.

Slack counts calls per method, per workspace, per app (``chat.postMessage`` per channel), and
answers HTTP 429 with ``Retry-After`` past a budget. Each budget here is a token bucket sized
so that no 60-second window ever holds more calls than the method's documented tier allows,
whether Slack counts in fixed or sliding minutes: a burst of a quarter of the tier at once,
then the rest of the minute's calls spread evenly (one call of margin). ``chat.postMessage``
gets one per second per channel after a short burst.

Waiting calls are served by priority (``Priority``), first come first served within one, so
an answer's first visible text and its final text overtake intermediate updates; updates also
leave a small reserve untouched, so under load they thin out first (each message gets its
fair share of what is left, down to none) while first and final texts keep flowing.

A 429 (another replica, another app's traffic, a budget smaller than documented) pauses that
budget for ``Retry-After``, and the call waits its turn again until its deadline.

With several replicas each takes ``share`` of every budget (1 / replicas): see README.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bot.slack.failures import retry_after

__all__ = [
    "DEADLINES",
    "SLACK_RATES",
    "Priority",
    "Rate",
    "RateBudget",
    "RateBudgets",
]

T = TypeVar("T")


class Priority(enum.IntEnum):
    """Who goes first when calls of one method wait for the same budget (lower first)."""

    FIRST = 0
    """The first visible text of an answer."""
    FINAL = 1
    """The final text of an answer, and notes that close a turn."""
    NORMAL = 2
    """Anything else someone is waiting for: thread history, lookups, settings, status."""
    UPDATE = 3
    """An intermediate update of a growing answer: coalesced, and thinned out under load."""


DEADLINES: dict[Priority, float] = {
    Priority.FIRST: 600.0,
    Priority.FINAL: 600.0,
    Priority.NORMAL: 60.0,
    Priority.UPDATE: 60.0,
}
"""How long a call may wait for its slot, 429s included, before it gives up (seconds). An
answer's texts get a generous 10 minutes: they are retried as long as that takes."""


@dataclass(frozen=True)
class Rate:
    per_minute: float
    """Calls per minute at the steady pace (after the burst)."""
    burst: int
    """Calls that may go at once from a full bucket."""
    per_channel: bool = False
    """Counted per channel (``chat.postMessage``), not per workspace."""

    @classmethod
    def tier(cls, per_minute: int) -> Rate:
        # burst + steady calls in any 60 s window stay one below the tier's limit.
        burst = max(1, per_minute // 4)
        return cls(per_minute=per_minute - 1 - burst, burst=burst)


_TIER_2, _TIER_3, _TIER_4 = Rate.tier(20), Rate.tier(50), Rate.tier(100)
SLACK_RATES: dict[str, Rate] = {
    "chat.startStream": _TIER_2,
    "chat.stopStream": _TIER_2,
    "users.list": _TIER_2,
    "chat.update": _TIER_3,
    "chat.delete": _TIER_3,
    "conversations.replies": _TIER_3,
    "conversations.history": _TIER_3,
    "reactions.add": _TIER_3,
    "reactions.remove": _TIER_3,
    # Slack says "special"; treated as Tier 3 (assumed).
    "assistant.threads.setStatus": _TIER_3,
    "chat.appendStream": _TIER_4,
    "users.info": _TIER_4,
    "chat.postEphemeral": _TIER_4,
    "views.open": _TIER_4,
    "views.publish": _TIER_4,
    "views.update": _TIER_4,
    # About one message per second per channel, short bursts allowed.
    "chat.postMessage": Rate(per_minute=60, burst=4, per_channel=True),
}
"""Budgets by Slack method (from the method reference pages and the rate-limits page).
Methods not listed are not scheduled (a 429 on them is still waited out)."""


WaitObserver = Callable[[str, Priority, float], None]
"""Called with (method, priority, seconds waited) for every slot granted."""


class _Bucket:
    def __init__(self, rate: Rate, share: float, loop_time: Callable[[], float]) -> None:
        self.capacity = max(1.0, math.floor(rate.burst * share))
        self.per_second = max(rate.per_minute * share, 0.5) / 60.0
        # Updates leave this many tokens for first and final texts.
        self.reserve = math.floor(self.capacity / 4)
        self.tokens = self.capacity
        self._time = loop_time
        self.updated = loop_time()
        self.paused_until = 0.0
        self.waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None

    def level(self) -> float:
        now = self._time()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        return 0.0 if now < self.paused_until else self.tokens

    def _need(self, priority: int) -> float:
        return 1.0 + (self.reserve if priority >= Priority.UPDATE else 0)

    def try_take(self, priority: int) -> bool:
        if any(not w[2].done() for w in self.waiters):
            return False  # others are queued: no overtaking
        if self.level() >= self._need(priority):
            self.tokens -= 1.0
            return True
        return False

    def dispatch(self) -> None:
        self._timer = None
        level = self.level()
        now = self._time()
        while self.waiters:
            priority, _, future = self.waiters[0]
            if future.done():
                heapq.heappop(self.waiters)
                continue
            if now < self.paused_until:
                self._arm(self.paused_until)
                return
            need = self._need(priority)
            if level < need:
                self._arm(now + (need - level) / self.per_second)
                return
            heapq.heappop(self.waiters)
            self.tokens -= 1.0
            level -= 1.0
            future.set_result(None)

    def pause(self, seconds: float) -> None:
        self.level()
        self.paused_until = max(self.paused_until, self._time() + seconds)
        self.tokens = 0.0  # Slack says we are over: start again from empty
        self.dispatch()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self.dispatch)


class RateBudget:
    """The budgets of one workspace (one bot token); see the module docstring."""

    def __init__(
        self,
        *,
        rates: dict[str, Rate] | None = None,
        share: float = 1.0,
        on_wait: WaitObserver | None = None,
    ) -> None:
        self._rates = SLACK_RATES if rates is None else rates
        self._share = share
        self._on_wait = on_wait
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._seq = itertools.count()
        self.open_streams = 0
        """Native streams started and not yet stopped (each will need a ``chat.stopStream``)."""

    def _bucket(self, method: str, channel: str | None) -> _Bucket | None:
        rate = self._rates.get(method)
        if rate is None:
            return None
        key = (method, (channel or "") if rate.per_channel else "")
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(rate, self._share, asyncio.get_running_loop().time)
            self._buckets[key] = bucket
        return bucket

    def level(self, method: str, channel: str | None = None) -> float:
        """Calls of ``method`` that could go right now (``inf`` when it is not scheduled)."""
        bucket = self._bucket(method, channel)
        return math.inf if bucket is None else bucket.level()

    async def acquire(
        self,
        method: str,
        *,
        channel: str | None = None,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
    ) -> None:
        """Wait for a slot of ``method`` (``deadline``: loop time; ``TimeoutError`` past it)."""
        bucket = self._bucket(method, channel)
        if bucket is None:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not bucket.try_take(priority):
            future: asyncio.Future[None] = loop.create_future()
            heapq.heappush(bucket.waiters, (int(priority), next(self._seq), future))
            bucket.dispatch()
            try:
                async with asyncio.timeout_at(deadline):
                    await future
            except BaseException:
                if future.done() and not future.cancelled():
                    bucket.tokens += 1.0  # granted as we gave up: give the slot back
                future.cancel()
                bucket.dispatch()
                raise
        if self._on_wait is not None:
            self._on_wait(method, priority, loop.time() - started)

    def try_acquire(self, method: str, *, channel: str | None = None) -> bool:
        """Take a slot of ``method`` only if one is free now and nobody is waiting."""
        bucket = self._bucket(method, channel)
        return bucket is None or bucket.try_take(Priority.FIRST)

    def pause(self, method: str, seconds: float, *, channel: str | None = None) -> None:
        """Slack answered 429: nobody calls ``method`` for ``seconds``."""
        bucket = self._bucket(method, channel)
        if bucket is not None:
            bucket.pause(seconds)

    def try_open_stream(self) -> bool:
        """Whether an answer may stream natively: ``chat.startStream`` has a slot now (taken),
        and ``chat.stopStream`` has one for every stream open, this one included, so no stream
        ever waits long to be stopped, and neither call is refused for rate."""
        if self.level("chat.stopStream") < self.open_streams + 1:
            return False
        if not self.try_acquire("chat.startStream"):
            return False
        self.open_streams += 1
        return True

    def stream_closed(self) -> None:
        self.open_streams = max(0, self.open_streams - 1)

    async def run(
        self,
        method: str,
        send: Callable[[], Awaitable[T]],
        *,
        channel: str | None = None,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
    ) -> T:
        """``send()`` once a slot of ``method`` is ours; on 429, pause the budget for
        ``Retry-After`` and wait for a slot again, until ``deadline`` (loop time; by default
        ``DEADLINES[priority]`` from now). ``send`` is called anew each time, so it can build
        its payload from the latest state."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + DEADLINES[priority]
        while True:
            await self.acquire(method, channel=channel, priority=priority, deadline=deadline)
            try:
                return await send()
            except Exception as exc:  # a 429 (ours or slack_sdk's: see bot.slack.failures)
                wait = retry_after(exc)
                if wait is None:
                    raise
                self.pause(method, wait, channel=channel)
                if loop.time() + wait > deadline:
                    raise


class RateBudgets:
    """One ``RateBudget`` per workspace, found by its bot token (a token is one app's
    installation in one workspace, which is what Slack counts)."""

    def __init__(self, *, share: float = 1.0, on_wait: WaitObserver | None = None) -> None:
        self._share = share
        self._on_wait = on_wait
        self._budgets: dict[str, RateBudget] = {}

    def for_token(self, token: str) -> RateBudget:
        # Keyed by a digest: the registry never holds the token itself.
        key = hashlib.sha256(token.encode()).hexdigest()
        budget = self._budgets.get(key)
        if budget is None:
            budget = RateBudget(share=self._share, on_wait=self._on_wait)
            self._budgets[key] = budget
        return budget
