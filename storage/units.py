"""Units of work: the short transactions every repository in ``storage`` runs in, and the
session boundary where database failures become :class:`~storage.errors.StorageError`.

One :class:`UnitsOfWork` per database (the :class:`~storage.repositories.Store` builds it and
hands it to each repository), so every writer of the process queues in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.engine import READ_ONLY
from storage.failures import translated

__all__ = ["UnitsOfWork"]


class UnitsOfWork:
    """Sessions for one short transaction each: :meth:`writing` and :meth:`reading`."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        bind = session_factory.kw.get("bind")
        # SQLite has one writer at a time. Within this process, writers queue on an asyncio
        # lock (first come, first served) instead of on SQLite's busy handler, which sleeps
        # and retries and, with hundreds of concurrent turns, can starve one past its busy
        # timeout ("database is locked"). Other processes (the CLI) still meet busy_timeout.
        self._write_lock: asyncio.Lock | None = (
            asyncio.Lock() if bind is not None and bind.dialect.name == "sqlite" else None
        )

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        """The factory the units were built with (for tests and one-off maintenance)."""
        return self._session_factory

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction that commits on success and rolls back on error;
        it queues with this process's other writers. Database failures, in the block or at
        the commit, leave it as :class:`~storage.errors.StorageError`."""
        with translated():
            if self._write_lock is None:
                async with self._session_factory() as session, session.begin():
                    yield session
                return
            async with self._write_lock, self._session_factory() as session, session.begin():
                yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only (SQLite starts it DEFERRED, so it never waits on writers).
        Database failures leave it as :class:`~storage.errors.StorageError`."""
        with translated():
            async with self._session_factory() as session:
                await session.connection(execution_options=READ_ONLY)
                yield session
