"""Channel settings from inside Slack: the slash command, the modal, the Home tab, who may
change what, and the audit trail — driven by signed requests exactly as Slack sends them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown, sign, slash_command

ADMIN = "UADMIN"
MEMBER = "UMEMBER"


async def command(
    bot: BotUnderTest,
    text: str,
    *,
    user: str = ADMIN,
    channel: str = "C1",
    name: str = "/ai",
) -> str:
    """Send ``/ai text`` as Slack does; return the ephemeral answer's text ('' if none).

    The command is acknowledged at once with an empty body; the answer arrives through the
    command's ``response_url``."""
    status, ack, answer = await slash_command(bot, text, user=user, channel=channel, name=name)
    assert (status, ack) == (200, ""), ack
    return answer


async def interact(bot: BotUnderTest, payload: dict[str, Any]) -> tuple[int, str]:
    """A signed interactivity request (view submission, button)."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return await bot.post_raw(
        body, {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    )


def submission(
    user: str, channel: str, values: dict[str, str | None], *, selects: dict[str, str] | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for field, value in values.items():
        state[field] = {"value": {"type": "plain_text_input", "value": value}}
    for field, choice in (selects or {}).items():
        state[field] = {"value": {"type": "static_select", "selected_option": {"value": choice}}}
    return {
        "type": "view_submission",
        "team": {"id": "T1", "domain": "fake"},
        "user": {"id": user, "team_id": "T1"},
        "api_app_id": "A1",
        "trigger_id": "t",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "channel_settings",
            "private_metadata": json.dumps({"team_id": "T1", "channel_id": channel}),
            "state": {"values": state},
        },
    }


@pytest.fixture
def people(bot: BotUnderTest) -> BotUnderTest:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.slack.add_user(MEMBER, name="max")
    return bot


async def test_an_admin_changes_model_and_instructions_and_the_next_turn_uses_them(
    people: BotUnderTest,
) -> None:
    bot = people
    root, _ = await bot.mention("before")
    await bot.wait_replies("C1", root, 1)

    answer = await command(bot, "set model gpt-special")
    assert "`model` is now gpt-special" in answer
    answer = await command(bot, "set instructions Answer like a pirate, briefly.")
    assert "instructions" in answer

    # Takes effect at once, in the existing thread too (instructions go on every turn).
    await bot.reply("after", thread_ts=root)
    await bot.wait_replies("C1", root, 2)
    before, after = bot.model_bodies()
    assert before["model"] == "test-model"
    assert after["model"] == "gpt-special"
    assert after["instructions"] == "Answer like a pirate, briefly."
    assert after["previous_response_id"] == bot.model.response_ids[0]


async def test_admin_user_ids_may_change_settings(start_bot: StartBot) -> None:
    bot = await start_bot(admin_user_ids="U7, U8")
    assert "now 0.2" in await command(bot, "set temperature 0.2", user="U8")
    # Listed users need no admin lookup: the one users.info asks the asker's language (the
    # answer is in it), and an admin check would have read that same cached answer.
    [lookup] = bot.slack.calls_to("users.info")
    assert lookup.params == {"user": "U8", "include_locale": "1"}
    ts, _ = await bot.mention("hi")
    await bot.wait_replies("C1", ts, 1)
    assert bot.model_bodies()[0]["temperature"] == 0.2


async def test_a_workspace_default_applies_where_a_channel_has_none(people: BotUnderTest) -> None:
    bot = people
    await command(bot, "set default model ws-model")
    await command(bot, "set model c1-model", channel="C1")
    a, _ = await bot.mention("in C1", channel="C1")
    await bot.wait_replies("C1", a, 1)
    b, _ = await bot.mention("in C2", channel="C2")
    await bot.wait_replies("C2", b, 1)
    assert [body["model"] for body in bot.model_bodies()] == ["c1-model", "ws-model"]
    shown_c2 = await command(bot, "show", user=MEMBER, channel="C2")
    assert "`model`: ws-model _(workspace default)_" in shown_c2


async def test_a_non_admin_is_refused_politely_and_nothing_changes(people: BotUnderTest) -> None:
    bot = people
    answer = await command(bot, "set model gpt-evil", user=MEMBER)
    assert answer.startswith("Sorry, only admins can change")
    assert "Workspace admins and owners" in answer
    assert "`model`: test-model" in answer  # everyone may view
    assert await bot.service.store.get_channel_settings(team_id="T1", channel_id="C1") is None
    assert await bot.service.store.list_settings_audit(team_id="T1") == []
    # The modal is refused the same way.
    assert (await command(bot, "config", user=MEMBER)).startswith("Sorry")
    assert bot.slack.calls_to("views.open") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("set colour blue", "unknown setting 'colour'"),
        ("set temperature 3", "temperature must be a number from 0 to 2"),
        ("set max_output_tokens -1", "max_output_tokens must be a whole number from 16"),
        ("set reasoning_effort extreme", "reasoning_effort must be one of low, medium, high"),
        ("set instructions " + "x" * 3001, "instructions must be at most 3,000 characters"),
        ("set daily_token_budget -5", "daily_token_budget must be a whole number"),
        ("set enabled maybe", "enabled must be on or off"),
        ("set temperature", "usage: /ai set [default] FIELD VALUE"),
    ],
)
async def test_invalid_values_are_refused_with_their_range_and_nothing_is_saved(
    people: BotUnderTest, text: str, message: str
) -> None:
    answer = await command(people, text)
    assert message in answer
    assert "Nothing was saved" in answer
    assert await people.service.store.get_channel_settings(team_id="T1", channel_id="C1") is None


async def test_reset_history_and_usage(people: BotUnderTest) -> None:
    bot = people
    await command(bot, "set temperature 0.5")
    await command(bot, "set temperature 0.7")
    answer = await command(bot, "reset temperature")
    assert "Reset `temperature`" in answer
    history = await command(bot, "history", user=MEMBER)
    assert history.count("`temperature`") == 3
    assert "0.7 → not set" in history
    assert f"<@{ADMIN}>" in history
    ts, _ = await bot.mention("count tokens")
    await bot.wait_replies("C1", ts, 1)
    usage = await command(bot, "usage", user=MEMBER)
    assert "today:" in usage
    assert "today: 0" not in usage


async def test_the_modal_opens_with_models_from_the_endpoint_and_the_allow_list(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(allowed_models="gpt-a,gpt-c,gpt-z")
    bot.slack.add_user(ADMIN, name="ada", is_owner=True)
    bot.model.models = ["gpt-a", "gpt-b", "gpt-c"]
    assert await command(bot, "") == ""  # acknowledged empty; the modal opens instead
    await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"), timeout=5)
    [call] = bot.slack.calls_to("views.open")
    assert call.params["trigger_id"] == f"trigger-{ADMIN}"
    view = call.params["view"]
    assert view["callback_id"] == "channel_settings"
    model_block = next(b for b in view["blocks"] if b.get("block_id") == "model")
    options = [o["value"] for o in model_block["element"]["options"]]
    assert options[1:] == ["gpt-a", "gpt-c"]  # listed by the endpoint AND allowed
    # Cached: a second open does not ask the endpoint again.
    await command(bot, "config")
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.open")) == 2, timeout=5)
    assert bot.model.model_list_requests == 1


async def test_without_a_model_list_the_modal_offers_free_text(people: BotUnderTest) -> None:
    bot = people
    bot.model.models = []
    await command(bot, "config")
    await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"), timeout=5)
    view = bot.slack.calls_to("views.open")[0].params["view"]
    model_block = next(b for b in view["blocks"] if b.get("block_id") == "model")
    assert model_block["element"]["type"] == "plain_text_input"


async def test_a_modal_submission_saves_and_the_next_turn_uses_it(people: BotUnderTest) -> None:
    bot = people
    status, text = await interact(
        bot,
        submission(
            ADMIN,
            "C1",
            {"instructions": "Be terse.", "max_output_tokens": "512", "temperature": ""},
            selects={"model": "gpt-modal", "reasoning_effort": "__inherit__"},
        ),
    )
    assert status == 200
    assert text in ("", "{}") or json.loads(text).get("response_action") != "errors"
    ts, _ = await bot.mention("hi")
    await bot.wait_replies("C1", ts, 1)
    body = bot.model_bodies()[0]
    assert (body["model"], body["instructions"], body["max_output_tokens"]) == (
        "gpt-modal",
        "Be terse.",
        512,
    )
    assert "temperature" not in body
    audit = await bot.service.store.list_settings_audit(team_id="T1", channel_id="C1")
    assert {row.field for row in audit} == {"model", "instructions", "max_output_tokens"}
    assert {row.changed_by for row in audit} == {ADMIN}


async def test_an_invalid_modal_submission_shows_errors_on_the_fields(
    people: BotUnderTest,
) -> None:
    status, text = await interact(
        people, submission(ADMIN, "C1", {"temperature": "9", "instructions": "fine"})
    )
    assert status == 200
    reply = json.loads(text)
    assert reply["response_action"] == "errors"
    assert "temperature must be a number from 0 to 2" in reply["errors"]["temperature"]
    assert await people.service.store.get_channel_settings(team_id="T1", channel_id="C1") is None


async def test_a_submission_by_a_non_admin_is_refused_whatever_the_payload_says(
    people: BotUnderTest,
) -> None:
    # The form claims another channel and carries valid values; the signed user is no admin.
    payload = submission(MEMBER, "C9", {"instructions": "I am the admin now"})
    payload["view"]["private_metadata"] = json.dumps({"channel_id": "C9", "user": ADMIN})
    status, text = await interact(people, payload)
    assert status == 200
    assert json.loads(text)["response_action"] == "errors"
    assert await people.service.store.get_channel_settings(team_id="T1", channel_id="C9") is None


async def test_the_home_tab_lists_configured_channels_with_edit_buttons_for_admins(
    people: BotUnderTest,
) -> None:
    bot = people
    bot.slack.add_channel("C5", members=[ADMIN, MEMBER])
    await command(bot, "set model home-model", channel="C5")
    await bot.send_event({"type": "app_home_opened", "user": ADMIN, "channel": "D1", "tab": "home"})
    await bot.slack.wait_for(lambda: bot.slack.calls_to("views.publish"), timeout=5)
    await bot.send_event(
        {"type": "app_home_opened", "user": MEMBER, "channel": "D2", "tab": "home"}
    )
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.publish")) == 2, timeout=5)
    admin_view, member_view = (c.params["view"] for c in bot.slack.calls_to("views.publish"))
    assert bot.slack.calls_to("views.publish")[0].params["user_id"] == ADMIN
    text = json.dumps(admin_view)
    assert "<#C5>" in text
    assert "home-model" in text
    assert "last change" in text
    buttons = [b["accessory"] for b in admin_view["blocks"] if "accessory" in b]
    assert [b["value"] for b in buttons] == ["C5"]
    assert not [b for b in member_view["blocks"] if "accessory" in b]

    # The Edit button opens the modal for an admin, and does nothing for anyone else.
    button_press = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": MEMBER},
        "api_app_id": "A1",
        "trigger_id": "tr-1",
        "actions": [{"action_id": "edit_channel_settings", "value": "C5", "type": "button"}],
    }
    assert (await interact(bot, button_press))[0] == 200
    button_press["user"] = {"id": ADMIN}
    assert (await interact(bot, button_press))[0] == 200
    await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"), timeout=5)
    [opened] = bot.slack.calls_to("views.open")
    assert json.loads(opened.params["view"]["private_metadata"])["channel_id"] == "C5"


async def test_switching_the_bot_off_requiring_mentions_and_the_daily_budget(
    people: BotUnderTest,
) -> None:
    bot = people
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)

    await command(bot, "set require_mention on")
    await bot.reply("no mention: ignored", thread_ts=root)
    await bot.mention("with a mention: answered", thread_ts=root)
    await bot.wait_replies("C1", root, 2)

    await command(bot, "set daily_token_budget 1")
    await bot.mention("over budget", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 3)
    assert "daily budget" in shown(replies[2])

    await command(bot, "set enabled off")
    off, _ = await bot.mention("anyone there?")
    await bot.wait_idle()
    assert bot.slack.bot_replies("C1", off) == []
    assert [b["input"][-1]["content"] for b in bot.model_bodies()] == [
        "U1: start",
        "U1: with a mention: answered",
    ]


async def test_the_command_name_comes_from_settings(start_bot: StartBot) -> None:
    bot = await start_bot(slack_command="/gpt")
    assert "/gpt show" in await command(bot, "help", name="/gpt")
