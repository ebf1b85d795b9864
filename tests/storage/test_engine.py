"""SQLite quirks handled by storage.engine: pragmas, transaction begin, concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool, StaticPool

from storage import (
    Base,
    Store,
    TokenUsage,
    create_engine,
    create_migration_engine,
    create_session_factory,
)
from storage.models import Thread, Turn
from tests.databases import Databases, sqlite_only


async def _pragma(engine: AsyncEngine, name: str) -> object:
    async with engine.connect() as connection:
        return (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()


@sqlite_only
async def test_every_sqlite_connection_gets_the_service_pragmas(databases: Databases) -> None:
    engine = databases.engine()
    assert await _pragma(engine, "journal_mode") == "wal"
    assert await _pragma(engine, "foreign_keys") == 1
    assert await _pragma(engine, "busy_timeout") == 5000
    assert await _pragma(engine, "synchronous") == 1  # NORMAL


@sqlite_only
async def test_migration_engine_turns_foreign_keys_off_and_pools_nothing(
    databases: Databases,
) -> None:
    # With foreign keys on, Alembic's batch rebuild of `threads` would cascade-delete turns.
    engine = create_migration_engine(databases.url)
    try:
        assert isinstance(engine.pool, NullPool)
        assert await _pragma(engine, "foreign_keys") == 0
        assert await _pragma(engine, "busy_timeout") == 5000
    finally:
        await engine.dispose()


async def test_the_database_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "bot.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert path.exists()


@sqlite_only
async def test_foreign_keys_are_enforced_and_cascade(databases: Databases) -> None:
    store = databases.store()
    engine = databases.engine()
    start = await store.start_turn(
        team_id="T1",
        channel_id="C1",
        thread_ts="1.0",
        user_id="U1",
        user_ts="1.0",
        event_id=None,
        model="m",
    )
    async with engine.begin() as connection:
        with pytest.raises(IntegrityError):
            async with connection.begin_nested():
                await connection.execute(
                    insert(Turn).values(
                        thread_id=9999,
                        team_id="T1",
                        channel_id="C1",
                        user_id="U1",
                        user_ts="2.0",
                        model="m",
                    )
                )
        await connection.execute(delete(Thread))
        remaining = (await connection.execute(select(Turn.id))).all()
    assert remaining == []
    assert start.turn_id > 0


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
async def test_in_memory_sqlite_shares_one_database_between_sessions(url: str) -> None:
    engine = create_engine(url)
    try:
        assert isinstance(engine.pool, StaticPool)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        store = Store(create_session_factory(engine))
        start = await store.start_turn(
            team_id="T1",
            channel_id="C1",
            thread_ts="1.0",
            user_id="U1",
            user_ts="1.0",
            event_id="Ev1",
            model="m",
        )
        await store.complete_turn(
            turn_id=start.turn_id, response_id="resp_1", reply_ts="1.1", usage=TokenUsage()
        )
        thread = await store.find_thread(team_id="T1", channel_id="C1", thread_ts="1.0")
        assert thread is not None
        assert thread.head_response_id == "resp_1"
    finally:
        await engine.dispose()


@sqlite_only
async def test_a_writer_waits_for_another_writer_instead_of_failing(databases: Databases) -> None:
    holder, waiter = databases.engine(), databases.store()
    async with holder.connect() as connection:
        # Holds the write lock (BEGIN IMMEDIATE) until committed below.
        await connection.execute(
            insert(Thread).values(team_id="T1", channel_id="C1", thread_ts="1")
        )
        claim = asyncio.create_task(waiter.claim_event(keys=["event:Ev1"]))
        done, _ = await asyncio.wait({claim}, timeout=0.3)
        assert not done, "the second writer should be waiting on busy_timeout"
        await connection.commit()
    assert await claim is True


@sqlite_only
async def test_readers_do_not_wait_for_a_writer(databases: Databases) -> None:
    holder, reader = databases.engine(), databases.store()
    async with holder.connect() as connection:
        await connection.execute(
            insert(Thread).values(team_id="T1", channel_id="C1", thread_ts="1")
        )
        # Read-only methods begin DEFERRED; in WAL mode they read the last committed state.
        found = await asyncio.wait_for(
            reader.find_thread(team_id="T1", channel_id="C1", thread_ts="1"), timeout=2
        )
        assert found is None
        assert (
            await asyncio.wait_for(
                reader.list_turns(team_id="T1", channel_id="C1", thread_ts="1"), 2
            )
            == []
        )
        await asyncio.wait_for(reader.ping(), timeout=2)
        await connection.rollback()


@pytest.mark.slow  # many writers racing for seconds
@sqlite_only
async def test_concurrent_writers_on_two_engines_never_see_database_is_locked(
    databases: Databases,
) -> None:
    stores = [databases.store(), databases.store()]

    async def writer(task: int) -> None:
        store = stores[task % 2]
        for i in range(20):
            # A read-then-write transaction: exactly the shape that fails with a deferred
            # BEGIN under contention.
            start = await store.start_turn(
                team_id="T1",
                channel_id="C1",
                thread_ts=f"{task % 3}.0",
                user_id="U1",
                user_ts=f"{task}.{i}",
                event_id=None,
                model="m",
            )
            await store.complete_turn(
                turn_id=start.turn_id,
                response_id=f"resp_{task}_{i}",
                reply_ts=None,
                usage=TokenUsage(input_tokens=1),
            )

    await asyncio.gather(*(writer(task) for task in range(10)))
    turns = [
        turn
        for ts in ("0.0", "1.0", "2.0")
        for turn in await stores[0].list_turns(team_id="T1", channel_id="C1", thread_ts=ts)
    ]
    assert len(turns) == 200
    assert {turn.status for turn in turns} == {"completed"}
