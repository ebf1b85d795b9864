"""Which service processes (replicas) are alive, so one never takes over another's work.

Each process has a random id and, on PostgreSQL, holds a session-level advisory lock named
after it on a connection of its own for as long as it runs. The lock vanishes with the
process (or its connection), so "is the lock free?" answers "is that process gone?" at once,
with no heartbeat to wait out. ``storage.intake`` adopts accepted messages only from owners
that are gone.

If the presence connection itself is lost (the database restarted), a replica starting in that
window may take this one's waiting messages; each message still gets one turn at most (the
turn is recorded only by the transaction that deletes the waiting message).

SQLite is one process by design (see ``storage.thread_locks``): every other id belongs to an
earlier run of this process, so every other id is gone.

Database failures leave every method as :class:`~storage.errors.StorageError`.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage import advisory
from storage.failures import translated

__all__ = ["ReplicaPresence"]


def _key(replica_id: str) -> str:
    return f"replica:{replica_id}"


class ReplicaPresence:
    def __init__(self, url: str, *, replica_id: str) -> None:
        self.replica_id = replica_id
        self._engine: AsyncEngine | None = None
        self._held: AsyncConnection | None = None
        if make_url(url).get_backend_name() == "postgresql":
            # NullPool: the presence connection is held for the process's life, and the
            # short liveness probes must not sit in a pool.
            self._engine = create_async_engine(url, poolclass=NullPool)

    async def announce(self) -> None:
        """Hold this process's presence lock until ``aclose``."""
        if self._engine is None or self._held is not None:
            return
        with translated():
            self._held = await self._engine.connect()
            await self._held.execute(advisory.HOLD_FOR_SESSION, {"key": _key(self.replica_id)})
            await self._held.commit()

    async def is_alive(self, replica_id: str) -> bool:
        """Whether the process ``replica_id`` still runs."""
        if replica_id == self.replica_id:
            return True
        if self._engine is None:
            return False
        # A free lock means nobody holds it: that process is gone.
        return not await advisory.is_free(self._engine, _key(replica_id))

    async def aclose(self) -> None:
        with translated():
            if self._held is not None:
                await self._held.close()
                self._held = None
            if self._engine is not None:
                await self._engine.dispose()
