"""Slack Web API faults on the methods the bot calls, through the real HTTP boundaries.

What must hold for each: a rate limit (HTTP 429 + Retry-After) is waited out where the bot
uses the retrying client; the stream methods (a client without rate-limit retry) fall back
instead of waiting; a refusal that retrying cannot fix closes the turn cleanly with Slack's
error code, says why in the log, and leaves the service healthy for the next message.
"""

from __future__ import annotations

import logging

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown, slash_command

ADMIN = "UADMIN"


async def healthy(bot: BotUnderTest, channel: str = "C9") -> None:
    """``/healthz`` answers 200 and a mention in another channel is answered normally."""
    status, _ = await bot.get("/healthz")
    assert status == 200
    ts, _ = await bot.mention("are you still there?", channel=channel)
    [reply] = await bot.wait_replies(channel, ts, 1)
    assert shown(reply).startswith("answer")


def stop_failing(bot: BotUnderTest) -> None:
    """Slack recovers: drop the faults the failed turn did not use (the fake has no public
    call for this; a refusal like not_in_channel lasts until someone fixes it)."""
    bot.slack._faults.clear()


def logged(caplog: pytest.LogCaptureFixture, code: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if code in r.getMessage()]


async def slash_config(bot: BotUnderTest, user: str = ADMIN) -> tuple[int, str]:
    """``/ai config``: (HTTP status, the answer through ``response_url``, '' if the modal
    opened)."""
    status, _, answer = await slash_command(bot, "config", user=user)
    return status, answer


# ------------------------------------------------------------------- rate limits (429)


@pytest.mark.parametrize(
    ("method", "native"),
    [
        ("assistant.threads.setStatus", True),
        ("chat.postMessage", False),
        ("chat.update", False),
    ],
)
async def test_a_rate_limited_call_on_the_answer_path_is_retried_after_retry_after(
    start_bot: StartBot, method: str, native: bool
) -> None:
    bot = await start_bot(slack_native_streaming=native, stream_update_interval=0.1)
    bot.slack.fail_next(method, "ratelimited", status=429, retry_after=0)
    bot.model.reply("One. Two. Three.", delta_count=3, delay_between_deltas=0.15)
    ts, _ = await bot.mention("hello")
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert shown(reply) == "One. Two. Three."
    calls = bot.slack.calls_to(method)
    assert [c.status for c in calls[:2]] == [429, 200]  # retried, then accepted
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"
    assert bot.slack.calls_to("reactions.add") == []  # no fallback needed


async def test_a_rate_limited_start_stream_falls_back_at_once(bot: BotUnderTest) -> None:
    bot.slack.fail_next("chat.startStream", "ratelimited", status=429, retry_after=30)
    ts, _ = await bot.mention("hello")
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert shown(reply).startswith("answer")
    assert len(bot.slack.calls_to("chat.startStream")) == 1  # Retry-After not waited out
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"


async def test_a_rate_limited_stop_stream_is_waited_out_and_the_answer_lands(
    bot: BotUnderTest,
) -> None:
    bot.slack.fail_next("chat.stopStream", "ratelimited", status=429, retry_after=1)
    bot.model.reply("One. Two. Three.", delta_count=3, delay_between_deltas=0.3)
    ts, _ = await bot.mention("hello")
    [reply] = await bot.wait_replies("C1", ts, 1)

    # The final text is never dropped: the 429 pauses chat.stopStream for Retry-After, then
    # the call is made again and the turn completes only once Slack holds the whole answer.
    assert shown(reply) == "One. Two. Three."
    stops = bot.slack.calls_to("chat.stopStream")
    assert [c.status for c in stops] == [429, 200]
    assert stops[1].time - stops[0].time >= 0.9
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"
    await healthy(bot)


