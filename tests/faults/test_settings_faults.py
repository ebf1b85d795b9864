"""Settings are never lost or half-applied (issue 11, case 6; and case 9 for text settings).

Driven as Slack and an operator drive it: signed slash commands (answered through a
``response_url`` on the fake Slack), the settings modal opened through ``views.open`` (the fake
refuses views Slack would refuse) and submitted back, the CLI as a real process. Each test
asserts what the person is told and what the database holds afterwards.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.channel_settings import MAX_INSTRUCTIONS_CHARS
from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, run_cli, sign, slash_command
from tests.e2e.test_slash_command import ADMIN, MEMBER, interact, submission

REPO = Path(__file__).resolve().parents[2]
INT_RANGE = "from 0 to 2,147,483,647"
TOO_BIG = ("3000000000", "1" + "0" * 30)


@pytest.fixture
def people(bot: BotUnderTest) -> BotUnderTest:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.slack.add_user(MEMBER, name="max")
    return bot


async def command(bot: BotUnderTest, text: str, *, channel: str = "C1") -> str:
    """``/ai text`` by the admin: the answer, however it came back."""
    status, _, answer = await slash_command(bot, text, user=ADMIN, channel=channel)
    assert status == 200
    return answer


async def stored(bot: BotUnderTest, channel: str = "C1") -> dict[str, Any]:
    record = await bot.service.store.get_channel_settings(team_id="T1", channel_id=channel)
    return {} if record is None else record.overrides()


async def open_modal(bot: BotUnderTest) -> dict[str, Any]:
    """``/ai config`` as the admin; the view Slack accepted."""
    before = len(bot.slack.calls_to("views.open"))
    assert await command(bot, "config") == ""
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.open")) > before, timeout=5)
    call = bot.slack.calls_to("views.open")[-1]
    assert call.ok, call.response  # Slack's Block Kit limits hold (the fake checks them)
    view: dict[str, Any] = call.response["view"]
    return view


def untouched(view: dict[str, Any]) -> dict[str, Any]:
    """``view.state.values`` as Slack sends it when the person presses Save at once."""
    state: dict[str, Any] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        if element["type"] == "static_select":
            value = {"type": "static_select", "selected_option": element.get("initial_option")}
        else:
            value = {"type": "plain_text_input", "value": element.get("initial_value")}
        state[block["block_id"]] = {"value": value}
    return state


async def submit(bot: BotUnderTest, view: dict[str, Any], state: dict[str, Any]) -> str:
    payload = submission(ADMIN, "C1", {})
    payload["view"]["private_metadata"] = view["private_metadata"]
    payload["view"]["state"] = {"values": state}
    status, text = await interact(bot, payload)
    assert status == 200, text
    return text


def cli_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "DEFAULT_", "DATABASE_", "ALLOWED_", "LOG_"))
    }
    env.update(
        PYTHONPATH=str(REPO),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        DEFAULT_MODEL="test-model",
    )
    env.update(values)
    return env


# ------------------------------------------------------------------ the modal round-trips


async def test_saving_the_modal_untouched_changes_nothing(people: BotUnderTest) -> None:
    bot = people
    bot.model.models = ["gpt-a", "gpt-b"]
    instructions = ("Answer in haiku.\n" * 1000)[: MAX_INSTRUCTIONS_CHARS - 1] + "!"
    assert len(instructions) == MAX_INSTRUCTIONS_CHARS
    for text in (
        "set model custom-model",  # not in the endpoint's list
        f"set instructions {instructions}",
        "set temperature 0.1234567",
        "set top_p 0.95",
        "set reasoning_effort high",
        "set require_mention on",
        "set daily_token_budget 123456",
    ):
        assert "is now" in await command(bot, text), text
    before = await stored(bot)
    audit_before = await bot.service.store.list_settings_audit(team_id="T1", limit=100)

    view = await open_modal(bot)
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    instructions_input = blocks["instructions"]["element"]
    # The modal's limit is the setting's limit: whatever can be set can be shown whole.
    assert instructions_input["max_length"] == MAX_INSTRUCTIONS_CHARS
    answer = await submit(bot, view, untouched(view))

    assert answer in ("", "{}"), answer
    assert await stored(bot) == before
    assert before["instructions"] == instructions
    assert before["model"] == "custom-model"
    assert before["temperature"] == 0.1234567
    assert await bot.service.store.list_settings_audit(team_id="T1", limit=100) == audit_before


async def test_a_model_outside_allowed_models_survives_a_save_of_other_fields(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(allowed_models="gpt-a,gpt-b")
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.model.models = ["gpt-a", "gpt-b"]
    # Set before the allow-list was narrowed (as an operator's old CLI did).
    await bot.service.store.update_channel_settings(
        team_id="T1", channel_id="C1", values={"model": "legacy-model"}, updated_by="cli"
    )
    view = await open_modal(bot)
    state = untouched(view)
    state["temperature"] = {"value": {"type": "plain_text_input", "value": "0.3"}}
    answer = await submit(bot, view, state)

    assert answer in ("", "{}"), answer
    assert await stored(bot) == {"model": "legacy-model", "temperature": 0.3}
    # Picking a model outside the list is still refused.
    model = next(b for b in view["blocks"] if b.get("block_id") == "model")
    state["model"] = {
        "value": {
            "type": "static_select",
            "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": "gpt-z"},
        }
    }
    refused = json.loads(await submit(bot, view, state))
    assert refused["response_action"] == "errors"
    assert "allowed models: gpt-a, gpt-b" in refused["errors"]["model"]
    assert model["element"]["type"] == "static_select"


async def test_values_the_form_cannot_hold_are_shown_read_only_and_kept(
    people: BotUnderTest,
) -> None:
    bot = people
    bot.model.models = ["gpt-a"]
    long_model = "m" * 160  # a valid name, longer than a menu option may be (150)
    legacy = "Old, long instructions." * 261  # 6,003 characters, from before the limit
    await bot.service.store.update_channel_settings(
        team_id="T1",
        channel_id="C1",
        values={"model": long_model, "instructions": legacy.strip()},
        updated_by="cli",
    )
    view = await open_modal(bot)  # Slack accepts it: no input or option breaks a limit
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks["instructions"]["type"] == "section"  # shown, not editable here
    assert "6,003 characters" in blocks["instructions"]["text"]["text"]
    assert blocks["model"]["element"]["initial_value"] == long_model
    state = untouched(view)
    assert "instructions" not in state
    state["top_p"] = {"value": {"type": "plain_text_input", "value": "0.5"}}
    assert await submit(bot, view, state) in ("", "{}")
    assert await stored(bot) == {
        "model": long_model,
        "instructions": legacy.strip(),
        "top_p": 0.5,
    }


# ------------------------------------------------------- out-of-range values, every path


@pytest.mark.parametrize("value", TOO_BIG)
async def test_an_out_of_range_budget_is_refused_with_the_range_in_slack(
    people: BotUnderTest, value: str
) -> None:
    bot = people
    answer = await command(bot, f"set daily_token_budget {value}")
    assert INT_RANGE in answer
    assert "Nothing was saved" in answer

    reply = json.loads(
        (await interact(bot, submission(ADMIN, "C1", {"user_hourly_requests": value})))[1]
    )
    assert reply["response_action"] == "errors"
    assert INT_RANGE in reply["errors"]["user_hourly_requests"]
    assert await stored(bot) == {}


@pytest.mark.parametrize("value", TOO_BIG)
async def test_an_out_of_range_budget_is_refused_by_the_cli_with_exit_2(
    tmp_path: Path, value: str
) -> None:
    env = cli_env(tmp_path)
    code, out, err = await run_cli(
        ["config", "set", "--channel", "C1", "--team", "T1", "--daily-token-budget", value],
        env,
        tmp_path,
    )
    assert code == 2, out + err
    assert "Traceback" not in err
    assert INT_RANGE in err
    assert "Nothing was saved" in err
    code, out, _ = await run_cli(
        ["config", "show", "--channel", "C1", "--team", "T1"], env, tmp_path
    )
    assert code == 0
    [line] = [x for x in out.splitlines() if x.strip().startswith("daily_token_budget")]
    assert line.endswith("[default]")


# --------------------------------------------------- control characters in text settings


@pytest.mark.parametrize(
    "typed", ["Be kind.\x00Always.", "Be kind.\x1b[2J", "Be kind.\x07", "Be kind.\x85Always."]
)
async def test_control_characters_in_instructions_are_refused_in_slack(
    people: BotUnderTest, typed: str
) -> None:
    bot = people
    answer = await command(bot, f"set instructions {typed}")
    assert "instructions must be text without control characters" in answer
    assert "Nothing was saved" in answer
    reply = json.loads((await interact(bot, submission(ADMIN, "C1", {"instructions": typed})))[1])
    assert "control characters" in reply["errors"]["instructions"]
    assert await stored(bot) == {}


async def test_a_lone_surrogate_in_the_modal_is_refused_with_a_clear_error(
    people: BotUnderTest,
) -> None:
    # Slack's JSON may carry "\ud800": json.loads makes it a lone surrogate, which no database
    # driver can encode.
    payload = submission(ADMIN, "C1", {"instructions": "Be kind.", "model": "gpt-x"})
    raw = json.dumps(payload).replace("Be kind.", "Be kind.\\ud800")
    status, text = await interact(people, json.loads(raw))
    assert status == 200
    reply = json.loads(text)
    assert reply["response_action"] == "errors"
    assert "U+D800" in reply["errors"]["instructions"]
    assert await stored(people) == {}


async def test_the_cli_refuses_control_characters_and_undecodable_arguments(
    tmp_path: Path,
) -> None:
    env = cli_env(tmp_path)
    base = ["config", "set", "--channel", "C1", "--team", "T1"]
    # "\udcff" is how Python hands over an argument byte that is not UTF-8 (0xff).
    for args in (["--instructions", "Be kind.\udcff"], ["--model", "gpt\x1b[2J"]):
        code, out, err = await run_cli(base + args, env, tmp_path)
        assert code == 2, out + err
        assert "Traceback" not in err
        assert "control characters" in err
        assert "\x1b" not in err


# ----------------------------------------------------- ack first, then the slow work


async def post_command(bot: BotUnderTest, url: str, text: str) -> tuple[int, str, float]:
    """POST a signed ``/ai text`` answering to ``url``: (status, ack body, seconds taken)."""
    body = urlencode(
        {
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": ADMIN,
            "command": "/ai",
            "text": text,
            "api_app_id": "A1",
            "response_url": url,
            "trigger_id": "trigger",
        }
    ).encode()
    started = time.monotonic()
    status, ack = await bot.post_raw(
        body, {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    )
    return status, ack, time.monotonic() - started


async def test_a_slow_admin_lookup_is_acknowledged_at_once_and_answered_later(
    people: BotUnderTest,
) -> None:
    bot = people
    bot.slack.slow_next("users.info", 4.0)  # longer than Slack's 3-second window
    url = bot.slack.response_url()
    status, ack, took = await post_command(bot, url, "set model gpt-slow")

    assert (status, ack) == (200, "")
    assert took < 2.0  # acknowledged before the lookup, well inside Slack's 3 seconds
    await bot.slack.wait_for(lambda: bot.slack.responses_to(url), timeout=10)
    [answer] = bot.slack.responses_to(url)
    assert answer["response_type"] == "ephemeral"
    assert "`model` is now gpt-slow" in answer["text"]
    assert await stored(bot) == {"model": "gpt-slow"}


async def test_a_command_slack_gave_up_on_changes_nothing(people: BotUnderTest) -> None:
    bot = people
    # Bolt asks auth.test once, before the first listener runs: slow, it pushes the ack past
    # Slack's 3 seconds, so Slack tells the person the command failed.
    bot.slack.slow_next("auth.test", 3.5)
    url = bot.slack.response_url()
    status, ack, took = await post_command(bot, url, "set model gpt-too-late")
    assert took >= 3.0
    assert status != 200 or not ack  # no answer reached Slack in its window
    await bot.slack.wait_for(lambda: bot.slack.responses_to(url), timeout=10)
    [told] = bot.slack.responses_to(url)
    assert "did nothing" in told["text"]
    assert await stored(bot) == {}
    assert await bot.service.store.list_settings_audit(team_id="T1") == []
    # The next command, in time, works.
    assert "`model` is now gpt-ok" in await command(bot, "set model gpt-ok")


# ------------------------------------------------------ what was typed is what is used


async def test_command_text_reaches_the_model_as_typed(people: BotUnderTest) -> None:
    bot = people
    # Slack sends "&", "<" and ">" as entities; "&lt;" typed literally arrives as "&amp;lt;".
    typed = "set instructions Answer about R&amp;D and &lt;code&gt; tags; write &amp;lt; as is."
    answer = await command(bot, typed)
    # Echoed back escaped again, so Slack shows it literally (no link, no broadcast).
    assert "is now Answer about R&amp;D and &lt;code&gt; tags; write &amp;lt; as is." in answer
    ts, _ = await bot.mention("hi")
    await bot.wait_replies("C1", ts, 1)
    assert bot.model_bodies()[0]["instructions"] == (
        "Answer about R&D and <code> tags; write &lt; as is."
    )


async def test_the_cli_applies_allowed_models_exactly_like_slack(
    start_bot: StartBot, tmp_path: Path
) -> None:
    bot = await start_bot(allowed_models="gpt-a")
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    in_slack = await command(bot, "set model gpt-z")
    env = cli_env(tmp_path, ALLOWED_MODELS="gpt-a")
    code, out, err = await run_cli(
        ["config", "set", "--channel", "C1", "--team", "T1", "--model", "gpt-z"], env, tmp_path
    )
    assert code == 2, out + err
    sentence = "model must be one of the allowed models: gpt-a"
    assert sentence in in_slack
    assert sentence in err
    assert await stored(bot) == {}
    code, _, err = await run_cli(
        ["config", "set", "--channel", "C1", "--team", "T1", "--model", "gpt-a"], env, tmp_path
    )
    assert code == 0, err
    assert await stored(bot) == {"model": "gpt-a"}
