"""PostgreSQL advisory locks named by text keys (``thread:…``, ``replica:…``, ``limit:…``).

One spelling of each statement: a key is hashed to the lock's 64-bit number by
``hashtextextended`` in the server, so every process maps a key to the same lock.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.failures import translated

__all__ = ["HOLD_FOR_SESSION", "HOLD_FOR_TRANSACTION", "is_free"]

HOLD_FOR_TRANSACTION: Final[TextClause] = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"
)
"""Wait for the lock ``:key`` and hold it until the transaction ends."""

HOLD_FOR_SESSION: Final[TextClause] = text("SELECT pg_advisory_lock(hashtextextended(:key, 0))")
"""Wait for the lock ``:key`` and hold it until the connection closes."""

_TRY_FOR_TRANSACTION: Final = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")


async def is_free(engine: AsyncEngine, key: str) -> bool:
    """Whether nobody holds the lock ``key``: a probe in a transaction of its own, which, if
    it gets the lock, releases it again at once by committing."""
    with translated():
        async with engine.connect() as connection, connection.begin():
            return bool(await connection.scalar(_TRY_FOR_TRANSACTION, {"key": key}))