async def test_a_rate_limited_home_tab_publish_is_retried(bot: BotUnderTest) -> None:
    bot.slack.fail_next("views.publish", "ratelimited", status=429, retry_after=0)
    await bot.send_event({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"})
    await bot.slack.wait_for(
        lambda: [c for c in bot.slack.calls_to("views.publish") if c.ok], timeout=5
    )
    assert [c.status for c in bot.slack.calls_to("views.publish")] == [429, 200]


async def test_a_rate_limited_modal_open_and_admin_lookup_are_retried(
    bot: BotUnderTest,
) -> None:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.slack.fail_next("users.info", "ratelimited", status=429, retry_after=0)
    bot.slack.fail_next("views.open", "ratelimited", status=429, retry_after=0)
    status, _ = await slash_config(bot)
    assert status == 200
    await bot.slack.wait_for(
        lambda: [c for c in bot.slack.calls_to("views.open") if c.ok], timeout=5
    )
    assert [c.status for c in bot.slack.calls_to("users.info")][:2] == [429, 200]
    assert [c.status for c in bot.slack.calls_to("views.open")] == [429, 200]


async def test_a_rate_limited_thread_read_when_joining_a_thread_is_retried(
    bot: BotUnderTest,
) -> None:
    # Joining a thread mid-way is the one time its earlier messages are read from Slack (a
    # lost chain is rebuilt from the bot's own transcript: tests/e2e/test_conversation_state.py).
    parent = bot.slack.add_message("C1", user="U2", text="people talking")
    bot.slack.fail_next("conversations.replies", "ratelimited", status=429, retry_after=0)
    await bot.mention("go on", thread_ts=parent)
    replies = await bot.wait_replies("C1", parent, 1)

    assert shown(replies[0]).startswith("answer")
    assert [c.status for c in bot.slack.calls_to("conversations.replies")][:2] == [429, 200]
    [turn] = await bot.turns("C1", parent)
    assert turn.status == "completed"
    [request] = bot.model_bodies()
    assert [item["role"] for item in request["input"]] == ["user", "user"]


# ------------------------------------------------------------------- the working indicator


@pytest.mark.parametrize(("error", "status"), [("internal_error", 500), ("not_in_channel", 200)])
async def test_a_refused_thread_status_falls_back_to_a_reaction(
    bot: BotUnderTest, error: str, status: int
) -> None:
    bot.slack.fail_next("assistant.threads.setStatus", error, status=status)
    ts, _ = await bot.mention("hello")
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert shown(reply).startswith("answer")
    assert len(bot.slack.calls_to("assistant.threads.setStatus")) == 1  # 5xx: not retried
    assert len(bot.slack.calls_to("reactions.add")) == 1
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"


async def test_when_no_indicator_can_be_shown_the_answer_still_arrives(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    bot.slack.fail_next("assistant.threads.setStatus", "not_allowed_token_type")
    bot.slack.fail_next("reactions.add", "channel_not_found")
    ts, _ = await bot.mention("hello")
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert shown(reply).startswith("answer")
    assert logged(caplog, "channel_not_found")
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"


# ------------------------------------------------------------------- refusals on delivery


POST_MESSAGE_ERRORS = [
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "msg_too_long",
    "invalid_blocks",
    "ratelimited",
    "token_revoked",
]


@pytest.mark.parametrize("error", POST_MESSAGE_ERRORS)
async def test_a_refused_post_message_closes_the_turn_with_slacks_error_code(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture, error: str
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    bot = await start_bot(slack_native_streaming=False)
    bot.slack.fail_next("chat.postMessage", error, times=5)  # Slack keeps refusing
    ts, _ = await bot.mention("hello")
    await bot.wait_idle()
    stop_failing(bot)

    [turn] = await bot.turns("C1", ts)
    assert turn.status in ("undelivered", "failed")
    assert logged(caplog, error)
    assert not [r for r in caplog.records if r.exc_info]  # a refusal, not a crash
    await healthy(bot)
    assert turn.error_code == error


async def test_a_slack_5xx_on_post_message_closes_the_turn_with_its_error_code(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    bot = await start_bot(slack_native_streaming=False)
    bot.slack.fail_next("chat.postMessage", "internal_error", status=500, times=5)
    ts, _ = await bot.mention("hello")
    await bot.wait_idle()
    stop_failing(bot)

    assert len(bot.slack.calls_to("chat.postMessage")) >= 1
    [turn] = await bot.turns("C1", ts)
    assert turn.status in ("undelivered", "failed")
    assert logged(caplog, "internal_error")
    await healthy(bot)
    assert turn.error_code == "internal_error"


@pytest.mark.parametrize("error", ["msg_too_long", "channel_not_found"])
async def test_a_refused_final_update_closes_the_turn_as_undelivered(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture, error: str
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    bot = await start_bot(slack_native_streaming=False)
    # Posted at the first delta, then updated (a whole answer known at once is just posted).
    bot.model.reply("One. Two. Three.", delta_count=3, delay_between_deltas=0.3)
    bot.slack.fail_next("chat.update", error, times=5)
    ts, _ = await bot.mention("hello")
    await bot.wait_idle()
    stop_failing(bot)

    [turn] = await bot.turns("C1", ts)
    assert turn.status in ("undelivered", "failed")
    assert turn.error_code == error
    assert logged(caplog, error)
    await healthy(bot)


@pytest.mark.parametrize("error", ["msg_too_long", "channel_not_found", "internal_error"])
async def test_a_refused_stop_stream_closes_the_turn_as_undelivered(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture, error: str
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    status = 500 if error == "internal_error" else 200
    bot.slack.fail_next("chat.stopStream", error, status=status)
    ts, _ = await bot.mention("hello")
    await bot.wait_idle()
    stop_failing(bot)

    [turn] = await bot.turns("C1", ts)
    assert turn.status == "undelivered"
    assert turn.error_code == error
    assert turn.response_id  # the answer exists upstream: the turn keeps its id
    assert logged(caplog, error)
    await healthy(bot)
    # The chain head did not move to an answer the user never got in full.
    await bot.reply("again", thread_ts=ts)
    await bot.wait_idle()
    assert "previous_response_id" not in bot.model_bodies()[-1]


async def test_a_refused_append_stream_closes_the_turn_with_slacks_error_code(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    bot.slack.fail_next("chat.appendStream", "channel_not_found", times=5)
    bot.slack.fail_next("chat.postMessage", "channel_not_found", times=5)
    bot.model.reply("One. Two. Three.", delta_count=3, delay_between_deltas=0.6)
    ts, _ = await bot.mention("hello")
    await bot.wait_idle()
    stop_failing(bot)

    [turn] = await bot.turns("C1", ts)
    assert turn.status in ("undelivered", "failed")
    assert logged(caplog, "channel_not_found")
    await healthy(bot)
    assert turn.error_code == "channel_not_found"


async def test_a_refused_admin_lookup_fails_closed_and_logs_why(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.slack.fail_next("users.info", "missing_scope")
    status, answer = await slash_config(bot)

    assert status == 200
    assert "admins" in answer.lower()  # refused politely: fail closed
    assert bot.slack.calls_to("views.open") == []
    await healthy(bot)
    assert logged(caplog, "missing_scope")
