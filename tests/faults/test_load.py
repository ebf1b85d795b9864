"""Load: 200 threads at once on one in-process service, a slow model (1 s per answer), Slack
retries arriving during the load, then a follow-up in 50 of the threads.

The threads are spread over 20 channels: Slack lets an app post about one message a second per
channel, and the service schedules its posts within that (200 answers in ONE channel take
over three minutes however fast the bot is; see docs/performance.md)."""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown, wait_until

THREADS = 200
RETRIED = 20
FOLLOW_UPS = 50
CHANNELS = 20


def channel(i: int) -> str:
    return f"C{i % CHANNELS + 1}"


async def test_200_threads_at_once_are_each_answered_once_and_chained(
    start_bot: StartBot,
) -> None:
    started = time.monotonic()
    bot = await start_bot(slack_native_streaming=False)
    for _ in range(THREADS + FOLLOW_UPS):
        bot.model.reply(delay=1.0)  # every answer takes a second before its first byte

    async def first(i: int) -> tuple[str, str]:
        return await bot.mention(f"question {i}", channel=channel(i))

    sent = await asyncio.gather(*(first(i) for i in range(THREADS)))
    roots = [ts for ts, _ in sent]
    # Slack retries 20 deliveries (same event id) while the answers are still being written.
    assert bot.service.tracker.active > 0
    await asyncio.gather(
        *(
            bot.send_event(
                _mention_event(bot, roots[i], f"question {i}", channel(i)),
                event_id=event_id,
                retry_num=1,
            )
            for i, (_, event_id) in enumerate(sent[:RETRIED])
        )
    )
    await bot.wait_idle(timeout=40)
    await wait_until(lambda: _bot_messages(bot, roots) >= THREADS, timeout=10)

    follow = roots[:FOLLOW_UPS]
    await asyncio.gather(
        *(
            bot.mention(f"more on {i}", thread_ts=ts, channel=channel(i))
            for i, ts in enumerate(follow)
        )
    )
    await bot.wait_idle(timeout=40)
    wall = time.monotonic() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # Every event answered exactly once: 200 + 50 answers, no duplicate, nothing lost.
    requests = [r.body for r in bot.model.requests]
    assert len(requests) == THREADS + FOLLOW_UPS
    per_thread = Counter(body["metadata"]["slack_thread"] for body in requests)
    assert per_thread == {ts: (2 if ts in follow else 1) for ts in roots}
    for i, ts in enumerate(roots):
        texts = [shown(m) for m in bot.slack.bot_replies(channel(i), ts)]
        expected = [f" to: U1: question {i}"] + ([f" to: U1: more on {i}"] if ts in follow else [])
        assert len(texts) == len(expected), (ts, texts)
        assert all(t.endswith(e) for t, e in zip(texts, expected, strict=True)), (ts, texts)

        # The chain is not forked: the follow-up continues from this thread's first answer.
        turns = await bot.turns(channel(i), ts)
        assert [t.status for t in turns] == ["completed"] * len(expected)
        assert turns[0].previous_response_id is None
        if ts in follow:
            assert turns[1].previous_response_id == turns[0].response_id
    follow_up_bodies = [b for b in requests if b.get("previous_response_id")]
    heads = {ts: (await bot.turns(channel(i), ts))[0].response_id for i, ts in enumerate(follow)}
    assert {
        b["metadata"]["slack_thread"]: b["previous_response_id"] for b in follow_up_bodies
    } == heads
    outcomes = {
        s.labels["outcome"]: s.value
        for metric in bot.service.metrics.turns.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert outcomes.get("duplicate") == RETRIED
    assert outcomes.get("completed") == THREADS + FOLLOW_UPS

    print(
        f"\nLOAD: {THREADS} threads + {RETRIED} retries + {FOLLOW_UPS} follow-ups "
        f"in {wall:.1f} s wall, peak RSS {peak_rss_mb:.0f} MiB"
    )
    assert wall < 60


def _mention_event(bot: BotUnderTest, ts: str, text: str, channel: str) -> dict[str, object]:
    full = f"<@{bot.slack.bot_user_id}> {text}"
    return {
        "type": "app_mention",
        "user": "U1",
        "text": full,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }


def _bot_messages(bot: BotUnderTest, roots: list[str]) -> int:
    return sum(len(bot.slack.bot_replies(channel(i), ts)) for i, ts in enumerate(roots))
