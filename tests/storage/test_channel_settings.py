"""Channel settings: admins change some settings, the rest keep inheriting."""

from __future__ import annotations

import dataclasses

import pytest

from storage import SETTING_FIELDS, WORKSPACE_DEFAULT_CHANNEL, ChannelSettingsRecord, Store
from storage.models import ChannelSettings

KEYS = {"team_id": "T1", "channel_id": "C1"}


async def test_a_channel_without_overrides_has_no_row(store: Store) -> None:
    assert await store.get_channel_settings(**KEYS) is None


async def test_updating_some_settings_keeps_the_others(store: Store) -> None:
    await store.update_channel_settings(
        **KEYS, values={"model": "gpt-5-mini", "temperature": 0.2}, updated_by="U_ADMIN"
    )
    saved = await store.update_channel_settings(
        **KEYS, values={"instructions": "Answer briefly."}, updated_by="U_OTHER"
    )

    assert saved == await store.get_channel_settings(**KEYS)
    assert saved.overrides() == {
        "model": "gpt-5-mini",
        "temperature": 0.2,
        "instructions": "Answer briefly.",
    }
    assert saved.updated_by == "U_OTHER"
    assert saved.updated_at.tzinfo is not None


async def test_none_puts_a_setting_back_to_inherit(store: Store) -> None:
    await store.update_channel_settings(
        **KEYS, values={"model": "gpt-5-mini", "max_output_tokens": 2000}, updated_by=None
    )
    saved = await store.update_channel_settings(**KEYS, values={"model": None}, updated_by=None)
    assert saved.model is None
    assert saved.max_output_tokens == 2000


async def test_an_unknown_setting_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(ValueError, match="temprature"):
        await store.update_channel_settings(
            **KEYS, values={"model": "gpt-5", "temprature": 1.0}, updated_by=None
        )
    assert await store.get_channel_settings(**KEYS) is None

    await store.update_channel_settings(**KEYS, values={"model": "gpt-5"}, updated_by=None)
    with pytest.raises(ValueError, match="temprature"):
        await store.update_channel_settings(
            **KEYS, values={"model": "other", "temprature": 1.0}, updated_by=None
        )
    saved = await store.get_channel_settings(**KEYS)
    assert saved is not None
    assert saved.model == "gpt-5"


async def test_a_wrongly_typed_setting_is_refused_before_writing(store: Store) -> None:
    with pytest.raises(TypeError, match="max_output_tokens"):
        await store.update_channel_settings(
            **KEYS, values={"model": "gpt-5", "max_output_tokens": "lots"}, updated_by=None
        )
    with pytest.raises(TypeError, match="temperature"):
        await store.update_channel_settings(**KEYS, values={"temperature": True}, updated_by=None)
    assert await store.get_channel_settings(**KEYS) is None


async def test_reset_one_setting_then_all(store: Store) -> None:
    await store.update_channel_settings(
        **KEYS,
        values={
            "model": "gpt-5",
            "instructions": "Be kind.",
            "temperature": 1,
            "top_p": 0.9,
            "max_output_tokens": 500,
            "reasoning_effort": "low",
            "reasoning_summary": True,
            "truncation": "auto",
            "require_mention": False,
            "enabled": True,
            "daily_token_budget": 100_000,
            "workspace_daily_token_budget": 1_000_000,
            "user_hourly_requests": 30,
            "conversation_state": "transcript",
            "suggested_prompts": ["Summarise this channel"],
            "loading_messages": ["Brewing…"],
            "language": "ja",
            "mcp_servers": ["orders"],
            "hosted_tools": ["web_search"],
            "vector_store_ids": ["vs_1"],
        },
        updated_by="U_ADMIN",
    )

    one = await store.reset_channel_settings(**KEYS, fields=["instructions"])
    assert one is not None
    assert "instructions" not in one.overrides()
    assert set(one.overrides()) == set(SETTING_FIELDS) - {"instructions"}
    assert one.temperature == 1.0

    everything = await store.reset_channel_settings(**KEYS, updated_by="U_ADMIN")
    assert everything is not None
    assert everything.overrides() == {}
    assert await store.get_channel_settings(**KEYS) == everything


async def test_reset_refuses_unknown_names_and_ignores_missing_rows(store: Store) -> None:
    assert await store.reset_channel_settings(**KEYS) is None
    await store.update_channel_settings(**KEYS, values={"model": "gpt-5"}, updated_by=None)
    with pytest.raises(ValueError, match="nope"):
        await store.reset_channel_settings(**KEYS, fields=["model", "nope"])
    with pytest.raises(TypeError):
        await store.reset_channel_settings(**KEYS, fields="model")
    saved = await store.get_channel_settings(**KEYS)
    assert saved is not None
    assert saved.model == "gpt-5"


