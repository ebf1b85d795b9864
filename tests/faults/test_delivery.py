"""Every answer lands whole inside Slack's real rate limits (issue 13), and no answer can
flood a thread or broadcast (issue 11, cases 1 and 2): driven through signed HTTP into the
running service, with the fake Slack enforcing Slack's per-method tiers where said."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown, wait_until
from tests.fakes.responses_server import last_user_text

BROADCAST = re.compile(
    r"<!(channel|here|everyone|group|subteam)|(?<![\w@./:])@(channel|here|everyone)\b", re.I
)


def answer_for(i: int) -> str:
    lines = [f"Answer {i}:"] + [f"- point {j} of answer {i}, with some words." for j in range(12)]
    return "\n".join(lines)


def _texts(value: Any) -> list[str]:
    """Every text field of a recorded Web API call, at any depth."""
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            if key in ("text", "markdown_text") and isinstance(item, str):
                out.append(item)
            else:
                out.extend(_texts(item))
        return out
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


QUEUE_WAIT = 'slackbot_slack_queue_wait_seconds_count{method="chat.postMessage",priority="first"}'


def chat_texts(bot: BotUnderTest) -> list[str]:
    """Every text the bot sent to a ``chat.*`` method."""
    return [t for c in bot.slack.calls if c.method.startswith("chat.") for t in _texts(c.params)]


def joined(bot: BotUnderTest, channel: str, ts: str) -> str:
    return "".join(shown(m) for m in bot.slack.bot_replies(channel, ts))


# --- issue 13: one budget, priorities, final text always lands -----------------------------


async def test_fifty_concurrent_answers_under_enforced_tiers_all_end_exact(
    start_bot: StartBot,
) -> None:
    bot = await start_bot()
    bot.slack.enforce_tiers()

    def answer(body: dict[str, Any], n: int) -> str:
        return answer_for(int(last_user_text(body).rsplit("q", 1)[-1]))

    bot.model.answerer = answer
    for _ in range(50):
        bot.model.script_reply(None, delta_count=5, delay_between_deltas=0.2)

    async def ask(i: int) -> tuple[str, str]:
        channel = f"C{i % 5 + 1}"
        ts, _ = await bot.mention(f"question q{i}", channel=channel, user=f"U{i}")
        return channel, ts

    roots = await asyncio.gather(*(ask(i) for i in range(50)))
    await bot.wait_idle(timeout=120)

    for i, (channel, ts) in enumerate(roots):
        assert joined(bot, channel, ts) == answer_for(i), f"answer {i} is not whole"
    turns = [t for channel, ts in roots for t in await bot.turns(channel, ts)]
    assert [t.status for t in turns] == ["completed"] * 50
    # Calls were scheduled rather than fired and refused: Slack never had to say 429 to the
    # answers' messages (every call stayed within its method's budget).
    refused = [c.method for c in bot.slack.rate_limited]
    assert not [m for m in refused if m.startswith("chat.")], refused
    _, metrics = await bot.get("/metrics")
    assert QUEUE_WAIT in metrics


async def test_a_final_text_refused_for_rate_is_retried_after_retry_after_until_it_lands(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(slack_native_streaming=False)
    text = answer_for(1)
    bot.model.reply(text, delta_count=4, delay_between_deltas=0.3)
    ts, _ = await bot.mention("hello")
    await bot.slack.wait_for(lambda: bot.slack.bot_replies("C1", ts), timeout=5)
    # The next chat.update calls are refused four times in a row (more than slack_sdk's own
    # retry handler takes), each asking to wait a second.
    bot.slack.fail_next("chat.update", "ratelimited", status=429, retry_after=1, times=4)

    await bot.wait_idle(timeout=30)

    assert joined(bot, "C1", ts) == text
    updates = bot.slack.calls_to("chat.update")
    assert [c.status for c in updates[:4]] == [429, 429, 429, 429]
    assert updates[-1].ok
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"


async def test_past_the_deadline_the_rest_of_the_answer_comes_in_a_new_message(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(slack_native_streaming=False, slack_final_deadline=2)
    text = answer_for(2)
    bot.model.reply(text, delta_count=4, delay_between_deltas=0.3)
    ts, _ = await bot.mention("hello")
    await bot.slack.wait_for(lambda: bot.slack.bot_replies("C1", ts), timeout=5)
    bot.slack.fail_next("chat.update", "ratelimited", status=429, retry_after=30, times=50)

    await bot.wait_idle(timeout=30)

    replies = bot.slack.bot_replies("C1", ts)
    assert len(replies) == 2  # the first message kept what it showed; the rest followed
    assert joined(bot, "C1", ts) == text
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"


async def test_a_final_text_held_at_shutdown_is_delivered_by_the_next_start(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(slack_native_streaming=False)
    text = answer_for(3)
    bot.model.reply(text, delta_count=4, delay_between_deltas=0.3)
    ts, _ = await bot.mention("hello")
    await bot.slack.wait_for(lambda: bot.slack.bot_replies("C1", ts), timeout=5)
    bot.slack.fail_next("chat.update", "ratelimited", status=429, retry_after=120, times=1)
    await bot.slack.wait_for(
        lambda: [c for c in bot.slack.calls_to("chat.update") if c.status == 429], timeout=10
    )
    assert joined(bot, "C1", ts) != text  # Slack does not hold the whole answer yet

    # Shutdown: the turn waiting out Retry-After is cancelled past the grace period...
    bot.service.shutdown_grace = 0.5
    await bot.service.stop()
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "pending"

    # ...and the next start finishes the same message, then completes the turn.
    restarted = await start_bot(slack_native_streaming=False)
    await wait_until(lambda: joined(restarted, "C1", ts) == text, timeout=15)
    assert len(restarted.slack.bot_replies("C1", ts)) == 1

    async def completed() -> bool:
        return [t.status for t in await restarted.turns("C1", ts)] == ["completed"]

    for _ in range(100):
        if await completed():
            break
        await asyncio.sleep(0.05)
    [turn] = await restarted.turns("C1", ts)
    assert turn.status == "completed"
    # The chain advanced to the delivered answer: a follow-up continues from it.
    restarted.model.reply("Next.")
    await restarted.reply("and then?", thread_ts=ts)
    await restarted.wait_replies("C1", ts, 2)
    assert restarted.model_bodies()[-1]["previous_response_id"] == turn.response_id


# --- issue 11.1: no answer can flood a thread --------------------------------------------------


@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
async def test_a_fence_line_longer_than_a_message_posts_a_bounded_number_of_messages(
    start_bot: StartBot, native: bool
) -> None:
    bot = await start_bot(slack_native_streaming=native)
    text = "```" + "x" * 13_000
    bot.model.reply(text, delta_count=20, delay_between_deltas=0.05)
    ts, _ = await bot.mention("flood me")

    await bot.wait_idle(timeout=30)

    replies = bot.slack.bot_replies("C1", ts)
    assert 1 <= len(replies) <= math.ceil(len(text) / 12_000) + 2
    assert re.sub(r"\s", "", joined(bot, "C1", ts)) == re.sub(r"\s", "", text)
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"


@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
async def test_shutdown_is_honoured_while_a_flooding_answer_streams(
    start_bot: StartBot, native: bool
) -> None:
    bot = await start_bot(slack_native_streaming=native)
    text = "```" + "x" * 13_000 + "\n" + "y" * 30_000
    bot.model.reply(text, delta_count=200, delay_between_deltas=0.05)
    ts, _ = await bot.mention("flood me")
    # Until the answer outgrows its first message (where a split must be made)...
    await bot.slack.wait_for(lambda: len(joined(bot, "C1", ts)) > 11_000, timeout=15)

    bot.service.shutdown_grace = 0.5
    async with asyncio.timeout(20):
        await bot.service.stop()

    assert len(bot.slack.bot_replies("C1", ts)) <= math.ceil(len(text) / 12_000) + 2


# --- issue 11.2: the model and users cannot make the bot broadcast ------------------------


async def test_broadcast_mentions_in_an_answer_are_neutralised_in_every_call(
    start_bot: StartBot,
) -> None:
    for native in (True, False):
        bot = await start_bot(slack_native_streaming=native)
        text = (
            "Hey <!channel> and <!here|here>, also <!everyone> and <!subteam^S0123|@devs>.\n"
            "Plain @here and @Channel too; mail me at ops@here.com. " * 3
        )
        bot.model.reply(text, delta_count=40, delay_between_deltas=0.03)
        ts, _ = await bot.mention(f"say hi (native={native})")
        await bot.wait_idle(timeout=20)

        sent = chat_texts(bot)
        assert sent
        assert not [t for t in sent if BROADCAST.search(t)], sent
        visible = joined(bot, "C1", ts)
        for shown_as in ("\uff20channel", "\uff20here", "\uff20everyone", "\uff20devs"):
            assert shown_as in visible
        assert "ops@here.com" in visible  # the rest is unchanged
        assert len(visible) <= len(text)
        await bot.service.stop()


async def test_a_file_name_echoed_in_a_notice_cannot_broadcast(bot: BotUnderTest) -> None:
    files = [
        {
            "id": "F1",
            "name": "<!channel> urgent.key",
            "mimetype": "application/x-iwork-keynote",
            "filetype": "keynote",
            "size": 10,
            "url_private": "https://files.slack.com/files-pri/T1-F1/urgent.key",
        }
    ]
    full = f"<@{bot.slack.bot_user_id}> read this"
    ts = bot.slack.add_message("C1", user="U1", text=full, files=files)
    await bot.send_event(
        {"type": "app_mention", "user": "U1", "text": full, "ts": ts, "channel": "C1",
         "event_ts": ts, "files": files}
    )  # fmt: skip
    await bot.wait_replies("C1", ts, 1)

    visible = joined(bot, "C1", ts)
    assert "I couldn't read \uff20channel urgent.key" in visible
    assert not [t for t in chat_texts(bot) if BROADCAST.search(t)]


async def test_an_answer_starting_with_a_partial_mention_waits_for_the_next_delta(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(slack_native_streaming=False)
    bot.model.reply(
        "@here is the plan: @channel would be rude.", delta_count=14, delay_between_deltas=0.1
    )
    ts, _ = await bot.mention("plan?")
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert shown(reply) == "\uff20here is the plan: \uff20channel would be rude."
    assert all(c.ok for c in bot.slack.calls if c.method.startswith("chat."))
