"""One-at-a-time, first-come-first-served execution per conversation thread (in one process).

``asyncio.Lock`` wakes waiters in the order they called ``acquire()``, and an uncontended
``acquire()`` returns without yielding, so callers that take the lock as their first await run
in arrival order. Locks are dropped once nobody holds or waits for them, so memory stays flat
however many threads the bot has ever seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

__all__ = ["KeyedLocks"]


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
