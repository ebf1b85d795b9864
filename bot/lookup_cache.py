"""Cached lookups whose concurrent misses share one call.

Expiry and the size bound are ``cachetools.TTLCache`` (least recently used goes first when
full). The sharing is ours: cachetools is synchronous (its ``cached`` takes thread locks, and
a coroutine cached by it would store the coroutine object, not its result), so concurrent
misses of one key are joined here on an ``asyncio`` future: one call to Slack or the model
endpoint, every waiter gets its answer, its error, or its cancellation (or, with
``abandoned``, an error of the caller's choosing when the task making the call is cancelled:
a waiter that was not cancelled itself then goes on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

__all__ = ["SharedLookups"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _always(_: object) -> bool:
    return True


class SharedLookups(Generic[K, V]):
    def __init__(
        self,
        *,
        ttl: float,
        maxsize: int,
        timer: Callable[[], float] = time.monotonic,
        abandoned: Callable[[], Exception] | None = None,
    ) -> None:
        self._cache: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=ttl, timer=timer)
        self._in_flight: dict[K, asyncio.Future[V]] = {}
        self._abandoned = abandoned

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a cached value that has not expired."""
        return key in self._cache

    async def get(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        *,
        keep: Callable[[V], bool] = _always,
    ) -> V:
        """The cached value of ``key``, else ``await load()`` (shared with every concurrent
        caller for ``key``); the result is cached when ``keep(result)``."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            # The waiters must not hang: they are cancelled too, or get ``abandoned()``.
            if self._abandoned is None:
                future.cancel()
            else:
                future.set_exception(self._abandoned())
                future.exception()  # retrieved here: no waiter is not an error
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters get it too, none is not an error
            raise
        else:
            future.set_result(value)
        finally:
            del self._in_flight[key]
        if keep(value):
            self._cache[key] = value
        return value
