"""Channel settings (per channel, and a workspace's defaults row) and the audit trail of their
changes, committed together: a setting never changes without its audit row.

Values are checked here before anything is written (name, Python type, what every engine's
column holds), so all given settings are saved together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, Column, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import INTEGER_MAX, SETTING_FIELDS, ChannelSettings, SettingsAudit, utcnow
from storage.records import ChannelSettingsRecord, SettingsAuditRecord
from storage.units import UnitsOfWork

__all__ = ["ChannelSettingsStore"]


def _accepted_types(column: Column[Any]) -> tuple[type, ...]:
    """The Python types a setting's column takes, read from its SQL type (no per-setting
    table): a float column also takes ints; a JSON column (list-valued settings) takes
    lists and tuples."""
    if isinstance(column.type, JSON):
        return (list, tuple)
    kind = column.type.python_type
    return (int, float) if kind is float else (kind,)


# bool is an int subclass, so it is refused where a number is expected; and a bool setting
# takes only real bools (not 0/1).
_SETTING_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    name: _accepted_types(ChannelSettings.__table__.columns[name]) for name in SETTING_FIELDS
}


def _settings_record(row: ChannelSettings) -> ChannelSettingsRecord:
    return ChannelSettingsRecord(
        team_id=row.team_id,
        channel_id=row.channel_id,
        values={name: getattr(row, name) for name in SETTING_FIELDS},
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _encode_setting(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def _decode_setting(encoded: str | None) -> object:
    return None if encoded is None else json.loads(encoded)


def _audit_record(row: SettingsAudit) -> SettingsAuditRecord:
    return SettingsAuditRecord(
        id=row.id,
        team_id=row.team_id,
        channel_id=row.channel_id,
        field=row.field,
        old_value=_decode_setting(row.old_value),
        new_value=_decode_setting(row.new_value),
        changed_by=row.changed_by,
        changed_at=row.changed_at,
    )


def _check_setting_names(names: Sequence[str] | Mapping[str, object]) -> None:
    unknown = sorted(set(names) - set(SETTING_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown channel setting(s) {', '.join(unknown)}; known: {', '.join(SETTING_FIELDS)}"
        )


def _clean_setting_values(values: Mapping[str, object]) -> dict[str, object]:
    _check_setting_names(values)
    cleaned: dict[str, object] = {}
    for name, value in values.items():
        if value is not None:
            allowed = _SETTING_TYPES[name]
            if isinstance(value, bool) != (bool in allowed) or not isinstance(value, allowed):
                expected = " or ".join(kind.__name__ for kind in allowed)
                raise TypeError(f"{name} must be {expected} or None, not {type(value).__name__}")
            if float in allowed and isinstance(value, int | float):
                value = float(value)  # store 1 as 1.0 so reads return one type
            if isinstance(value, tuple):
                value = list(value)  # JSON reads back a list: one type either way
            _check_storable(name, value)
        cleaned[name] = value
    return cleaned


def _check_storable(name: str, value: object) -> None:
    """Refuse, before the database does (differently per engine), what no column holds."""
    if isinstance(value, list):
        for item in value:
            _check_storable(name, item)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -INTEGER_MAX - 1 <= value <= INTEGER_MAX:
            raise ValueError(f"{name} must be within ±{INTEGER_MAX:,}, not {value:,}")
    elif isinstance(value, str) and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value):
        # PostgreSQL refuses NUL in text, and no driver encodes a lone surrogate.
        raise ValueError(f"{name} contains a NUL character or a lone surrogate")


class ChannelSettingsStore:
    """Channel settings and their audit, one short transaction per method."""

    def __init__(self, units: UnitsOfWork) -> None:
        self._units = units

    async def get_channel_settings(
        self, *, team_id: str, channel_id: str
    ) -> ChannelSettingsRecord | None:
        """The overrides for a channel (``channel_id=""``: the workspace defaults), if any."""
        async with self._units.reading() as session:
            row = await session.scalar(_settings_query(team_id=team_id, channel_id=channel_id))
        return None if row is None else _settings_record(row)

    async def update_channel_settings(
        self,
        *,
        team_id: str,
        channel_id: str,
        values: Mapping[str, object],
        updated_by: str | None,
    ) -> ChannelSettingsRecord:
        """Set the given settings (None: back to inherit), keeping the others; returns the row.

        Raises ValueError for an unknown name and TypeError for a wrongly typed value, before
        anything is written; all given settings are saved together or not at all. Each
        setting whose value actually changes gets a ``settings_audit`` row (changed by
        ``updated_by``), committed with the change.
        """
        cleaned = _clean_setting_values(values)
        async with self._units.writing() as session:
            row = await _get_or_create_settings(session, team_id=team_id, channel_id=channel_id)
            now = utcnow()
            _change_settings(session, row, cleaned, changed_by=updated_by, changed_at=now)
            row.updated_by = updated_by
            # Set explicitly: onupdate would not fire when no setting actually changed.
            row.updated_at = now
            await session.flush()
            return _settings_record(row)

    async def reset_channel_settings(
        self,
        *,
        team_id: str,
        channel_id: str,
        fields: Sequence[str] | None = None,
        updated_by: str | None = None,
    ) -> ChannelSettingsRecord | None:
        """Put ``fields`` (None: all of them) back to inherit; returns the row, if there is one.

        Raises ValueError for an unknown name before anything is written. Each setting that
        was set gets a ``settings_audit`` row (changed by ``updated_by``), committed with the
        change.
        """
        if isinstance(fields, str):
            # A lone name would otherwise be read as a sequence of one-letter names.
            raise TypeError("fields must be a sequence of setting names, not a string")
        names = SETTING_FIELDS if fields is None else tuple(fields)
        _check_setting_names(names)
        async with self._units.writing() as session:
            row = await session.scalar(
                _settings_query(team_id=team_id, channel_id=channel_id).with_for_update()
            )
            if row is None:
                return None
            now = utcnow()
            _change_settings(
                session,
                row,
                dict.fromkeys(names),
                changed_by=updated_by,
                changed_at=now,
            )
            row.updated_by = updated_by
            row.updated_at = now
            await session.flush()
            return _settings_record(row)

    async def list_channel_settings(self, *, team_id: str) -> list[ChannelSettingsRecord]:
        """Every settings row of a workspace (its defaults row ``""`` first), by channel id."""
        async with self._units.reading() as session:
            rows = await session.scalars(
                select(ChannelSettings)
                .where(ChannelSettings.team_id == team_id)
                .order_by(ChannelSettings.channel_id)
            )
            return [_settings_record(row) for row in rows]

    async def list_settings_audit(
        self, *, team_id: str, channel_id: str | None = None, limit: int = 50
    ) -> list[SettingsAuditRecord]:
        """The newest ``limit`` setting changes of a workspace, newest first.

        ``channel_id`` narrows them to one channel (``""``: the workspace defaults); None
        keeps every layer of the workspace.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        query = select(SettingsAudit).where(SettingsAudit.team_id == team_id)
        if channel_id is not None:
            query = query.where(SettingsAudit.channel_id == channel_id)
        # id breaks ties between the fields of one change, which share changed_at.
        query = query.order_by(SettingsAudit.changed_at.desc(), SettingsAudit.id.desc())
        async with self._units.reading() as session:
            rows = await session.scalars(query.limit(limit))
            return [_audit_record(row) for row in rows]


