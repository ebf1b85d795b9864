"""The settings form for the workspace's defaults (``/ai config default``, the Home tab's
"Edit workspace defaults"): every setting the workspace layer may hold, saved through the same
validate-and-save service as ``/ai set default``, admins only (checked again on submission) —
driven by signed requests exactly as Slack sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.channel_settings import SCHEMA
from bot.i18n import SUPPORTED
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_languages import QUOTA_NOTE, _failed_note
from tests.e2e.test_slash_command import ADMIN, MEMBER, command, interact, submission

WORKSPACE_FIELDS = [s.name for s in SCHEMA.on("workspace")]


@pytest.fixture
def people(bot: BotUnderTest) -> BotUnderTest:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.slack.add_user(MEMBER, name="max")
    return bot


def defaults_submission(
    user: str, values: dict[str, str | None], *, selects: dict[str, str] | None = None
) -> dict[str, Any]:
    """A submission of the workspace defaults' form (as ``settings_modal`` sends it)."""
    payload = submission(user, "", values, selects=selects)
    payload["view"]["private_metadata"] = json.dumps(
        {"team_id": "T1", "channel_id": "", "layer": "workspace"}
    )
    return payload


def _inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


async def _opened_view(bot: BotUnderTest, count: int = 1) -> dict[str, Any]:
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.open")) == count, timeout=5)
    view: dict[str, Any] = bot.slack.calls_to("views.open")[-1].params["view"]
    return view


async def test_an_admin_opens_the_form_with_every_workspace_field(people: BotUnderTest) -> None:
    bot = people
    assert await command(bot, "config default") == ""
    view = await _opened_view(bot)
    assert json.loads(view["private_metadata"]) == {
        "team_id": "T1",
        "channel_id": "",
        "layer": "workspace",
    }
    assert view["title"]["text"] == "Default settings"
    fields = _inputs(view)
    assert list(fields) == WORKSPACE_FIELDS
    # The workspace-only settings the channel form cannot hold are here.
    for name in ("language", "suggested_prompts", "loading_messages"):
        assert name in fields
    assert "workspace_daily_token_budget" in fields
    # A fixed list is a menu: inherit, auto and the nine languages.
    language = fields["language"]["element"]
    assert language["type"] == "static_select"
    assert [o["value"] for o in language["options"]] == ["__inherit__", "auto", *SUPPORTED]
    assert language["initial_option"]["value"] == "__inherit__"
    # A list is a multiline input; nothing is set yet, so the hint says what applies.
    prompts = fields["suggested_prompts"]
    assert prompts["element"]["type"] == "plain_text_input"
    assert prompts["element"]["multiline"] is True
    assert "initial_value" not in prompts["element"]
    assert "Summarise this channel" in prompts["hint"]["text"]
    assert "(service default)" in prompts["hint"]["text"]
    # The channel form, for comparison, holds none of the workspace-only settings.
    assert await command(bot, "config") == ""
    channel_view = await _opened_view(bot, 2)
    assert "language" not in _inputs(channel_view)
    assert json.loads(channel_view["private_metadata"])["layer"] == "channel"


async def test_a_non_admin_is_refused_and_no_form_opens(people: BotUnderTest) -> None:
    answer = await command(people, "config default", user=MEMBER)
    assert "only admins can change the model settings" in answer
    assert people.slack.calls_to("views.open") == []


async def test_an_unknown_config_word_is_explained_and_opens_nothing(
    people: BotUnderTest,
) -> None:
    answer = await command(people, "config everything")
    assert "I don't know `/ai config everything`" in answer
    assert "`/ai config default`" in answer
    assert people.slack.calls_to("views.open") == []
    assert "`/ai config default`: open the form for the workspace defaults" in await command(
        people, "help"
    )


async def test_a_submission_saves_the_workspace_row_with_audit_and_the_language_applies(
    people: BotUnderTest,
) -> None:
    bot = people
    bot.slack.add_user("UEN", name="eve", locale="en-US")
    status, text = await interact(
        bot,
        defaults_submission(
            ADMIN,
            {"suggested_prompts": "Summarise the week\nDraft a reply", "instructions": ""},
            selects={"language": "zh-CN", "reasoning_effort": "__inherit__"},
        ),
    )
    assert status == 200
    assert text in ("", "{}") or json.loads(text).get("response_action") != "errors", text
    row = await bot.service.store.get_channel_settings(team_id="T1", channel_id="")
    assert row is not None
    assert row.values["language"] == "zh-CN"
    prompts = row.values["suggested_prompts"]
    assert isinstance(prompts, list | tuple)
    assert list(prompts) == ["Summarise the week", "Draft a reply"]
    audit = await bot.service.store.list_settings_audit(team_id="T1", channel_id="")
    assert {row.field for row in audit} == {"language", "suggested_prompts"}
    assert {row.changed_by for row in audit} == {ADMIN}
    # No channel was touched.
    assert await bot.service.store.list_settings_audit(team_id="T1", channel_id="C1") == []

    # Someone whose Slack speaks English now gets the bot's notes in Chinese.
    assert QUOTA_NOTE["zh-CN"] in await _failed_note(bot, "UEN")

    # Opened again, the form shows what is saved, so saving it unchanged keeps it.
    assert await command(bot, "config default") == ""
    fields = _inputs(await _opened_view(bot))
    assert fields["language"]["element"]["initial_option"]["value"] == "zh-CN"
    assert (
        fields["suggested_prompts"]["element"]["initial_value"]
        == "Summarise the week\nDraft a reply"
    )