async def test_workspace_defaults_live_beside_channel_rows(store: Store) -> None:
    await store.update_channel_settings(
        team_id="T1",
        channel_id=WORKSPACE_DEFAULT_CHANNEL,
        values={"model": "workspace-model"},
        updated_by=None,
    )
    await store.update_channel_settings(**KEYS, values={"model": "channel-model"}, updated_by=None)

    workspace = await store.get_channel_settings(team_id="T1", channel_id="")
    channel = await store.get_channel_settings(**KEYS)
    assert workspace is not None
    assert channel is not None
    assert (workspace.model, channel.model) == ("workspace-model", "channel-model")
    assert await store.get_channel_settings(team_id="T2", channel_id="") is None


def test_the_settings_are_the_tables_columns_and_the_record_holds_each() -> None:
    # No per-setting code in storage: the names come from the table (a new setting is one
    # column and its migration; tests/core/test_settings_schema.py checks the schema agrees).
    columns = [c.name for c in ChannelSettings.__table__.columns]
    assert (
        tuple(
            c
            for c in columns
            if c not in {"id", "team_id", "channel_id", "updated_at", "updated_by"}
        )
        == SETTING_FIELDS
    )
    names = tuple(field.name for field in dataclasses.fields(ChannelSettingsRecord))
    assert names == ("team_id", "channel_id", "values", "updated_at", "updated_by")


async def test_the_new_settings_round_trip_with_their_types(store: Store) -> None:
    values = {
        "reasoning_summary": False,
        "truncation": "disabled",
        "require_mention": True,
        "enabled": False,
        "daily_token_budget": 0,
    }
    saved = await store.update_channel_settings(**KEYS, values=values, updated_by="U_ADMIN")
    read = await store.get_channel_settings(**KEYS)

    assert read == saved
    assert read is not None
    # False and 0 are settings, not "inherit".
    assert read.overrides() == values
    for name, value in values.items():
        assert type(getattr(read, name)) is type(value), name
    assert read.values["enabled"] is False

    again = await store.update_channel_settings(
        **KEYS,
        values={"enabled": True, "daily_token_budget": 250_000, "reasoning_summary": None},
        updated_by=None,
    )
    assert (again.enabled, again.daily_token_budget, again.reasoning_summary) == (
        True,
        250_000,
        None,
    )
    assert (again.truncation, again.require_mention) == ("disabled", True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("enabled", 1),
        ("enabled", 0),
        ("enabled", "true"),
        ("reasoning_summary", 1.0),
        ("daily_token_budget", True),
        ("daily_token_budget", 10.0),
        ("daily_token_budget", "1000"),
        ("truncation", False),
        ("max_output_tokens", False),
        ("top_p", True),
    ],
)
async def test_new_settings_take_only_their_own_type(
    store: Store, name: str, value: object
) -> None:
    with pytest.raises(TypeError, match=name):
        await store.update_channel_settings(
            **KEYS, values={"model": "gpt-5", name: value}, updated_by=None
        )
    assert await store.get_channel_settings(**KEYS) is None


async def test_list_channel_settings_returns_one_workspace_ordered_by_channel(
    store: Store,
) -> None:
    for team_id, channel_id in [("T1", "C2"), ("T1", ""), ("T2", "C1"), ("T1", "C1")]:
        await store.update_channel_settings(
            team_id=team_id,
            channel_id=channel_id,
            values={"model": f"{team_id}/{channel_id or 'workspace'}"},
            updated_by=None,
        )

    listed = await store.list_channel_settings(team_id="T1")

    assert [record.channel_id for record in listed] == ["", "C1", "C2"]
    assert [record.model for record in listed] == ["T1/workspace", "T1/C1", "T1/C2"]
    assert listed[1] == await store.get_channel_settings(team_id="T1", channel_id="C1")
    assert [record.model for record in await store.list_channel_settings(team_id="T2")] == ["T2/C1"]
    assert await store.list_channel_settings(team_id="T3") == []


@pytest.mark.parametrize(
    "values",
    [
        {"daily_token_budget": 3_000_000_000},
        {"user_hourly_requests": 10**30},
        {"instructions": "Be kind.\x00"},
        {"instructions": "Be kind.\ud800"},
    ],
)
async def test_a_value_no_column_holds_is_refused_the_same_on_every_engine(
    store: Store, values: dict[str, object]
) -> None:
    # PostgreSQL's integer is 32 bits and refuses NUL in text; SQLite would store the first
    # and third and overflow on 10**30. Both refuse all four up front, with the same error.
    await store.update_channel_settings(**KEYS, values={"temperature": 0.5}, updated_by="U1")
    with pytest.raises(ValueError, match=r"must be within|NUL character or a lone surrogate"):
        await store.update_channel_settings(**KEYS, values=values, updated_by="U1")
    saved = await store.get_channel_settings(**KEYS)
    assert saved is not None
    assert saved.overrides() == {"temperature": 0.5}