def _settings_query(*, team_id: str, channel_id: str) -> Select[ChannelSettings]:
    return select(ChannelSettings).where(
        ChannelSettings.team_id == team_id, ChannelSettings.channel_id == channel_id
    )


def _change_settings(
    session: AsyncSession,
    row: ChannelSettings,
    values: Mapping[str, object],
    *,
    changed_by: str | None,
    changed_at: datetime,
) -> None:
    """Set ``values`` on ``row`` and add an audit row for each value that actually changes."""
    for name, new in values.items():
        old = getattr(row, name)
        # Unchanged values leave no audit trail (the type check keeps e.g. 1 == 1.0 honest).
        if old == new and type(old) is type(new):
            continue
        setattr(row, name, new)
        session.add(
            SettingsAudit(
                team_id=row.team_id,
                channel_id=row.channel_id,
                field=name,
                old_value=_encode_setting(old),
                new_value=_encode_setting(new),
                changed_by=changed_by,
                changed_at=changed_at,
            )
        )


async def _get_or_create_settings(
    session: AsyncSession, *, team_id: str, channel_id: str
) -> ChannelSettings:
    """The settings row for the channel, inserting an all-inherit one if needed; race-safe.

    The row is locked (PostgreSQL ``FOR UPDATE``; SQLite's BEGIN IMMEDIATE already serialises
    writers) so the old values audited are the ones this transaction replaces.
    """
    query = _settings_query(team_id=team_id, channel_id=channel_id).with_for_update()
    row: ChannelSettings | None = await session.scalar(query)
    if row is not None:
        return row
    try:
        async with session.begin_nested():  # see storage.threads.get_or_create_thread
            row = ChannelSettings(team_id=team_id, channel_id=channel_id, updated_at=utcnow())
            session.add(row)
    except IntegrityError:
        row = await session.scalar(query)
        assert row is not None
    return row
