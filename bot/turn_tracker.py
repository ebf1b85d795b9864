"""Counts turns in flight so shutdown can wait for them, and cancel what outlasts the grace
period (each cancelled turn closes itself with a note; see ``ConversationService``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["TurnTracker"]


class TurnTracker:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    @asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        try:
            yield
        finally:
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float) -> bool:
        """True when every turn finished within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def cancel_all(self, timeout: float = 10.0) -> None:
        """Cancel the turns still running and give them ``timeout`` s to close themselves."""
        for task in list(self._tasks):
            task.cancel()
        await self.wait_idle(timeout)
