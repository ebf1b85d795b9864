"""Budgets and limits: when one is reached the user hears which, when it resets and who can
raise it, and the model is not called."""

from __future__ import annotations

from tests.e2e.harness import BotUnderTest, shown
from tests.e2e.test_slash_command import ADMIN, command


async def test_a_workspace_budget_stops_every_channel_once_spent(bot: BotUnderTest) -> None:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    refused = await command(bot, "set workspace_daily_token_budget 10")
    assert "workspace setting: use /ai set default workspace_daily_token_budget" in refused
    assert "now 10" in await command(bot, "set default workspace_daily_token_budget 10")

    first, _ = await bot.mention("spend it", channel="C1")
    await bot.wait_replies("C1", first, 1)
    other, _ = await bot.mention("anything left?", channel="C2")
    [reply] = await bot.wait_replies("C2", other, 1)
    assert "This workspace has used its daily budget of 10 tokens" in shown(reply)
    assert "00:00 UTC" in shown(reply)
    assert len(bot.model_bodies()) == 1


async def test_a_person_over_the_hourly_limit_is_asked_to_wait(bot: BotUnderTest) -> None:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    await command(bot, "set default user_hourly_requests 2")
    answered = []
    for i in range(3):
        ts, _ = await bot.mention(f"question {i}", user="U1")
        answered.append(shown((await bot.wait_replies("C1", ts, 1))[0]))
    assert "You have asked 2 questions in the last hour; the limit is 2" in answered[2]
    other, _ = await bot.mention("my turn", user="U2")
    await bot.wait_replies("C1", other, 1)
    assert len(bot.model_bodies()) == 3  # U1 twice, U2 once
