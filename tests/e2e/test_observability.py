"""Metrics and logs, seen from outside: ``/metrics`` scraped over HTTP before and after real
turns, and the log records a turn leaves (ids and timings, never the message text)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics
from bot.thread_locks import KeyedLocks
from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, message_event

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

REPO = Path(__file__).resolve().parents[2]


async def scrape(bot: BotUnderTest) -> Samples:
    status, text = await bot.get("/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_metrics_follow_the_turns(bot: BotUnderTest) -> None:
    before = await scrape(bot)
    # The working status is rate limited once: the client waits Retry-After and retries.
    bot.slack.fail_next("assistant.threads.setStatus", status=429, retry_after=1)
    bot.model.reply("Here you are.", usage={"input_tokens": 12, "output_tokens": 5})
    ts, event_id = await bot.mention("first question")
    await bot.wait_replies("C1", ts, 1)
    # Slack retries the same event: claimed already, so a duplicate.
    await bot.send_event(bot.sent[-1]["event"], event_id=event_id, retry_num=1)
    # A top-level channel message that is not for the bot: ignored.
    other = bot.slack.add_message("C1", user="U2", text="people talking")
    await bot.send_event(message_event(channel="C1", user="U2", text="people talking", ts=other))
    # A follow-up in the thread, no mention needed.
    bot.model.reply("And more.", usage={"input_tokens": 30, "output_tokens": 3})
    await bot.reply("and then?", thread_ts=ts)
    await bot.wait_replies("C1", ts, 2)
    await bot.wait_idle()
    after = await scrape(bot)

    # Events by type, and what became of them.
    assert grew(before, after, "slackbot_events_received_total", type="app_mention") == 2
    assert grew(before, after, "slackbot_events_received_total", type="message") == 2
    handled = "slackbot_events_handled_total"
    assert grew(before, after, handled, type="app_mention", outcome="completed") == 1
    assert grew(before, after, handled, type="app_mention", outcome="duplicate") == 1
    assert grew(before, after, handled, type="message", outcome="ignored") == 1
    assert grew(before, after, handled, type="message", outcome="completed") == 1
    assert grew(before, after, "slackbot_turns_total", outcome="completed") == 2
    assert grew(before, after, "slackbot_turns_total", outcome="duplicate") == 1
    assert grew(before, after, "slackbot_turns_total", outcome="ignored") == 1
    assert value(after, "slackbot_turns_in_flight") == 0
    assert grew(before, after, "slackbot_turn_seconds_count") == 2

    # The model: one observation per call, tokens by model and kind.
    model = "test-model"
    assert grew(before, after, "slackbot_model_time_to_first_delta_seconds_count", model=model) == 2
    assert (
        grew(
            before,
            after,
            "slackbot_model_duration_seconds_count",
            model=model,
            outcome="completed",
        )
        == 2
    )
    assert grew(before, after, "slackbot_model_tokens_total", model=model, kind="input") == 42
    assert grew(before, after, "slackbot_model_tokens_total", model=model, kind="output") == 8

    # Slack: every request by method, the 429 counted, and its retry counted as a request.
    set_status = "assistant.threads.setStatus"
    assert grew(before, after, "slackbot_slack_api_rate_limited_total", method=set_status) == 1
    assert grew(before, after, "slackbot_slack_api_calls_total", method=set_status) == len(
        bot.slack.calls_to(set_status)
    )
    assert len(bot.slack.calls_to(set_status)) >= 2  # the 429 and its retry at least
    for method in ("chat.postMessage", "chat.startStream", "chat.update", "chat.appendStream"):
        sent = [c for c in bot.slack.calls_to(method)]
        assert value(after, "slackbot_slack_api_calls_total", method=method) == len(sent)
    assert value(after, "slackbot_slack_api_calls_total", method="auth.test") >= 1

    # Lock waits: one per turn that reached the thread's lock (the duplicate is known as
    # such when it is accepted, before any lock).
    assert grew(before, after, "slackbot_thread_lock_wait_seconds_count", lock="process") >= 2


async def test_a_failed_model_call_and_slack_errors_are_counted(bot: BotUnderTest) -> None:
    before = await scrape(bot)
    bot.model.error(
        401, {"error": {"message": "bad key", "type": "invalid_request_error", "code": None}}
    )
    bot.slack.fail_next("reactions.add", "invalid_name")
    ts, _ = await bot.mention("this will fail")
    await bot.wait_replies("C1", ts, 1)
    await bot.wait_idle()
    after = await scrape(bot)
    assert grew(before, after, "slackbot_turns_total", outcome="failed") == 1
    assert (
        grew(
            before,
            after,
            "slackbot_model_duration_seconds_count",
            model="test-model",
            outcome="failed",
        )
        == 1
    )
    assert (
        grew(before, after, "slackbot_model_errors_total", model="test-model", code="unauthorized")
        == 1
    )
    assert grew(before, after, "slackbot_model_time_to_first_delta_seconds_count") == 0


async def test_one_log_line_per_turn_with_ids_and_never_the_text(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    marker = f"zebra-{uuid.uuid4().hex}"
    bot.model.reply(f"echo {marker}")  # the answer carries the marker too
    ts, event_id = await bot.mention(f"please remember {marker}")
    await bot.wait_replies("C1", ts, 1)
    await bot.wait_idle()

    completed = [r for r in caplog.records if r.getMessage() == "turn completed"]
    assert len(completed) == 1
    record = completed[0]
    [turn] = await bot.turns("C1", ts)
    fields = record.__dict__
    assert fields["turn_id"] == turn.id
    assert fields["team"] == "T1"
    assert fields["channel"] == "C1"
    assert fields["thread_ts"] == ts
    assert fields["event_id"] == event_id
    assert isinstance(fields["duration_ms"], int)
    assert fields["duration_ms"] >= 0
    assert fields["response_id"] == turn.response_id

    # The marker is in what Slack and the model saw, and in no log record at all.
    assert any(marker in json.dumps(r.body) for r in bot.model.requests)
    for r in caplog.records:
        assert marker not in r.getMessage(), r
        assert marker not in repr(r.__dict__), r


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _metric_names() -> set[str]:
    """Every sample name the service can serve, from its registry's families."""
    return {f.name + suffix for f in Metrics().registry.collect() for suffix in _SUFFIXES[f.type]}


