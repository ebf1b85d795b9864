"""Odd characters and failures while the model input is built: lone surrogates and NUL in an
event's text and in a file's name and bytes are replaced and the message is answered; a failure
while building the input (Slack refusing ``conversations.replies``, a file that cannot be
downloaded, a workspace uninstalled while the message waited) closes the turn with a note and
clears the thread's status. No turn is ever left ``pending``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, sign, wait_until
from tests.e2e.test_context import SlackFiles
from tests.e2e.test_oauth import app_event, install
from tests.fakes.slack_server import FakeSlack

REPLACEMENT = "\ufffd"


@pytest.fixture
def slack_files(fake_slack: FakeSlack) -> SlackFiles:
    # Slack's own file host (the fake Slack, on the API's origin): files anywhere else are
    # refused before any download, so these tests must use it.
    return SlackFiles(fake_slack)


def _user_text(body: dict[str, Any]) -> str:
    content = body["input"][-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content)


async def _statuses(bot: BotUnderTest, thread_ts: str) -> list[str]:
    return [turn.status for turn in await bot.turns("C1", thread_ts)]


async def test_lone_surrogates_and_nul_in_a_mention_are_replaced_and_answered(
    start_bot: StartBot, database_url: str
) -> None:
    bot = await start_bot(database_url=database_url)
    # json.dumps writes these as the escapes "\ud800", "\udfff" and "\u0000", exactly what a
    # client that mangled UTF-16 would make Slack send.
    ts, _ = await bot.mention("half \ud800 a pair \udfff and a \x00 NUL")
    [reply] = await bot.wait_replies("C1", ts, 1)

    [body] = bot.model_bodies()
    text = _user_text(body)
    assert text.endswith(f"half {REPLACEMENT} a pair {REPLACEMENT} and a {REPLACEMENT} NUL")
    assert reply["text"].startswith("answer 1 to:")
    assert await _statuses(bot, ts) == ["completed"]


async def test_a_file_with_a_broken_name_and_bytes_is_read_with_replacements(
    bot: BotUnderTest, slack_files: SlackFiles
) -> None:
    shared = slack_files.attach(
        "notes.txt", b"caf\xc3\xa9 \xff\xfe \xed\xa0\x80 end", "text/plain", "text"
    )
    shared["name"] = "notes\ud800.txt"  # a lone surrogate in the event's JSON
    full = f"<@{bot.bot_user_id}> read this"
    ts = bot.slack.add_message("C1", user="U1", text=full, files=[shared])
    await bot.send_event(
        {
            "type": "app_mention",
            "user": "U1",
            "text": full,
            "ts": ts,
            "channel": "C1",
            "event_ts": ts,
            "files": [shared],
        }
    )
    await bot.wait_replies("C1", ts, 1)

    [body] = bot.model_bodies()
    text = _user_text(body)
    assert f"File notes{REPLACEMENT}.txt:" in text
    assert "café" in text
    assert "end" in text
    assert await _statuses(bot, ts) == ["completed"]


@pytest.mark.parametrize("error", ["not_in_channel", "missing_scope"])
async def test_slack_refusing_the_thread_history_ends_the_turn_with_a_note(
    bot: BotUnderTest, error: str
) -> None:
    # The bot is mentioned in a thread it has not been part of: it reads the thread first.
    root = bot.slack.add_message("C1", user="U2", text="earlier talk")
    bot.slack.fail_next("conversations.replies", error)
    await bot.mention("what was said here?", thread_ts=root)
    [note] = await bot.wait_replies("C1", root, 1)

    assert bot.model_bodies() == []  # nothing half-built went to the model
    [turn] = await bot.turns("C1", root)
    assert turn.status == "failed"
    assert turn.error_code == error
    assert "couldn't read this thread" in note["text"]
    assert bot.slack.thread_status("C1", root) == ""  # the "is thinking…" status is gone

    # The thread is not stuck: the next mention is answered.
    await bot.mention("and now?", thread_ts=root)
    await bot.wait_replies("C1", root, 2)
    assert await _statuses(bot, root) == ["failed", "completed"]


async def test_a_file_that_cannot_be_downloaded_never_leaves_the_turn_pending(
    bot: BotUnderTest, slack_files: SlackFiles
) -> None:
    shared = slack_files.attach("a.txt", b"text", "text/plain", "text")
    # A URL on Slack's host that the HTTP client cannot even request (a NUL in the path).
    shared["url_private"] = shared["url_private"].replace("a.txt", "a\x00b.txt")
    full = f"<@{bot.bot_user_id}> read it"
    ts = bot.slack.add_message("C1", user="U1", text=full, files=[shared])
    await bot.send_event(
        {
            "type": "app_mention",
            "user": "U1",
            "text": full,
            "ts": ts,
            "channel": "C1",
            "event_ts": ts,
            "files": [shared],
        }
    )
    [reply] = await bot.wait_replies("C1", ts, 1)

    statuses = await _statuses(bot, ts)
    assert statuses in (["completed"], ["failed"]), statuses
    if statuses == ["failed"]:
        assert ":warning:" in reply["text"]
    assert bot.slack.thread_status("C1", ts) == ""
    status, _ = await bot.get("/healthz")
    assert status == 200


@pytest.fixture
async def multi(start_bot: StartBot, fake_slack: FakeSlack) -> BotUnderTest:
    return await start_bot(
        slack_bot_token=None,
        slack_client_id=fake_slack.client_id,
        slack_client_secret=fake_slack.client_secret,
        slack_state_secret="state-secret-0123456789",
    )


async def test_a_workspace_uninstalled_while_a_message_waits_closes_its_turn(
    multi: BotUnderTest,
) -> None:
    t2 = await install(multi, "T2")
    # People talk in a thread; the bot is mentioned there twice in a row. The first mention
    # joins the thread (the history is read) and answers slowly; the second waits for it.
    root = multi.slack.add_message("C1", user="U2", text="shall we ship?")
    multi.model.reply("slow answer", delta_count=2, delay_between_deltas=0.5)
    await t2.mention("what do you think?", thread_ts=root)
    await multi.model.wait_for_requests(1)
    await t2.mention("and the risks?", thread_ts=root)

    # Meanwhile the workspace removes the app.
    multi.slack.uninstall_workspace("T2")
    status, _ = await app_event(t2, {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"})
    assert status == 200
    await t2.wait_idle(timeout=15)

    turns = await t2.turns("C1", root)
    assert len(turns) == 2
    assert "pending" not in {t.status for t in turns}, [(t.status, t.error_code) for t in turns]
    assert turns[1].error_code == "not_installed"
    assert len(multi.model_bodies()) == 1  # the waiting message never reached the model
    status, _ = await multi.get("/healthz")
    assert status == 200


async def test_signed_raw_bytes_with_a_lone_surrogate_escape_are_answered(
    bot: BotUnderTest,
) -> None:
    """The same through hand-written JSON bytes, as Slack would send them."""
    ts = bot.slack.add_message("C1", user="U1", text="x")
    raw = (
        '{"team_id":"T1","api_app_id":"A1","type":"event_callback","event_id":"EvSur1",'
        '"event_time":1,"event":{"type":"app_mention","user":"U1","channel":"C1",'
        f'"ts":"{ts}","event_ts":"{ts}","text":"<@{bot.bot_user_id}> \\ud83d alone"}}}}'
    ).encode()
    status, _ = await bot.post_raw(raw, {"Content-Type": "application/json", **sign(raw)})
    assert status == 200
    await wait_until(lambda: bool(bot.slack.bot_replies("C1", ts)), timeout=10)
    assert _user_text(bot.model_bodies()[0]).endswith(f"{REPLACEMENT} alone")
