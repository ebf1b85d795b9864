"""What storage raises, without SQLAlchemy (importing this module loads none of it)::

    StorageError                the database failed; ``code`` says how
     └── ThreadLockTimeout      another replica held a thread longer than the wait allows
    TurnNotFoundError           (a LookupError) no turn has the given id: a caller's mistake

Every SQLAlchemy, database-driver and operating-system failure of a storage call reaches the
caller as a :class:`StorageError`, raised ``from`` the original (``storage.failures`` is the one
place that maps them), so code outside ``storage`` catches this one type and never imports
SQLAlchemy to handle a database failure.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "STORAGE_ERRORS",
    "StorageError",
    "StorageErrorCode",
    "ThreadLockTimeout",
    "TurnNotFoundError",
]

StorageErrorCode = Literal["locked", "read_only", "full", "unavailable", "integrity", "other"]
"""How the database failed:

* ``locked``: another writer held what was needed past the wait allowed (SQLite busy,
  PostgreSQL lock timeout, deadlock or serialisation failure); trying again later may work.
* ``read_only``: the database, its file or its file system refuses writes.
* ``full``: no space left for the database.
* ``unavailable``: the database cannot be reached or opened (connection refused or lost, file
  missing or unreadable, server shutting down, pool exhausted).
* ``integrity``: a constraint refused the change (a key already taken, a missing parent row).
* ``other``: anything else (usually a bug: bad SQL, a value no column holds).
"""


class StorageError(Exception):
    """The database failed. ``str()`` is the driver's own words (bounded, never the statement
    or its parameters, which may quote what people wrote); ``code`` is what callers branch on."""

    def __init__(self, reason: str, *, code: StorageErrorCode) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code: StorageErrorCode = code


class ThreadLockTimeout(StorageError):
    """Another replica held the thread longer than the wait allows (``storage.thread_locks``)."""

    def __init__(self, reason: str, *, code: StorageErrorCode = "locked") -> None:
        super().__init__(reason, code=code)


STORAGE_ERRORS: Final[tuple[type[Exception], ...]] = (StorageError,)
"""Kept for ``except STORAGE_ERRORS`` clauses written before :class:`StorageError`: catch
``StorageError`` in new code."""


class TurnNotFoundError(LookupError):
    """No turn has the given id."""

    def __init__(self, turn_id: int) -> None:
        super().__init__(f"turn {turn_id} not found")
        self.turn_id = turn_id
