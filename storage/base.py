"""The declarative base every table shares, and its column types: the naming convention,
aware UTC timestamps on every engine (:class:`UTCDateTime`), the bounds of ids and integers.

The tables themselves are in ``storage.models``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import DateTime, Dialect, MetaData, String
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

__all__ = [
    "EXTERNAL_ID",
    "INTEGER_MAX",
    "NAMING_CONVENTION",
    "SLACK_ID",
    "SLACK_TS",
    "Base",
    "UTCDateTime",
    "utcnow",
]

NAMING_CONVENTION: Final = {
    # Deterministic constraint names make migrations reproducible and let later migrations
    # drop or alter constraints by name (SQLite otherwise leaves them unnamed).
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

INTEGER_MAX: Final = 2**31 - 1
"""The largest value an integer column (``mapped_column()`` of ``int``) holds on every engine:
PostgreSQL's ``integer`` is 32 bits (SQLite's is 64). Writers check against it, so a value out
of range is refused with a clear error instead of failing inside the database driver."""

# Slack ids (T…, C…, U…) and message timestamps ("1700000000.000100") are short; the bound
# only catches garbage. Ids minted by model endpoints and relays vary far more: LiteLLM's proxy
# encodes its routing into response ids of ~450 characters, hence 2048.
SLACK_ID = String(32)
SLACK_TS = String(32)
EXTERNAL_ID = String(2048)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only clock storage uses)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always returns aware UTC datetimes.

    PostgreSQL's ``timestamptz`` already does; SQLite stores text without an offset and hands
    back naive values. Converting on the way in and tagging on the way out makes both engines
    behave the same. Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: storage needs timezone-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the shared :class:`MetaData`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}
