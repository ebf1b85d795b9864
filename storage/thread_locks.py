"""Turns of one thread, one at a time, across processes.

On PostgreSQL a turn holds a transaction-scoped advisory lock keyed by its thread
(``pg_advisory_xact_lock``) from before it reads the chain head until after it advanced it, on a
connection of its own pool: the lock lives exactly as long as that transaction, and a crashed
replica's locks vanish with its connections. Waits are bounded by ``lock_timeout``. The pool is
separate from the store's, so turns waiting for a lock can never starve the short store
transactions of the turn that holds it. Each held lock keeps one connection for the turn's
length: ``pool_size`` (20) bounds the turns in progress per replica, and with the store's pool
(10 + 10 overflow) one replica uses at most 40 of the server's connections — size
``max_connections`` (default 100) for the number of replicas.

SQLite is one process by design (an embedded file): the in-process FIFO lock
(``bot.thread_locks``) already serialises its turns, so here the lock is a no-op.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# ThreadLockTimeout is defined with the other storage errors; kept importable from here.
from storage import advisory
from storage.errors import ThreadLockTimeout
from storage.failures import FOREIGN_ERRORS, storage_error, translated

__all__ = ["DistributedThreadLocks", "ThreadLockTimeout"]


def _key(team_id: str, channel_id: str, thread_ts: str) -> str:
    return f"thread:{team_id}:{channel_id}:{thread_ts}"


class DistributedThreadLocks:
    def __init__(self, url: str, *, wait_seconds: float = 300.0, pool_size: int = 20) -> None:
        self._wait_ms = max(1, int(wait_seconds * 1000))
        self._engine: AsyncEngine | None = None
        if make_url(url).get_backend_name() == "postgresql":
            self._engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=wait_seconds,
                pool_pre_ping=True,
            )

    @property
    def distributed(self) -> bool:
        return self._engine is not None

    @asynccontextmanager
    async def hold(self, *, team_id: str, channel_id: str, thread_ts: str) -> AsyncIterator[None]:
        """Hold the thread for the block. A wait past ``wait_seconds`` (or any failure while
        taking the lock) raises :class:`ThreadLockTimeout`; other database failures (taking a
        connection, ending the transaction) :class:`~storage.errors.StorageError`. What the
        block itself raises passes unchanged."""
        if self._engine is None:
            yield
            return
        raised_inside: BaseException | None = None
        try:
            async with self._engine.connect() as connection, connection.begin():
                # SET LOCAL takes no bind parameters; the value is our own integer.
                await connection.execute(text(f"SET LOCAL lock_timeout = {self._wait_ms}"))
                try:
                    await connection.execute(
                        advisory.HOLD_FOR_TRANSACTION, {"key": _key(team_id, channel_id, thread_ts)}
                    )
                except DBAPIError as exc:
                    raise ThreadLockTimeout(
                        f"thread {thread_ts} stayed locked", code=storage_error(exc).code
                    ) from exc
                try:
                    yield
                except BaseException as exc:
                    raised_inside = exc
                    raise
        except FOREIGN_ERRORS as exc:
            if exc is raised_inside:
                raise  # the turn's own failure, not the lock's
            raise storage_error(exc) from exc

    async def is_free(self, *, team_id: str, channel_id: str, thread_ts: str) -> bool:
        """Whether no live process holds the thread (always true without PostgreSQL)."""
        if self._engine is None:
            return True
        return await advisory.is_free(self._engine, _key(team_id, channel_id, thread_ts))

    async def aclose(self) -> None:
        if self._engine is not None:
            with translated():
                await self._engine.dispose()
