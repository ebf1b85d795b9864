"""Alembic migrations produce exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Double, Integer, MetaData, String, Text, insert, inspect, select, text
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import (
    Base,
    create_engine,
    create_migration_engine,
    create_session_factory,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from storage.migrate import ALEMBIC_INI, MIGRATIONS_DIR, alembic_config
from storage.models import UTCDateTime
from storage.repositories import Store

TABLES = {
    "threads",
    "turns",
    "channel_settings",
    "event_claims",
    "settings_audit",
    "accepted_messages",
    "transcript_entries",
    "endpoint_capabilities",
    "thread_notes",
    "held_answers",
    "assistant_threads",
    "answer_feedback",
    "tool_approvals",
    "tool_calls",
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def _differences(connection: Connection, metadata: MetaData) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _diff(engine: AsyncEngine, metadata: MetaData = Base.metadata) -> list[object]:
    async with engine.connect() as connection:
        return await connection.run_sync(_differences, metadata)


async def test_upgrade_head_creates_exactly_the_models(
    database_url: str, engine: AsyncEngine
) -> None:
    await upgrade_to_head(database_url)

    assert await _diff(engine) == []
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert tables == TABLES | {"alembic_version"}


async def test_the_schema_comparison_would_notice_a_drifted_model(
    database_url: str, engine: AsyncEngine
) -> None:
    # Guards the test above against comparing nothing (e.g. if compare_type were ignored).
    await upgrade_to_head(database_url)
    drifted = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["threads"].c.thread_ts.type = String(64)

    differences = await _diff(engine, drifted)

    assert len(differences) == 1
    assert "modify_type" in repr(differences[0])


async def test_revisions_report_whether_the_schema_is_current(
    database_url: str, engine: AsyncEngine
) -> None:
    store = Store(create_session_factory(engine))
    assert await current_revision(engine) is None
    assert await store.schema_is_current() is False

    await upgrade_to_head(database_url)

    assert head_revision() == "0009"
    assert await current_revision(engine) == head_revision()
    assert await store.schema_is_current() is True


async def test_upgrade_is_idempotent_and_downgrade_round_trips(
    database_url: str, engine: AsyncEngine
) -> None:
    await upgrade_to_head(database_url)
    await upgrade_to_head(database_url)
    assert await current_revision(engine) == head_revision()

    migration_engine = create_migration_engine(database_url)
    try:
        async with migration_engine.connect() as connection:
            await connection.run_sync(_downgrade_to_base, alembic_config(database_url))
            await connection.commit()
    finally:
        await migration_engine.dispose()
    assert await current_revision(engine) is None
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert tables & TABLES == set()

    await upgrade_to_head(database_url)
    assert await _diff(engine) == []


def _downgrade_to_base(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


def _downgrade_to(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def _migrate(url: str, step: Callable[[Connection, Config, str], None], to: str) -> None:
    migration_engine = create_migration_engine(url)
    try:
        async with migration_engine.connect() as connection:
            await connection.run_sync(step, alembic_config(url), to)
            await connection.commit()
    finally:
        await migration_engine.dispose()


def _schema(connection: Connection) -> dict[str, object]:
    """Everything reflection tells about each table, for comparing two migrated schemas."""
    inspector = inspect(connection)
    schema: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"])
                for column in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "unique": sorted(
                (uq["name"] or "", tuple(uq["column_names"]))
                for uq in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (ix["name"] or "", tuple(map(str, ix["column_names"])), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ),
            "foreign_keys": inspector.get_foreign_keys(table),
        }
    return schema


# channel_settings as revision 0001 created it (the models have moved on since).
SETTINGS_0001 = sa_table(
    "channel_settings",
    sa_column("team_id", String),
    sa_column("channel_id", String),
    sa_column("model", String),
    sa_column("instructions", Text),
    sa_column("temperature", Double),
    sa_column("top_p", Double),
    sa_column("max_output_tokens", Integer),
    sa_column("reasoning_effort", String),
    sa_column("updated_at", UTCDateTime()),
    sa_column("updated_by", String),
)
ROWS_0001 = [
    {
        "team_id": "T1",
        "channel_id": "",
        "model": "workspace-model",
        "instructions": "Be brief.",
        "temperature": 0.3,
        "top_p": None,
        "max_output_tokens": 900,
        "reasoning_effort": "low",
        "updated_at": datetime(2026, 11, 1, 12, tzinfo=UTC),
        "updated_by": "U_ADMIN",
    },
    {
        "team_id": "T1",
        "channel_id": "C1",
        "model": None,
        "instructions": None,
        "temperature": None,
        "top_p": 0.8,
        "max_output_tokens": None,
        "reasoning_effort": None,
        "updated_at": datetime(2026, 11, 2, 12, tzinfo=UTC),
        "updated_by": None,
    },
]


async def _rows_0001(url: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                select(SETTINGS_0001).order_by(SETTINGS_0001.c.channel_id)
            )
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


async def _reflect(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_schema)
    finally:
        await engine.dispose()


async def test_0002_keeps_existing_channel_settings_and_downgrades_cleanly(
    database_url: str,
) -> None:
    # A fresh engine per step: asyncpg's statement cache must not outlive a schema change.
    await _migrate(database_url, _upgrade_to, "0001")
    schema_0001 = await _reflect(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(SETTINGS_0001), ROWS_0001)
    finally:
        await engine.dispose()

    await upgrade_to_head(database_url)

    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) == head_revision()
        assert await _diff(engine) == []
        store = Store(create_session_factory(engine))
        listed = await store.list_channel_settings(team_id="T1")
        assert [
            {name: getattr(record, name) for name in ROWS_0001[0]} for record in listed
        ] == ROWS_0001
        for record in listed:
            assert record.reasoning_summary is None
            assert record.truncation is None
            assert record.require_mention is None
            assert record.enabled is None
            assert record.daily_token_budget is None
        # The upgraded rows take the new settings and their audit.
        await store.update_channel_settings(
            team_id="T1",
            channel_id="C1",
            values={"enabled": False, "daily_token_budget": 1000, "top_p": 0.8},
            updated_by="U_ADMIN",
        )
        assert len(await store.list_settings_audit(team_id="T1")) == 2
    finally:
        await engine.dispose()

    await _migrate(database_url, _downgrade_to, "0001")

    assert await _reflect(database_url) == schema_0001
    rows = await _rows_0001(database_url)
    assert rows[0] == ROWS_0001[0]
    # C1 was updated at 0002 (top_p unchanged); its 0001 columns survive the downgrade.
    assert {**rows[1], "updated_at": None} == {
        **ROWS_0001[1],
        "updated_at": None,
        "updated_by": "U_ADMIN",
    }

    await upgrade_to_head(database_url)
    engine = create_engine(database_url)
    try:
        assert await _diff(engine) == []
        store = Store(create_session_factory(engine))
        channel = await store.get_channel_settings(team_id="T1", channel_id="C1")
        assert channel is not None
        # The downgrade dropped the new settings' values and the audit trail.
        assert (channel.top_p, channel.enabled, channel.daily_token_budget) == (0.8, None, None)
        assert await store.list_settings_audit(team_id="T1") == []
    finally:
        await engine.dispose()


FAILING_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    with op.batch_alter_table("threads") as batch:
        batch.add_column(sa.Column("extra", sa.String(8)))
    raise RuntimeError("migration failed half-way")


def downgrade() -> None:
    pass
"""


