"""The one validate-and-save service, and the Slack surfaces derived from the schema.

In-memory fakes of the store and the admin check (the store's own behaviour is tested against
real databases in tests/storage); these check the editor's rules and that the command, the
form and the Home tab take a new kind of setting from one schema entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.channel_settings import (
    OPERATOR,
    WORKSPACE_DEFAULTS,
    Actor,
    InvalidSettings,
    NotAllowed,
    SettingsEditor,
    StoredChannelSettings,
    WrongLayer,
)
from bot.slack.commands import SettingsCommands
from bot.slack.views import home_view, parse_submission, settings_modal
from tests.core.test_settings_schema import LISTS

ADMIN, MEMBER = "UADMIN", "UMEMBER"


@dataclass
class Row:
    team_id: str
    channel_id: str
    values: dict[str, Any]
    updated_by: str | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class MemoryStore:
    """Rows by (team, channel) and an audit list; the fields come from the schema given."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.rows: dict[tuple[str, str], Row] = {}
        self.audit: list[tuple[str, str, str, Any, Any, str | None]] = []

    async def get_channel_settings(self, *, team_id: str, channel_id: str) -> Row | None:
        return self.rows.get((team_id, channel_id))

    async def update_channel_settings(
        self, *, team_id: str, channel_id: str, values: Mapping[str, object], updated_by: str | None
    ) -> Row:
        row = self.rows.setdefault(
            (team_id, channel_id), Row(team_id, channel_id, dict.fromkeys(self.names))
        )
        for name, value in values.items():
            if row.values[name] != value:
                self.audit.append((team_id, channel_id, name, row.values[name], value, updated_by))
                row.values[name] = value
        row.updated_by = updated_by
        return row

    async def reset_channel_settings(
        self,
        *,
        team_id: str,
        channel_id: str,
        fields: Sequence[str] | None = None,
        updated_by: str | None = None,
    ) -> Row | None:
        if (team_id, channel_id) not in self.rows:
            return None
        return await self.update_channel_settings(
            team_id=team_id,
            channel_id=channel_id,
            values=dict.fromkeys(fields or self.names),
            updated_by=updated_by,
        )

    async def list_settings_audit(self, **_: Any) -> list[Any]:
        return []

    async def usage_since(self, **_: Any) -> list[Any]:
        return []


class Admins:
    listed = frozenset({ADMIN})

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def may_change(self, user_id: str, *, team_id: str) -> bool:
        self.asked.append(user_id)
        return user_id in self.listed

    def who_can_change(self) -> str:
        return "Workspace admins and owners can change these settings."


class Catalogue:
    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allowed = tuple(allowed)


def editor(store: MemoryStore, allowed: Sequence[str] = (), **kwargs: Any) -> SettingsEditor:
    return SettingsEditor(store=store, admins=Admins(), allowed_models=allowed, **kwargs)


async def test_only_admins_change_and_nothing_is_saved_otherwise() -> None:
    store = MemoryStore(["model", "temperature"])
    with pytest.raises(NotAllowed):
        await editor(store).change(
            Actor.slack(MEMBER), team_id="T1", channel_id="C1", typed={"temperature": "0.2"}
        )
    assert store.rows == {}
    saved = await editor(store).change(
        Actor.slack(ADMIN), team_id="T1", channel_id="C1", typed={"temperature": "0.2"}
    )
    assert saved == {"temperature": 0.2}
    assert store.audit == [("T1", "C1", "temperature", None, 0.2, ADMIN)]
    # The operator's CLI needs no Slack check and is recorded as "cli".
    await SettingsEditor(store=store, admins=None).change(
        OPERATOR, team_id="T1", channel_id="C1", typed={"temperature": "1"}
    )
    assert store.audit[-1][-1] == "cli"
    # An editor with no admin check refuses every Slack user (fails closed).
    assert not await SettingsEditor(store=store, admins=None).may_edit(
        Actor.slack(ADMIN), team_id="T1"
    )


async def test_every_bad_value_is_named_and_none_is_saved() -> None:
    store = MemoryStore(["model", "temperature", "max_output_tokens"])
    with pytest.raises(InvalidSettings) as caught:
        await editor(store).change(
            Actor.slack(ADMIN),
            team_id="T1",
            channel_id="C1",
            typed={"model": "fine", "temperature": "9", "max_output_tokens": "x"},
        )
    assert set(caught.value.errors) == {"temperature", "max_output_tokens"}
    assert "temperature must be a number from 0 to 2" in str(caught.value)
    assert store.rows == {}


