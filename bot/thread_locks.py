"""One-at-a-time, first-come-first-served execution per conversation thread (in one process).

``asyncio.Lock`` wakes waiters in the order they called ``acquire()``, and an uncontended
``acquire()`` returns without yielding, so callers that take the lock as their first await run
in arrival order. Locks are dropped once nobody holds or waits for them, so memory stays flat
however many threads the bot has ever seen.

``on_wait``, when given, is called with the seconds each ``hold`` waited for its lock (0 when
it was free), e.g. to feed a histogram; it must not raise or block.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager

__all__ = ["KeyedLocks"]


class KeyedLocks:
    def __init__(self, *, on_wait: Callable[[float], None] | None = None) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        self._on_wait = on_wait

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            started = time.monotonic()
            async with lock:
                if self._on_wait is not None:
                    self._on_wait(time.monotonic() - started)
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)

    def __bool__(self) -> bool:
        # An object, not a container: ``locks or KeyedLocks()`` must keep an idle instance
        # (with ``__len__`` alone it would be falsy whenever no lock is held).
        return True
