"""The one place where SQLAlchemy, database-driver and operating-system failures become
:class:`~storage.errors.StorageError`.

Used at the boundaries where storage meets the database: the units of work
(``storage.units``), and the few calls that run outside them (the thread and replica locks,
migrations, the engine's directory). Inside a unit of work, code may still catch SQLAlchemy's
own types (a lost insert race under a savepoint); nothing of them leaves ``storage``.

The code is read from what the drivers report, not from message texts: SQLite's result code
(``sqlite3`` errors carry ``sqlite_errorcode``), PostgreSQL's SQLSTATE (asyncpg errors carry
``sqlstate``), the ``errno`` of an ``OSError``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from sqlalchemy import exc as sa_exc

from storage.errors import StorageError, StorageErrorCode

__all__ = ["FOREIGN_ERRORS", "storage_error", "translated"]

FOREIGN_ERRORS: Final[tuple[type[Exception], ...]] = (sa_exc.SQLAlchemyError, OSError)
"""What a database call raises: SQLAlchemy's tree (driver errors arrive wrapped in it) and
``OSError`` (a directory that cannot be created, a connection refused before SQLAlchemy wraps
anything, a connect timeout)."""

_REASON_LIMIT: Final = 200

# SQLite primary result codes (the low byte of extended codes): https://sqlite.org/rescode.html
_SQLITE: Final[Mapping[int, StorageErrorCode]] = {
    5: "locked",  # SQLITE_BUSY
    6: "locked",  # SQLITE_LOCKED
    8: "read_only",  # SQLITE_READONLY
    10: "unavailable",  # SQLITE_IOERR
    11: "unavailable",  # SQLITE_CORRUPT
    13: "full",  # SQLITE_FULL
    14: "unavailable",  # SQLITE_CANTOPEN
    19: "integrity",  # SQLITE_CONSTRAINT
    26: "unavailable",  # SQLITE_NOTADB
}

# PostgreSQL SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
_POSTGRES: Final[Mapping[str, StorageErrorCode]] = {
    "55P03": "locked",  # lock_not_available (lock_timeout)
    "40P01": "locked",  # deadlock_detected
    "40001": "locked",  # serialization_failure
    "25006": "read_only",  # read_only_sql_transaction (a standby, default_transaction_read_only)
    "53100": "full",  # disk_full
    "3D000": "unavailable",  # invalid_catalog_name: the database does not exist
}
_POSTGRES_CLASSES: Final[Mapping[str, StorageErrorCode]] = {
    "08": "unavailable",  # connection exception
    "23": "integrity",  # integrity constraint violation
    "28": "unavailable",  # invalid authorization
    "53": "unavailable",  # insufficient resources (too many connections, out of memory)
    "57": "unavailable",  # operator intervention (shutdown, cannot connect now, cancelled)
}

_OS: Final[Mapping[int, StorageErrorCode]] = {
    errno.EROFS: "read_only",
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
}


def storage_error(exc: Exception) -> StorageError:
    """The :class:`StorageError` for a foreign failure (raise it ``from exc``)."""
    return StorageError(_reason(exc), code=_code(exc))


@contextmanager
def translated() -> Iterator[None]:
    """Raise a :class:`StorageError` (``from`` the original) for any failure in ``FOREIGN_ERRORS``
    inside the block; everything else passes unchanged."""
    try:
        yield
    except FOREIGN_ERRORS as exc:
        raise storage_error(exc) from exc


def _driver_error(exc: Exception) -> BaseException:
    # StatementError (DBAPIError's base) wraps what the driver or a bound parameter's type
    # raised; its own text adds the SQL statement and its parameters.
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        return exc.orig
    return exc


def _reason(exc: Exception) -> str:
    source = _driver_error(exc)
    text = " ".join(str(source).split()) or type(source).__name__
    return text[:_REASON_LIMIT]


def _code(exc: Exception) -> StorageErrorCode:
    if isinstance(exc, sa_exc.IntegrityError):
        return "integrity"
    source = _driver_error(exc)
    sqlite_code = getattr(source, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int) and (sqlite_code & 0xFF) in _SQLITE:
        return _SQLITE[sqlite_code & 0xFF]
    sqlstate = getattr(source, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        found = _POSTGRES.get(sqlstate) or _POSTGRES_CLASSES.get(sqlstate[:2])
        if found is not None:
            return found
    if isinstance(source, OSError):
        return _OS.get(source.errno or 0, "unavailable")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "unavailable"
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return "unavailable"  # a dropped connection, or no connection free in the pool
    return "other"
