"""Test databases: the helpers behind the database fixtures (``tests/conftest.py``:
``database_url``, ``postgres_url``; ``tests/storage/conftest.py``: ``databases``, ``store``).

Every test gets a database of its own: a SQLite file under pytest's ``tmp_path``, or a
PostgreSQL database ``t_<random>`` created on the server named by ``TEST_DATABASE_URL``
(default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) and dropped afterwards.
PostgreSQL variants are skipped, with the reason, when that server cannot be reached.

A test that needs one engine only narrows the ``databases`` fixture with :data:`sqlite_only`
or :data:`postgres_only`.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage import Store, create_engine, create_session_factory, upgrade_to_head

__all__ = [
    "BACKENDS",
    "Databases",
    "postgres_admin_url",
    "postgres_only",
    "sqlite_only",
    "temporary_database",
]

DEFAULT_TEST_DATABASE_URL: Final = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

BACKENDS: Final = ("sqlite", "postgresql")
"""Parameters for fixtures that run a test on both engines."""

sqlite_only: Final = pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
"""Run a test that takes the ``databases`` fixture on SQLite only."""

postgres_only: Final = pytest.mark.parametrize("databases", ["postgresql"], indirect=True)
"""Run a test that takes the ``databases`` fixture on PostgreSQL only (several processes)."""


def postgres_admin_url() -> URL:
    """The server to create test databases on; skips the test if it is unreachable."""
    url = make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))
    reason = _postgres_unreachable(url.host or "127.0.0.1", url.port or 5432)
    if reason is not None:
        shown = url.render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL not reachable at {shown} ({reason}); set TEST_DATABASE_URL")
    return url


@functools.cache
def _postgres_unreachable(host: str, port: int) -> str | None:
    # A TCP probe, cached per run, keeps the skip instant for every PostgreSQL variant.
    # Anything past the socket (auth, permissions) is left to fail loudly in the test.
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


@asynccontextmanager
async def temporary_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """Yield the URL of a new, empty database on ``backend``; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
        return
    assert backend == "postgresql", backend
    admin_url = postgres_admin_url()
    name = f"t_{secrets.token_hex(6)}"
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                # FORCE: a test that failed half-way may have left connections open.
                await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


class Databases:
    """Engines and stores opened on one test database, all disposed of at the end.

    Several engines on one database stand for several processes (each has its own pool).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engines: list[AsyncEngine] = []

    def engine(self) -> AsyncEngine:
        """A new engine, as the service would create it."""
        engine = create_engine(self.url)
        self._engines.append(engine)
        return engine

    def store(self, engine: AsyncEngine | None = None) -> Store:
        """A Store on ``engine`` (default: on a new engine of its own)."""
        return Store(create_session_factory(engine or self.engine()))

    async def aclose(self) -> None:
        for engine in self._engines:
            await engine.dispose()

    @classmethod
    @asynccontextmanager
    async def migrated(cls, backend: str, tmp_path: Path) -> AsyncIterator[Databases]:
        """A new database on ``backend``, upgraded to head."""
        async with temporary_database(backend, tmp_path) as url:
            await upgrade_to_head(url)
            databases = cls(url)
            try:
                yield databases
            finally:
                await databases.aclose()
