"""Engines and sessions: every database-specific quirk lives in this module.

The rest of ``storage`` is written against plain SQLAlchemy and behaves the same on SQLite
(aiosqlite) and PostgreSQL (asyncpg) because the differences are settled here:

* SQLite: the parent directory of the file is created, every connection gets the pragmas the
  service relies on (WAL, busy timeout, foreign keys, synchronous=NORMAL), and SQLAlchemy
  rather than the ``sqlite3`` module emits ``BEGIN`` so that transactions really are
  transactions (see :func:`_on_sqlite_begin`).
* PostgreSQL: a bounded pool that checks connections before handing them out.

Read-only units of work pass :data:`READ_ONLY` as execution options so SQLite can start them
with a plain (deferred) ``BEGIN``; the option means nothing to other databases.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, StaticPool

from storage.failures import translated

__all__ = [
    "READ_ONLY",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "create_migration_engine",
    "create_session_factory",
    "is_memory_url",
]

SQLITE_BUSY_TIMEOUT_MS: Final = 5000
"""How long a SQLite connection waits for another writer's lock before giving up."""

_READ_ONLY_OPTION: Final = "storage_read_only"

READ_ONLY: Final[Mapping[str, Any]] = MappingProxyType({_READ_ONLY_OPTION: True})
"""Execution options for a unit of work that never writes.

Pass them to ``AsyncSession.connection(execution_options=READ_ONLY)`` before the first
statement. On SQLite the transaction then begins DEFERRED, so reads never queue behind a
writer (WAL lets readers and one writer run side by side).
"""

_POSTGRES_POOL: Final[Mapping[str, Any]] = MappingProxyType(
    {
        # Connections die behind load balancers and on server restarts; a cheap ping on
        # checkout turns that into a reconnect instead of a failed turn.
        "pool_pre_ping": True,
        "pool_size": 10,
        "max_overflow": 10,
        # Recycle before typical idle-connection timeouts of managed PostgreSQL services.
        "pool_recycle": 1800,
    }
)


def create_engine(url: str | URL, *, echo: bool = False) -> AsyncEngine:
    """Create the service's engine for ``url`` (``sqlite+aiosqlite`` or ``postgresql+asyncpg``).

    In-memory SQLite (``sqlite+aiosqlite://`` or ``…/:memory:``) uses one shared connection
    (StaticPool), so every session sees the same database; it suits quick single-task tests.
    """
    return _create(make_url(url), echo=echo, for_migrations=False)


def create_migration_engine(url: str | URL, *, echo: bool = False) -> AsyncEngine:
    """Create an engine for running Alembic migrations against ``url``.

    It differs from :func:`create_engine` in two ways: no pool (NullPool; a migration is a
    one-off and must not leave connections behind), and on SQLite foreign keys are OFF.
    Alembic's batch mode changes a SQLite table by copying it and dropping the original, and
    with foreign keys ON that ``DROP TABLE`` runs an implicit ``DELETE`` which fires
    ``ON DELETE CASCADE``: rebuilding ``threads`` would silently delete every turn.
    """
    return _create(make_url(url), echo=echo, for_migrations=True)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory the repositories use.

    ``expire_on_commit=False`` because records are read after the transaction ends, and an
    expired attribute would need lazy IO that async sessions cannot do implicitly.
    """
    return async_sessionmaker(engine, expire_on_commit=False)


def is_memory_url(url: str | URL) -> bool:
    """Whether ``url`` names a private in-memory SQLite database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or parsed.query.get("mode") == "memory"


def _create(url: URL, *, echo: bool, for_migrations: bool) -> AsyncEngine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _create_sqlite(url, echo=echo, for_migrations=for_migrations)
    if backend == "postgresql":
        if for_migrations:
            return create_async_engine(url, echo=echo, poolclass=NullPool)
        return create_async_engine(url, echo=echo, **_POSTGRES_POOL)
    # Anything else gets SQLAlchemy's defaults; only SQLite and PostgreSQL are tested.
    return create_async_engine(
        url, echo=echo, **({"poolclass": NullPool} if for_migrations else {})
    )


def _create_sqlite(url: URL, *, echo: bool, for_migrations: bool) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if is_memory_url(url):
        # A private in-memory database lives and dies with its connection: a pool of one
        # shared connection is the only way several sessions can see the same data.
        kwargs["poolclass"] = StaticPool
    else:
        _ensure_parent_directory(url)
        if for_migrations:
            kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, echo=echo, **kwargs)
    _install_sqlite_hooks(engine, foreign_keys=not for_migrations)
    return engine


def _ensure_parent_directory(url: URL) -> None:
    # SQLite creates the file but not its directory; a fresh checkout with DATABASE_URL
    # pointing at data/bot.db would otherwise fail with "unable to open database file".
    # SQLite URI filenames (uri=true) are left alone: their path syntax is SQLite's.
    database = url.database
    if not database or url.query.get("uri") in ("true", "1"):
        return
    with translated():  # a read-only or full file system: StorageError, like a failed connect
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_hooks(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Python's sqlite3 (on 3.11 there is no ``autocommit`` attribute yet) runs in "legacy
        # transaction control": it BEGINs only before INSERT/UPDATE/DELETE, so SELECTs and
        # DDL run outside any transaction and SAVEPOINT does not nest. Switch that off and
        # let SQLAlchemy's "begin" event emit BEGIN itself (the recipe from SQLAlchemy's
        # SQLite dialect docs). COMMIT and ROLLBACK still go through the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so the WAL switch below also waits for a lock held by
            # another process instead of failing at once.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # WAL: readers never block the writer and the writer never blocks readers.
            # The setting is stored in the file; repeating it per connection is a no-op.
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL is still corruption-safe; only the last commits before a
            # power loss can be lost, which is acceptable for this data and much faster.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Foreign keys are off by default in SQLite and must be enabled per connection
            # (outside a transaction), or ON DELETE CASCADE and FK checks silently do nothing.
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", _on_sqlite_begin)


def _on_sqlite_begin(connection: Connection) -> None:
    # Writes start with BEGIN IMMEDIATE, which takes the write lock up front. With a plain
    # (deferred) BEGIN, a transaction that first reads and then writes must upgrade its lock
    # mid-way; in WAL mode, if another connection committed in between, SQLite fails that
    # upgrade at once with "database is locked" (SQLITE_BUSY_SNAPSHOT) without consulting
    # busy_timeout, since waiting cannot help a stale snapshot. Taking the lock at BEGIN
    # means concurrent writers (other tasks, other processes) simply queue on busy_timeout.
    # Read-only work asks for a deferred BEGIN so it never waits for a writer.
    if connection.get_execution_options().get(_READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