async def test_an_invalid_value_shows_on_its_field_and_nothing_is_saved(
    people: BotUnderTest,
) -> None:
    status, text = await interact(
        people,
        defaults_submission(
            ADMIN,
            {"workspace_daily_token_budget": "lots", "suggested_prompts": "Fine prompt"},
            selects={"language": "zh-CN"},
        ),
    )
    assert status == 200
    reply = json.loads(text)
    assert reply["response_action"] == "errors"
    assert list(reply["errors"]) == ["workspace_daily_token_budget"]
    assert "workspace_daily_token_budget" in reply["errors"]["workspace_daily_token_budget"]
    # Not half-saved: the valid language and prompt were not written either.
    store = people.service.store
    assert await store.get_channel_settings(team_id="T1", channel_id="") is None
    assert await store.list_settings_audit(team_id="T1") == []


async def test_a_forged_submission_by_a_non_admin_is_refused_on_the_server(
    people: BotUnderTest,
) -> None:
    # A well-formed workspace form, valid values, a claim to be the admin: the signed user is
    # not one.
    payload = defaults_submission(MEMBER, {"instructions": "Obey max"}, selects={"language": "ko"})
    payload["view"]["private_metadata"] = json.dumps(
        {"team_id": "T1", "channel_id": "", "layer": "workspace", "user": ADMIN}
    )
    status, text = await interact(people, payload)
    assert status == 200
    reply = json.loads(text)
    assert reply["response_action"] == "errors"
    assert "Only admins" in next(iter(reply["errors"].values()))
    store = people.service.store
    assert await store.get_channel_settings(team_id="T1", channel_id="") is None
    assert await store.list_settings_audit(team_id="T1") == []


async def test_a_channel_form_naming_no_channel_cannot_write_the_workspace_row(
    people: BotUnderTest,
) -> None:
    # An admin's channel form whose channel was blanked: refused, not taken for the defaults.
    payload = submission(ADMIN, "", {"instructions": "Everywhere now"})
    status, text = await interact(people, payload)
    assert status == 200
    assert json.loads(text)["response_action"] == "errors"
    assert await people.service.store.get_channel_settings(team_id="T1", channel_id="") is None


async def test_the_home_tab_offers_the_defaults_form_to_admins_only(people: BotUnderTest) -> None:
    bot = people
    for user, channel in ((ADMIN, "D1"), (MEMBER, "D2")):
        await bot.send_event({"type": "app_home_opened", "user": user, "channel": channel})
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.publish")) == 2, timeout=5)
    published = {c.params["user_id"]: c.params["view"] for c in bot.slack.calls_to("views.publish")}

    def buttons(view: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            element
            for block in view["blocks"]
            if block["type"] == "actions"
            for element in block["elements"]
        ]

    [button] = buttons(published[ADMIN])
    assert button["action_id"] == "edit_workspace_defaults"
    assert button["text"]["text"] == "Edit workspace defaults"
    assert buttons(published[MEMBER]) == []

    # Pressed by someone who is not an admin (a forged press): nothing opens.
    press = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": MEMBER},
        "api_app_id": "A1",
        "trigger_id": "tr-member",
        "actions": [{"action_id": "edit_workspace_defaults", "type": "button"}],
    }
    assert (await interact(bot, press))[0] == 200
    press.update(user={"id": ADMIN}, trigger_id="tr-admin")
    assert (await interact(bot, press))[0] == 200
    view = await _opened_view(bot)
    assert [c.params["trigger_id"] for c in bot.slack.calls_to("views.open")] == ["tr-admin"]
    assert json.loads(view["private_metadata"])["layer"] == "workspace"
    assert list(_inputs(view)) == WORKSPACE_FIELDS


async def test_the_defaults_form_opens_in_the_askers_language(bot: BotUnderTest) -> None:
    bot.slack.add_user("UJA", name="hana", locale="ja-JP", is_admin=True)
    assert await command(bot, "config default", user="UJA") == ""
    view = await _opened_view(bot)
    assert view["title"]["text"] == "デフォルト設定"
    assert "このワークスペースの全チャンネルのデフォルト" in view["blocks"][0]["text"]["text"]
    labels = [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"]
    assert "モデル" in labels
