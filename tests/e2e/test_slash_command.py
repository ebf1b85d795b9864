"""The slash command, as Slack sends it: a signed form-encoded POST to the Request URL."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from tests.e2e.conftest import StartBot
from tests.e2e.harness import BotUnderTest, sign


async def _command(bot: BotUnderTest, text: str, *, command: str = "/ai") -> tuple[int, str]:
    body = urlencode(
        {
            "token": "legacy",
            "team_id": "T1",
            "team_domain": "fake",
            "channel_id": "C1",
            "channel_name": "general",
            "user_id": "U1",
            "user_name": "ana",
            "command": command,
            "text": text,
            "api_app_id": "A1",
            "response_url": "http://127.0.0.1:9/response",
            "trigger_id": "1.2.3",
        }
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    return await bot.post_raw(body, headers)


async def test_show_lists_the_effective_settings_and_their_sources(bot: BotUnderTest) -> None:
    await bot.service.store.update_channel_settings(
        team_id="T1", channel_id="C1", values={"temperature": 0.4}, updated_by="U9"
    )
    status, text = await _command(bot, "show")
    assert status == 200
    reply = json.loads(text)
    assert reply["response_type"] == "ephemeral"
    assert "`model`: test-model _(service default)_" in reply["text"]
    assert "`temperature`: 0.4 _(set for this channel)_" in reply["text"]


async def test_unbuilt_verbs_say_so_and_change_nothing(bot: BotUnderTest) -> None:
    status, text = await _command(bot, "set temperature 1.5")
    assert status == 200
    assert "not available from Slack yet" in json.loads(text)["text"]
    assert await bot.service.store.get_channel_settings(team_id="T1", channel_id="C1") is None


async def test_the_command_name_comes_from_settings(start_bot: StartBot) -> None:
    bot = await start_bot(slack_command="/gpt")
    status, text = await _command(bot, "help", command="/gpt")
    assert status == 200
    assert "/gpt show" in json.loads(text)["text"]


async def test_app_home_opened_is_acknowledged(bot: BotUnderTest) -> None:
    await bot.send_event({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"})
