"""Fixtures of the storage tests: a migrated database on each engine and a Store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Store
from tests.databases import BACKENDS, Databases


@pytest.fixture(params=BACKENDS)
async def databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Databases]:
    """A new database upgraded to head, on SQLite and on PostgreSQL (narrow it with
    ``tests.databases.sqlite_only`` / ``postgres_only``); its engines disposed of afterwards."""
    async with Databases.migrated(request.param, tmp_path) as databases:
        yield databases


@pytest.fixture
def store(databases: Databases) -> Store:
    """A Store on a new engine of ``databases``."""
    return databases.store()
