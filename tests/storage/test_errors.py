"""Database failures leave storage as one error, StorageError, with a code callers branch on and
the driver's own words (never the statement or its parameters)."""

from __future__ import annotations

import errno
import socket
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from storage import StorageError, Store, create_engine, create_session_factory
from storage.failures import storage_error
from storage.intake import Intake
from storage.models import EventClaim, utcnow
from storage.records import Acceptance
from storage.thread_locks import DistributedThreadLocks, ThreadLockTimeout
from tests.databases import Databases, postgres_only, sqlite_only

SECRET = "the words someone wrote in Slack"
KEYS = {"team_id": "T1", "channel_id": "C1"}


def _read_only_engine(url: str) -> AsyncEngine:
    """An engine whose connections refuse every write, as a read-only database does."""
    if url.startswith("postgresql"):
        return create_async_engine(
            url, connect_args={"server_settings": {"default_transaction_read_only": "on"}}
        )
    engine = create_engine(url)

    def query_only(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    event.listen(engine.sync_engine, "connect", query_only)
    return engine


async def test_a_write_to_a_read_only_database_raises_storage_error_read_only(
    databases: Databases,
) -> None:
    engine = _read_only_engine(databases.url)
    try:
        store = Store(create_session_factory(engine))
        with pytest.raises(StorageError) as raised:
            await store.update_channel_settings(
                **KEYS, values={"instructions": SECRET}, updated_by="U1"
            )
        # Reads still work: only writes are refused.
        assert await store.get_channel_settings(**KEYS) is None
    finally:
        await engine.dispose()
    error = raised.value
    assert error.code == "read_only"
    assert isinstance(error.__cause__, SQLAlchemyError)  # the original, for the traceback
    assert "read" in str(error).lower()  # SQLite: "readonly database"; PostgreSQL: "read-only"
    # The driver's words only: SQLAlchemy's own text adds "[SQL: …]" and the parameters.
    assert SECRET not in str(error)
    assert "[SQL" not in str(error)
    assert len(str(error)) <= 200


async def test_a_key_claimed_twice_is_an_integrity_failure_that_claims_turn_into_false(
    databases: Databases,
) -> None:
    store = databases.store()
    intake = Intake(store)
    message = {
        **KEYS,
        "thread_ts": "1.0",
        "ts": "1.0",
        "user_id": "U1",
        "event_id": "Ev1",
        "payload": {},
        "owner": "me",
        "needs_thread": False,
    }
    assert await store.claim_event(keys=["event:Ev1"]) is True
    assert await store.claim_event(keys=["event:Ev1"]) is False
    duplicate = await intake.accept(**message, claim_keys=["event:Ev1"])
    assert duplicate.status is Acceptance.DUPLICATE
    # The same failure in any unit of work: the one error, with the integrity code.
    with pytest.raises(StorageError) as raised:
        async with store.writing() as session:
            await session.execute(insert(EventClaim).values(key="event:Ev1", claimed_at=utcnow()))
    assert raised.value.code == "integrity"
    assert isinstance(raised.value.__cause__, IntegrityError)


async def _ping_failure(url: str) -> StorageError:
    engine = create_engine(url)
    try:
        with pytest.raises(StorageError) as raised:
            await Store(create_session_factory(engine)).ping()
    finally:
        await engine.dispose()
    return raised.value


async def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    # The path names a directory: SQLite cannot open it as a database file.
    error = await _ping_failure(f"sqlite+aiosqlite:///{tmp_path}")
    assert error.code == "unavailable"
    assert "unable to open database file" in str(error)


async def test_a_database_server_that_refuses_connections_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await _ping_failure(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing")
    assert error.code == "unavailable"
    assert isinstance(error.__cause__, OSError)  # refused before SQLAlchemy wraps anything


@sqlite_only
async def test_a_writer_past_the_busy_timeout_is_locked(
    databases: Databases, tmp_path: Path
) -> None:
    engine = databases.engine()

    def short_wait(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=50")  # after the engine's own pragmas
        cursor.close()

    event.listen(engine.sync_engine, "connect", short_wait)
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction
        with pytest.raises(StorageError) as raised:
            await databases.store(engine).claim_event(keys=["event:Ev1"])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert raised.value.code == "locked"
    assert "locked" in str(raised.value)


@pytest.mark.parametrize(
    ("number", "code"),
    [(errno.EROFS, "read_only"), (errno.ENOSPC, "full"), (errno.ECONNREFUSED, "unavailable")],
)
def test_operating_system_failures_map_by_errno(number: int, code: str) -> None:
    error = storage_error(OSError(number, "as the system says"))
    assert (error.code, str(error)) == (code, f"[Errno {number}] as the system says")


# Distributed thread locks exist on PostgreSQL only (SQLite is one process).
@postgres_only
async def test_a_thread_held_past_the_wait_is_a_locked_storage_error(
    databases: Databases,
) -> None:
    holder = DistributedThreadLocks(databases.url, wait_seconds=5)
    waiter = DistributedThreadLocks(databases.url, wait_seconds=0.2)
    thread = {**KEYS, "thread_ts": "1.0"}
    try:
        async with holder.hold(**thread):
            with pytest.raises(ThreadLockTimeout) as raised:
                async with waiter.hold(**thread):
                    pytest.fail("the lock was taken twice")
            assert await waiter.is_free(**thread) is False
    finally:
        await holder.aclose()
        await waiter.aclose()
    assert isinstance(raised.value, StorageError)
    assert raised.value.code == "locked"


@postgres_only
async def test_what_the_held_block_raises_passes_through_the_thread_lock_unchanged(
    databases: Databases,
) -> None:
    locks = DistributedThreadLocks(databases.url)
    own = ConnectionResetError("the Slack connection dropped")  # an OSError, not the lock's
    try:
        with pytest.raises(ConnectionResetError) as raised:
            async with locks.hold(**KEYS, thread_ts="1.0"):
                raise own
        assert await locks.is_free(**KEYS, thread_ts="1.0") is True
    finally:
        await locks.aclose()
    assert raised.value is own
