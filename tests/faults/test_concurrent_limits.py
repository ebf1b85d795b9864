"""Limits under concurrency: one person's parallel mentions (each in a thread of its own, so no
thread lock orders them) against the hourly question limit and the daily token budgets, on
SQLite and on PostgreSQL. Every check-and-count is one atomic step, so the limit holds exactly.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown

PARALLEL = 8


async def _limit(bot: BotUnderTest, channel_id: str, **values: Any) -> None:
    # Set up through storage (what /ai set writes): this test is about the turns, not the
    # command surface.
    await bot.service.store.update_channel_settings(
        team_id="T1", channel_id=channel_id, values=values, updated_by=None
    )


async def _parallel_mentions(bot: BotUnderTest, user: str = "U1") -> list[str]:
    """``PARALLEL`` top-level mentions (each its own thread) delivered at once; returns what
    the person saw in each thread, after every one was handled."""
    roots = [
        bot.slack.add_message("C1", user=user, text=f"<@{bot.bot_user_id}> question {i}")
        for i in range(PARALLEL)
    ]
    events = [
        {
            "type": "app_mention",
            "user": user,
            "text": f"<@{bot.bot_user_id}> question {i}",
            "ts": ts,
            "channel": "C1",
            "event_ts": ts,
        }
        for i, ts in enumerate(roots)
    ]
    await asyncio.gather(*(bot.send_event(event) for event in events))
    texts = []
    for ts in roots:
        [reply] = await bot.wait_replies("C1", ts, 1, timeout=20)
        texts.append(shown(reply))
    return texts


async def test_eight_parallel_mentions_with_an_hourly_limit_of_two_give_two_answers(
    start_bot: StartBot, database_url: str
) -> None:
    bot = await start_bot(database_url=database_url)
    await _limit(bot, "", user_hourly_requests=2)
    # Each answer takes a moment, so all eight are in flight together.
    bot.model.answerer = lambda body, n: f"answer {n}"
    for _ in range(PARALLEL):
        bot.model.reply(delay=0.3)

    texts = await _parallel_mentions(bot)

    answers = [t for t in texts if t.startswith("answer ")]
    refusals = [t for t in texts if "questions in the last hour" in t]
    assert len(answers) == 2, texts
    assert len(refusals) == PARALLEL - 2, texts
    assert len(bot.model_bodies()) == 2
    assert all("the limit is 2" in t for t in refusals)
    # Only the answered questions were stored as turns (refusals are not questions asked).
    stored = await bot.service.store.usage_since(
        since=datetime.now(UTC) - timedelta(hours=1), by="user", team_id="T1"
    )
    assert [(row.key, row.counts.turns) for row in stored] == [("U1", 2)]


async def test_the_hourly_refusal_names_the_time_to_ask_again_and_counts_one_question(
    bot: BotUnderTest,
) -> None:
    await _limit(bot, "", user_hourly_requests=1)
    first, _ = await bot.mention("one question")
    await bot.wait_replies("C1", first, 1)
    second, _ = await bot.mention("another one")
    [refusal] = await bot.wait_replies("C1", second, 1)

    [turn] = await bot.turns("C1", first)
    free_at = turn.created_at + timedelta(hours=1)
    # Rounded up to the minute: at that minute the first question has left the window.
    shown_at = (free_at + timedelta(minutes=1)).replace(second=0, microsecond=0)
    text = shown(refusal)
    assert "You have asked 1 question in the last hour; the limit is 1." in text, text
    assert f"You can ask again after {shown_at:%H:%M} UTC" in text, text
    assert "1 questions" not in text
    assert re.search(r"\b\d\d:\d\d UTC\b", text)
    assert len(bot.model_bodies()) == 1


@pytest.mark.parametrize("scope", ["channel", "workspace"])
async def test_eight_parallel_mentions_cannot_overspend_a_token_budget(
    start_bot: StartBot, database_url: str, scope: str
) -> None:
    """A budget smaller than one answer: the first mention is answered, and the seven that
    arrived with it are refused, because the first holds a reservation until it settles."""
    bot = await start_bot(database_url=database_url)
    if scope == "channel":
        await _limit(bot, "C1", daily_token_budget=50)
    else:
        await _limit(bot, "", workspace_daily_token_budget=50)
    bot.model.answerer = lambda body, n: f"answer {n}"
    for _ in range(PARALLEL):
        bot.model.reply(delay=0.3, usage={"input_tokens": 40, "output_tokens": 30})

    texts = await _parallel_mentions(bot)

    answers = [t for t in texts if t.startswith("answer ")]
    refusals = [t for t in texts if "daily budget of 50 tokens" in t]
    assert len(answers) == 1, texts
    assert len(refusals) == PARALLEL - 1, texts
    assert len(bot.model_bodies()) == 1
    # Settled: the stored usage is what the endpoint reported, no reservation left over.
    used = await bot.service.store.tokens_used_since(
        team_id="T1",
        channel_id="C1" if scope == "channel" else None,
        since=datetime.now(UTC) - timedelta(days=1),
    )
    assert used == 70
