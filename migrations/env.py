"""Alembic environment for slack-responses-bot (async engines: aiosqlite and asyncpg).

Two ways in:

* the ``alembic`` CLI: builds a one-off engine from ``-x url=...`` (or ``sqlalchemy.url``)
  and runs the migrations on it through ``connection.run_sync``;
* ``storage.migrate.upgrade_to_head``: passes its own connection in
  ``config.attributes["connection"]``, which is used as is.

Either way the engine comes from ``storage.engine.create_migration_engine``, so migrations
see the same SQLite transaction handling as the service, with foreign keys off (see there).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Final, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from storage.engine import create_migration_engine
from storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata

# Arbitrary constant naming the migration lock (PostgreSQL advisory locks take a bigint).
_MIGRATION_LOCK_KEY: Final = 0x5EED_B07

# Only when run by the alembic CLI: inside the service, fileConfig would replace the
# application's logging setup (and by default disable every logger that already exists).
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    # -x url=... lets operators target any database without editing alembic.ini.
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _render_item(kind: str, obj: object, _context: AutogenContext) -> str | Literal[False]:
    # Revision files must not import application code (it changes after they are written):
    # UTCDateTime only adds Python-side conversion, its column type is DateTime(tz=True).
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Tables that slack_sdk creates and manages itself (multi-workspace install: installations,
# bot tokens and OAuth states); autogenerate must neither drop nor alter them.
SLACK_SDK_TABLES = frozenset({"slack_installations", "slack_bots", "slack_oauth_states"})


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    table = getattr(obj, "table", None) if type_ != "table" else obj
    table_name = name if type_ == "table" else getattr(table, "name", None)
    return table_name not in SLACK_SDK_TABLES


def _configure_options(dialect_name: str) -> dict[str, object]:
    return {
        "target_metadata": target_metadata,
        "include_object": _include_object,
        "render_item": _render_item,
        # Autogenerate also notices changed column types, not only added/removed columns.
        "compare_type": True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        "render_as_batch": dialect_name == "sqlite",
        # Alembic assumes SQLite DDL is not transactional because the sqlite3 module
        # commits around it; storage.engine makes SQLAlchemy emit BEGIN itself, so it is,
        # and an upgrade that fails half-way rolls back on SQLite as on PostgreSQL.
        "transactional_ddl": True,
    }


def run_migrations_offline() -> None:
    """Emit the migration SQL to stdout (``alembic upgrade head --sql``)."""
    url = _database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure_options(url.split(":", 1)[0].split("+", 1)[0]),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on ``connection`` in a single transaction."""
    context.configure(connection=connection, **_configure_options(connection.dialect.name))
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several replicas starting at once must not migrate concurrently; the lock is
            # released when the transaction ends. (SQLite's BEGIN IMMEDIATE does the same.)
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def run_async_migrations() -> None:
    """Create a one-off engine (NullPool), migrate through it and dispose of it."""
    engine = create_migration_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Migrate through the caller's connection if given, else through a new engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
