from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.service import Service
from tests.databases import BACKENDS, temporary_database
from tests.e2e.harness import MODEL_KEY, BotUnderTest, make_settings
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import FakeSlack

StartBot = Callable[..., Awaitable[BotUnderTest]]

SLOW_FOLDERS = ("e2e", "faults", "replicas")
"""Every test in these folders starts the whole service (or several, or a process) against
fake servers."""


def _slow(item: pytest.Item) -> bool:
    """Whether ``item`` is left out of the fast lane (``scripts/test -m "not slow"``): the
    tests of ``SLOW_FOLDERS`` and every PostgreSQL variant (a database created and migrated
    per test: the fast lane checks storage on SQLite); elsewhere a test marks itself."""
    parts = item.path.relative_to(Path(__file__).parent).parts
    if parts and parts[0] in SLOW_FOLDERS:
        return True
    if "postgres_url" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marked here rather than file by file, so a new test in these places is never left in
    # the fast lane by a forgotten mark.
    for item in items:
        if _slow(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database (no migrations applied), once on SQLite and once on PostgreSQL
    (skipped, with the reason, when no PostgreSQL server answers); dropped afterwards."""
    async with temporary_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (for several processes sharing one); dropped
    afterwards."""
    async with temporary_database("postgresql", tmp_path) as url:
        yield url


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as slack:
        yield slack


@pytest.fixture
async def fake_model() -> AsyncIterator[FakeResponsesServer]:
    async with FakeResponsesServer(api_key=MODEL_KEY) as model:
        yield model


@pytest.fixture
async def start_bot(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> AsyncIterator[StartBot]:
    """Start (and, at the end, stop) the real service in this process; may be called again
    after ``stop()`` to restart it on the same database."""
    started: list[Service] = []
    session = aiohttp.ClientSession()

    async def start(**overrides: Any) -> BotUnderTest:
        service = Service(
            make_settings(tmp_path, fake_slack, fake_model, **overrides), shutdown_grace=5
        )
        await service.start()
        started.append(service)
        return BotUnderTest(service=service, slack=fake_slack, model=fake_model, http=session)

    yield start
    for service in started:
        if service.port is not None and service.tracker.accepting:
            await service.stop()
    await session.close()


@pytest.fixture
async def bot(start_bot: StartBot) -> BotUnderTest:
    return await start_bot()