async def test_the_allow_list_refuses_new_models_but_keeps_the_current_one() -> None:
    store = MemoryStore(["model", "temperature"])
    await store.update_channel_settings(
        team_id="T1", channel_id="C1", values={"model": "legacy"}, updated_by="cli"
    )
    strict = editor(store, allowed=["gpt-a"])
    with pytest.raises(InvalidSettings, match="allowed models: gpt-a"):
        await strict.change(OPERATOR, team_id="T1", channel_id="C1", typed={"model": "gpt-z"})
    # Saving the form with the model untouched is no change: it passes.
    await strict.change(
        OPERATOR, team_id="T1", channel_id="C1", typed={"model": "legacy", "temperature": "0.3"}
    )
    assert store.rows["T1", "C1"].values == {"model": "legacy", "temperature": 0.3}


async def test_a_list_valued_workspace_only_setting_saves_shows_and_round_trips() -> None:
    store = MemoryStore(LISTS.names)
    edit = editor(store, schema=LISTS)
    with pytest.raises(InvalidSettings) as caught:
        await edit.change(
            Actor.slack(ADMIN), team_id="T1", channel_id="C1", typed={"suggested_prompts": "Hi"}
        )
    assert isinstance(caught.value.errors["suggested_prompts"], WrongLayer)
    saved = await edit.change(
        Actor.slack(ADMIN),
        team_id="T1",
        channel_id=WORKSPACE_DEFAULTS,
        typed={"suggested_prompts": "Summarise this\nWhat changed, and why?"},
    )
    assert saved == {"suggested_prompts": ("Summarise this", "What changed, and why?")}
    await edit.change(
        Actor.slack(ADMIN), team_id="T1", channel_id="C1", typed={"mcp_servers": "orders,admin"}
    )

    settings = StoredChannelSettings(store=store, schema=LISTS)
    effective = await settings.effective(team_id="T1", channel_id="C1")
    assert effective.sources["suggested_prompts"] == "workspace"
    assert effective.mcp_servers == ("orders", "admin")

    # The slash command: help, set and show all come from the schema.
    commands = SettingsCommands(
        command="/ai",
        store=store,
        settings=settings,
        admins=Admins(),  # type: ignore[arg-type]
        catalogue=Catalogue(),  # type: ignore[arg-type]
        schema=LISTS,
    )
    assert "`suggested_prompts`: prompts offered in a new conversation" in commands.help()
    answer = await commands.handle(
        text="set suggested_prompts Hello", team_id="T1", channel_id="C1", user_id=ADMIN
    )
    assert "use /ai set default suggested_prompts VALUE" in answer.text
    shown = await commands.show("T1", "C1")
    assert "`suggested_prompts`: Summarise this, What changed, and why? _(workspace" in shown
    assert "`mcp_servers`: orders, admin _(set for this channel)_" in shown

    # The form edits the channel: the workspace-only list is not on it; the channel's list is
    # shown exactly and an untouched save gives back the same values.
    view = settings_modal(
        team_id="T1", channel_id="C1", settings=effective, models=None, schema=LISTS
    )
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert "suggested_prompts" not in blocks
    element = blocks["mcp_servers"]["element"]
    assert element["initial_value"] == "orders,admin"
    state = {
        name: {"value": {"type": "plain_text_input", "value": b["element"].get("initial_value")}}
        for name, b in blocks.items()
        if name
    }
    typed = parse_submission(state, LISTS)
    assert typed == {"model": None, "mcp_servers": "orders,admin"}
    before = list(store.audit)
    await edit.change(Actor.slack(ADMIN), team_id="T1", channel_id="C1", typed=typed)
    assert store.audit == before

    # The Home tab shows the workspace's list among its defaults.
    defaults = await settings.effective(team_id="T1", channel_id=WORKSPACE_DEFAULTS)
    home = home_view(
        defaults=defaults,
        rows=[],
        last_changes={},
        is_admin=True,
        who_can_change="",
        visible=frozenset(),
        schema=LISTS,
    )
    assert "`suggested_prompts`: Summarise this, What changed, and why?" in json.dumps(home)