def test_the_dashboard_and_readme_use_exactly_the_served_metric_names() -> None:

    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    names = _metric_names()
    used: set[str] = set()
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            for name in re.findall(r"slackbot_[a-z_]+", target["expr"]):
                assert name in names, (panel["title"], name)
                used.add(name)
    # Every family is on the dashboard (histograms through their buckets or counts).
    families = {
        f.name + ("_total" if f.type == "counter" else "") for f in Metrics().registry.collect()
    }
    for family in families:
        assert any(u.startswith(family.removesuffix("_total")) for u in used), family

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Metrics and dashboards", 1)[1].split("\n## ", 1)[0]
    for family in families:
        assert f"`{family}`" in section, family


def test_slack_sdk_body_dumps_stay_off_at_debug() -> None:
    from bot.logs import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("slack_sdk.web").level)
    try:
        configure_logging(level="DEBUG", fmt="json")
        assert logging.getLogger("slack_sdk.web.async_base_client").getEffectiveLevel() == (
            logging.INFO
        )
        assert logging.getLogger("bot").getEffectiveLevel() == logging.DEBUG
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("slack_sdk.web").setLevel(saved[2])


async def test_lock_waits_are_reported() -> None:
    import asyncio
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from bot.metrics import TimedThreadLocks

    waits: list[float] = []
    locks = KeyedLocks(on_wait=waits.append)
    assert locks  # an idle instance is kept by ``locks or KeyedLocks()``
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("k"):
            await release.wait()

    task = asyncio.create_task(first())
    await asyncio.sleep(0)
    second = asyncio.create_task(_hold(locks))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(task, second)
    assert len(waits) == 2
    assert waits[0] < 0.01  # free: no wait
    assert waits[1] >= 0.04  # waited for the first holder

    class Slow:
        @asynccontextmanager
        async def hold(
            self, *, team_id: str, channel_id: str, thread_ts: str
        ) -> AsyncIterator[None]:
            await asyncio.sleep(0.03)
            yield

    db_waits: list[float] = []
    async with TimedThreadLocks(Slow(), db_waits.append).hold(
        team_id="T", channel_id="C", thread_ts="1"
    ):
        pass
    assert len(db_waits) == 1
    assert db_waits[0] >= 0.02


async def _hold(locks: KeyedLocks) -> None:
    async with locks.hold("k"):
        pass


async def test_message_text_is_logged_only_when_the_operator_asks(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bot = await start_bot(log_message_content=True)
    ts, _ = await bot.mention("marker-7f3a please")
    await bot.wait_replies("C1", ts, 1)
    [record] = [r for r in caplog.records if r.getMessage() == "turn completed"]
    assert "marker-7f3a" in record.message_text  # type: ignore[attr-defined]
    assert record.first_token_ms is not None  # type: ignore[attr-defined]


async def test_the_bots_own_messages_are_dropped_by_bolt_and_still_counted(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    before = await scrape(bot)
    caplog.set_level(logging.DEBUG, logger="slack_bolt")
    caplog.set_level(logging.DEBUG, logger="bot.slack.bolt")
    # The bot's own reply in the thread, as Slack echoes it: by user id, and by bot id.
    for extra in ({"bot_id": bot.slack.bot_id}, {}):
        ts = bot.slack.add_message("C1", user=bot.slack.bot_user_id, text="me", thread_ts=root)
        await bot.send_event(
            message_event(
                channel="C1", user=bot.slack.bot_user_id, text="me", ts=ts, thread_ts=root, **extra
            )
        )
    await bot.wait_idle()
    after = await scrape(bot)

    # Bolt's own self-event filter is on: it drops them before any listener of ours.
    assert caplog.text.count("Skipped self event") == 2
    # Received and handled (ignored) all the same, so the counters still add up.
    assert grew(before, after, "slackbot_events_received_total", type="message") == 2
    handled = "slackbot_events_handled_total"
    assert grew(before, after, handled, type="message", outcome="ignored") == 2
    assert grew(before, after, "slackbot_turns_total", outcome="ignored") == 2
    assert len(bot.model_bodies()) == 1  # only the first mention reached the model
