"""What a caller outside ``storage`` catches when the database fails, without importing
SQLAlchemy itself: driver errors arrive wrapped in SQLAlchemy's tree; file-system errors
(a missing directory, a read-only or full disk) as ``OSError``."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

__all__ = ["STORAGE_ERRORS"]

STORAGE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)