async def test_a_failed_migration_leaves_the_schema_as_it_was(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    # Needs real transactional DDL on SQLite too, which env.py enables because
    # storage.engine makes SQLAlchemy, not the sqlite3 module, emit BEGIN.
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    # Chained on whatever the head is, so the test survives new revisions.
    (scripts / "versions" / "9999_boom.py").write_text(
        FAILING_REVISION.replace("{head}", head_revision())
    )
    config = alembic_config(database_url)
    config.set_main_option("script_location", str(scripts))

    migration_engine = create_migration_engine(database_url)
    try:
        async with migration_engine.connect() as connection:
            with pytest.raises(RuntimeError, match="half-way"):
                await connection.run_sync(_upgrade_to, config, "9999")
            await connection.rollback()
    finally:
        await migration_engine.dispose()

    assert await current_revision(engine) is None
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert tables == set()


def _upgrade_to(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_upgrade_works_from_any_directory_and_keeps_the_app_logging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_logger = logging.getLogger("bot.some_module")
    root_handlers = list(logging.getLogger().handlers)
    monkeypatch.chdir(tmp_path)

    await upgrade_to_head(f"sqlite+aiosqlite:///{tmp_path / 'relative' / 'bot.db'}")

    assert (tmp_path / "relative" / "bot.db").exists()
    # Alembic's fileConfig would disable existing loggers and replace root handlers.
    assert not app_logger.disabled
    assert logging.getLogger().handlers == root_handlers


async def test_in_memory_urls_are_refused_with_an_explanation() -> None:
    with pytest.raises(ValueError, match="create_all"):
        await upgrade_to_head("sqlite+aiosqlite://")


def test_the_alembic_cli_migrates_from_another_directory(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(ALEMBIC_INI),
            "-x",
            f"url=sqlite+aiosqlite:///{database}",
            "upgrade",
            "head",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr
    assert "Running upgrade 0001 -> 0002" in result.stderr
    assert database.exists()


async def test_0003_keeps_existing_turns_without_a_reservation_and_downgrades_cleanly(
    database_url: str,
) -> None:
    await _migrate(database_url, _upgrade_to, "0002")
    schema_0002 = await _reflect(database_url)
    engine = create_engine(database_url)
    try:
        # Raw SQL: today's models know columns the 0002 schema has not.
        now = datetime(2026, 12, 1, tzinfo=UTC)
        async with engine.begin() as connection:
            thread_id = await connection.scalar(
                text(
                    "INSERT INTO threads (team_id, channel_id, thread_ts, created_at, updated_at)"
                    " VALUES ('T1', 'C1', '1.0', :now, :now) RETURNING id"
                ),
                {"now": now},
            )
            turn_id = await connection.scalar(
                text(
                    "INSERT INTO turns (thread_id, team_id, channel_id, user_id, user_ts, status,"
                    " model, input_tokens, cached_tokens, output_tokens, reasoning_tokens,"
                    " created_at) VALUES (:thread, 'T1', 'C1', 'U1', '1.0', 'completed', 'm',"
                    " 1, 0, 2, 0, :now) RETURNING id"
                ),
                {"thread": thread_id, "now": now},
            )
    finally:
        await engine.dispose()

    await upgrade_to_head(database_url)
    engine = create_engine(database_url)
    try:
        assert await _diff(engine) == []
        async with engine.connect() as connection:
            reserved = await connection.scalar(
                text("SELECT reserved_tokens FROM turns WHERE id = :id"), {"id": turn_id}
            )
            waiting = await connection.scalar(text("SELECT count(*) FROM accepted_messages"))
        assert (reserved, waiting) == (0, 0)
    finally:
        await engine.dispose()

    await _migrate(database_url, _downgrade_to, "0002")
    assert await _reflect(database_url) == schema_0002


def test_missing_migrations_are_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a plain wheel install: the package is there, migrations/ next to it is not.
    monkeypatch.setattr("storage.migrate.MIGRATIONS_DIR", tmp_path / "migrations")
    with pytest.raises(FileNotFoundError, match=r"pip install -e \."):
        alembic_config()
