"""The service owns what it opens: ``async with Service(settings)`` closes everything at the end
of the block, and a start that fails half-way closes what its earlier steps opened.

What is checked is what the operating system and the database see: this process's open files
(the SQLite database and its journal), sockets and threads, its asyncio tasks, open HTTP
clients, and the PostgreSQL server's connections.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.errors import ConfigError
from bot.service import Service
from tests.e2e.harness import make_settings
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import FakeSlack

SETTLE = 5.0


def open_files(prefix: Path) -> list[str]:
    """Files this process holds open whose path starts with ``prefix``."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith(str(prefix)):
            held.append(target)
    return held


def socket_count() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def open_http_clients() -> set[int]:
    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, httpx.AsyncClient) and not o.is_closed}


async def settled(check: Callable[[], bool]) -> bool:
    """Whether ``check`` holds within ``SETTLE`` seconds (closed connections and finished
    threads take a moment to go)."""
    deadline = asyncio.get_running_loop().time() + SETTLE
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Snapshot:
    """Tasks, threads, sockets and HTTP clients before the service starts."""

    def __init__(self) -> None:
        self.tasks = set(asyncio.all_tasks())
        self.threads = set(threading.enumerate())
        self.sockets = socket_count()
        self.clients = open_http_clients()

    def new_tasks(self) -> set[asyncio.Task[object]]:
        current = asyncio.current_task()
        return {t for t in asyncio.all_tasks() if t not in self.tasks and t is not current}

    def new_threads(self) -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t not in self.threads and t.is_alive()}

    async def assert_nothing_left(self, database: Path | None) -> None:
        if database is not None:
            assert await settled(lambda: open_files(database) == []), open_files(database)
        assert await settled(lambda: not self.new_tasks()), self.new_tasks()
        assert await settled(lambda: not self.new_threads()), self.new_threads()
        assert await settled(lambda: socket_count() <= self.sockets), (
            socket_count(),
            self.sockets,
        )
        assert open_http_clients() - self.clients == set()


async def test_a_start_that_fails_after_opening_everything_closes_it_all(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    # The last step of the start, listening, fails: the port is taken.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    database = tmp_path / "bot.db"
    before = Snapshot()
    service = Service(make_settings(tmp_path, fake_slack, fake_model, port=port))
    try:
        with pytest.raises(OSError, match="address already in use"):
            await service.start()
        assert database.exists()  # the database was opened and used before the failure
        await before.assert_nothing_left(database)
    finally:
        taken.close()


async def test_a_start_refused_by_slack_leaves_no_database_connection(
    tmp_path: Path, postgres_url: str, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    # On PostgreSQL the replica presence holds a connection from the first steps on.
    settings = make_settings(
        tmp_path, fake_slack, fake_model, database_url=postgres_url, slack_bot_token="xoxb-wrong"
    )
    before = Snapshot()
    service = Service(settings)  # kept: closing must not be left to the garbage collector
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN was refused by Slack"):
        async with service:
            pytest.fail("the block must not run when the start failed")
    assert await connections(postgres_url) == 0
    await before.assert_nothing_left(None)


async def test_the_block_closes_everything_it_opened(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    database = tmp_path / "bot.db"
    before = Snapshot()
    async with Service(make_settings(tmp_path, fake_slack, fake_model)) as service:
        assert service.port is not None
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://127.0.0.1:{service.port}/readyz")
        assert health.status_code == 200
        assert open_files(database) != []  # the database is open while the service runs
        port = service.port
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    await before.assert_nothing_left(database)


async def connections(url: str) -> int:
    """Connections to the database of ``url`` other than the one asking."""
    name = make_url(url).database
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        return int(count or 0)
    finally:
        await engine.dispose()
