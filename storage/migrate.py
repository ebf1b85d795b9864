"""Run Alembic migrations from the service (the ``alembic`` CLI works too).

The Alembic files live at the repository root (``alembic.ini``, ``migrations/``) and are found
from this package's own location, never from the working directory: ``python -m bot migrate``
works from any folder, and a folder's own ``alembic.ini`` or ``migrations/`` is never used
(``tests/e2e/test_cli.py`` checks it as a real process). The project therefore runs from a
checkout (the Docker image: ``/app``) or an editable install (``pip install -e .``); a wheel
does not carry ``migrations/``, which is said plainly if it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import READ_ONLY, create_migration_engine, is_memory_url
from storage.failures import translated

__all__ = [
    "ALEMBIC_INI",
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "current_revision_sync",
    "head_revision",
    "upgrade_to_head",
]

_REPO_ROOT: Final = Path(__file__).resolve().parents[1]
ALEMBIC_INI: Final = _REPO_ROOT / "alembic.ini"
"""The repository's Alembic configuration file."""
MIGRATIONS_DIR: Final = _REPO_ROOT / "migrations"
"""The Alembic script directory (``env.py`` and ``versions/``)."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`Config` for this repository, optionally pointed at ``url``.

    Logging is left alone: ``env.py`` applies the ini file's logging setup only when the
    ``alembic`` CLI runs it, never inside the service, whose logging is already configured.
    """
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise FileNotFoundError(
            f"the Alembic migrations are not at {MIGRATIONS_DIR}: run the service from its "
            "checkout or an editable install (pip install -e .), which carry migrations/"
        )
    config = Config(str(ALEMBIC_INI))
    # Absolute, so neither the working directory nor the ini's own setting matters.
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates "%": URL-encoded passwords (%40 …) must be escaped.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


async def upgrade_to_head(url: str) -> None:
    """Apply every pending migration to the database at ``url`` (idempotent).

    Runs on one connection from :func:`~storage.engine.create_migration_engine` (no pool;
    SQLite foreign keys off while tables are rebuilt), inside one transaction on both
    engines: a failed migration leaves the schema as it was. A database failure raises
    :class:`~storage.errors.StorageError`.
    """
    if is_memory_url(url):
        # Each engine gets its own private in-memory database, so migrating through a
        # separate engine could never reach the one the caller uses.
        raise ValueError(
            "upgrade_to_head needs a database file or server; create in-memory test "
            "schemas with Base.metadata.create_all"
        )
    config = alembic_config(url)
    with translated():
        engine = create_migration_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(_upgrade, config)
                # Alembic commits the transaction it began; this covers the case where the
                # connection had already autobegun one before Alembic looked.
                await connection.commit()
        finally:
            await engine.dispose()


def _upgrade(connection: Connection, config: Config) -> None:
    # env.py runs the migrations on this connection instead of creating its own engine.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database behind ``engine`` is at (None: never migrated)."""
    with translated():
        async with engine.connect() as connection:
            connection = await connection.execution_options(**READ_ONLY)
            return await connection.run_sync(current_revision_sync)


def current_revision_sync(connection: Connection) -> str | None:
    """:func:`current_revision` for a synchronous connection (use via ``run_sync``)."""
    return MigrationContext.configure(connection).get_current_revision()
