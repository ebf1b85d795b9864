"""What a caller outside ``storage`` catches when the database fails, without importing
SQLAlchemy itself: driver errors arrive wrapped in SQLAlchemy's tree; file-system errors
(a missing directory, a read-only or full disk) as ``OSError``."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

__all__ = ["STORAGE_ERRORS", "TurnNotFoundError"]

STORAGE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)


class TurnNotFoundError(LookupError):
    """No turn has the given id."""

    def __init__(self, turn_id: int) -> None:
        super().__init__(f"turn {turn_id} not found")
        self.turn_id = turn_id
