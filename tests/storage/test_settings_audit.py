"""The settings audit trail: one row per setting that actually changed, committed with it."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import NoReturn

import pytest
from sqlalchemy import update

from storage import SettingsAuditRecord, Store, channel_settings
from storage.models import SettingsAudit

KEYS = {"team_id": "T1", "channel_id": "C1"}


def _changes(records: list[SettingsAuditRecord]) -> dict[str, tuple[object, object]]:
    return {record.field: (record.old_value, record.new_value) for record in records}


async def test_only_changed_settings_are_audited_with_typed_values(store: Store) -> None:
    first = await store.update_channel_settings(
        **KEYS, values={"model": "gpt-5", "temperature": 0.5, "top_p": None}, updated_by="U1"
    )
    audit = await store.list_settings_audit(**KEYS)
    # top_p stayed None (inherit): no row for it.
    assert _changes(audit) == {"model": (None, "gpt-5"), "temperature": (None, 0.5)}
    assert {(r.team_id, r.channel_id, r.changed_by) for r in audit} == {("T1", "C1", "U1")}
    assert {r.changed_at for r in audit} == {first.updated_at}
    assert audit[0].changed_at.tzinfo == UTC

    await store.update_channel_settings(
        **KEYS,
        values={
            "model": "gpt-5",  # unchanged
            "temperature": 1,  # stored as 1.0
            "instructions": 'Say "hi"\nthen stop. \u00e9',
            "enabled": False,
            "daily_token_budget": 0,
            "reasoning_summary": True,
            "truncation": "auto",
            "max_output_tokens": 800,
        },
        updated_by="cli",
    )
    second = (await store.list_settings_audit(**KEYS))[:7]
    assert _changes(second) == {
        "temperature": (0.5, 1.0),
        "instructions": (None, 'Say "hi"\nthen stop. \u00e9'),
        "enabled": (None, False),
        "daily_token_budget": (None, 0),
        "reasoning_summary": (None, True),
        "truncation": (None, "auto"),
        "max_output_tokens": (None, 800),
    }
    typed = {r.field: r.new_value for r in second}
    assert type(typed["temperature"]) is float
    assert typed["enabled"] is False
    assert type(typed["daily_token_budget"]) is int
    assert type(typed["max_output_tokens"]) is int
    assert {r.changed_by for r in second} == {"cli"}
    assert len(await store.list_settings_audit(**KEYS)) == 9

    await store.update_channel_settings(
        **KEYS, values={"enabled": True, "model": "gpt-5-mini"}, updated_by=None
    )
    latest = await store.list_settings_audit(**KEYS, limit=2)
    assert _changes(latest) == {"enabled": (False, True), "model": ("gpt-5", "gpt-5-mini")}
    assert {r.changed_by for r in latest} == {None}


async def test_an_update_that_changes_nothing_writes_no_audit(store: Store) -> None:
    # A new row whose settings all stay "inherit".
    await store.update_channel_settings(**KEYS, values={"model": None}, updated_by="U1")
    assert await store.list_settings_audit(**KEYS) == []

    await store.update_channel_settings(
        **KEYS, values={"model": "gpt-5", "enabled": False}, updated_by="U1"
    )
    await store.update_channel_settings(
        **KEYS, values={"model": "gpt-5", "enabled": False}, updated_by="U2"
    )
    await store.update_channel_settings(**KEYS, values={}, updated_by="U3")
    assert len(await store.list_settings_audit(**KEYS)) == 2


async def test_reset_audits_each_setting_it_puts_back_to_inherit(store: Store) -> None:
    await store.update_channel_settings(
        **KEYS,
        values={"model": "gpt-5", "require_mention": False, "daily_token_budget": 5000},
        updated_by="U1",
    )

    # top_p already inherits: nothing to audit for it.
    one = await store.reset_channel_settings(**KEYS, fields=["model", "top_p"], updated_by="U2")
    assert one is not None
    audit = await store.list_settings_audit(**KEYS, limit=1)
    assert _changes(audit) == {"model": ("gpt-5", None)}
    assert (audit[0].changed_by, audit[0].changed_at) == ("U2", one.updated_at)

    await store.reset_channel_settings(**KEYS)
    rest = await store.list_settings_audit(**KEYS, limit=2)
    assert _changes(rest) == {"require_mention": (False, None), "daily_token_budget": (5000, None)}
    assert {r.changed_by for r in rest} == {None}

    # Nothing left to reset, and a channel without a row: no more rows.
    await store.reset_channel_settings(**KEYS, updated_by="U3")
    assert await store.reset_channel_settings(team_id="T1", channel_id="C9") is None
    assert len(await store.list_settings_audit(team_id="T1")) == 6


async def test_a_refused_change_writes_neither_settings_nor_audit(store: Store) -> None:
    await store.update_channel_settings(**KEYS, values={"model": "gpt-5"}, updated_by="U1")
    before = await store.get_channel_settings(**KEYS)

    with pytest.raises(TypeError, match="enabled"):
        await store.update_channel_settings(
            **KEYS, values={"model": "other", "enabled": 1}, updated_by="U2"
        )
    with pytest.raises(ValueError, match="colour"):
        await store.update_channel_settings(
            **KEYS, values={"model": "other", "colour": "red"}, updated_by="U2"
        )
    with pytest.raises(ValueError, match="colour"):
        await store.reset_channel_settings(**KEYS, fields=["model", "colour"], updated_by="U2")
    with pytest.raises(TypeError, match="enabled"):
        await store.update_channel_settings(
            team_id="T1", channel_id="C2", values={"enabled": "yes"}, updated_by="U2"
        )

    assert await store.get_channel_settings(**KEYS) == before
    assert await store.get_channel_settings(team_id="T1", channel_id="C2") is None
    assert _changes(await store.list_settings_audit(team_id="T1")) == {"model": (None, "gpt-5")}


async def test_a_failed_transaction_keeps_neither_the_change_nor_its_audit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.update_channel_settings(**KEYS, values={"model": "gpt-5"}, updated_by="U1")

    class Boom(Exception):
        pass

    def fail(row: object) -> NoReturn:
        raise Boom

    # Fails after the change and its audit rows were flushed, before the commit.
    monkeypatch.setattr(channel_settings, "_settings_record", fail)
    with pytest.raises(Boom):
        await store.update_channel_settings(
            **KEYS, values={"model": "other", "enabled": True}, updated_by="U2"
        )
    with pytest.raises(Boom):
        await store.reset_channel_settings(**KEYS, updated_by="U2")
    monkeypatch.undo()

    saved = await store.get_channel_settings(**KEYS)
    assert saved is not None
    assert (saved.model, saved.enabled, saved.updated_by) == ("gpt-5", None, "U1")
    assert _changes(await store.list_settings_audit(**KEYS)) == {"model": (None, "gpt-5")}


async def test_audit_lists_newest_first_scoped_by_team_and_channel(store: Store) -> None:
    changes = [
        ("T1", "", "model", "w1"),
        ("T1", "C1", "model", "c1"),
        ("T2", "C1", "model", "other-team"),
        ("T1", "C2", "model", "c2"),
        ("T1", "C1", "model", "c1-again"),
        ("T1", "", "model", "w2"),
    ]
    for team_id, channel_id, field, value in changes:
        await store.update_channel_settings(
            team_id=team_id, channel_id=channel_id, values={field: value}, updated_by="U1"
        )

    team = await store.list_settings_audit(team_id="T1")
    assert [r.new_value for r in team] == ["w2", "c1-again", "c2", "c1", "w1"]
    assert [r.id for r in team] == sorted((r.id for r in team), reverse=True)
    assert [r.changed_at for r in team] == sorted((r.changed_at for r in team), reverse=True)

    assert [r.new_value for r in await store.list_settings_audit(team_id="T1", limit=2)] == [
        "w2",
        "c1-again",
    ]
    assert await store.list_settings_audit(team_id="T1", limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        await store.list_settings_audit(team_id="T1", limit=-1)

    channel = await store.list_settings_audit(team_id="T1", channel_id="C1")
    assert [(r.old_value, r.new_value) for r in channel] == [("c1", "c1-again"), (None, "c1")]
    workspace = await store.list_settings_audit(team_id="T1", channel_id="")
    assert [r.new_value for r in workspace] == ["w2", "w1"]
    other = await store.list_settings_audit(team_id="T2")
    assert [(r.team_id, r.channel_id, r.new_value) for r in other] == [("T2", "C1", "other-team")]
    assert await store.list_settings_audit(team_id="T2", channel_id="C2") == []
    assert await store.list_settings_audit(team_id="T3") == []

    # Ordered by when the change happened, not by id: back-date the newest row.
    async with store.session_factory() as session, session.begin():
        await session.execute(
            update(SettingsAudit)
            .where(SettingsAudit.id == team[0].id)
            .values(changed_at=team[-1].changed_at - timedelta(minutes=1))
        )
    reordered = await store.list_settings_audit(team_id="T1")
    assert [r.new_value for r in reordered] == ["c1-again", "c2", "c1", "w1", "w2"]
