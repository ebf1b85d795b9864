"""Channel settings: admins change some settings, the rest keep inheriting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import SETTING_FIELDS, WORKSPACE_DEFAULT_CHANNEL, Store
from tests.storage import BACKENDS, Databases

KEYS = {"team_id": "T1", "channel_id": "C1"}


@pytest.fixture(params=BACKENDS)
async def databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Databases]:
    async with Databases.migrated(request.param, tmp_path) as databases:
        yield databases


@pytest.fixture
def store(databases: Databases) -> Store:
    return databases.store()


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
