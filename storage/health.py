"""Whether the database answers and has the newest schema (``/readyz``, ``doctor``)."""

from __future__ import annotations

from sqlalchemy import text

from storage.migrate import current_revision_sync, head_revision
from storage.units import UnitsOfWork

__all__ = ["Health"]


class Health:
    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self._units.reading() as session:
            await session.execute(text("SELECT 1"))

    async def schema_is_current(self) -> bool:
        """Whether the database has been migrated to the newest revision in the checkout."""
        async with self._units.reading() as session:
            connection = await session.connection()
            current = await connection.run_sync(current_revision_sync)
        return current == head_revision()
