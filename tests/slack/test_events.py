"""Which Slack events may become a turn (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.events import from_app_mention, from_message, strip_mention

BOT = "UBOT"


def msg(**fields: Any) -> dict[str, Any]:
    event = {
        "type": "message",
        "channel": "C1",
        "user": "U1",
        "text": "hi",
        "ts": "2.0",
        "channel_type": "channel",
        "thread_ts": "1.0",
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


@pytest.mark.parametrize(
    ("event", "kept"),
    [
        (msg(), True),
        (msg(subtype="file_share"), True),
        (msg(subtype="thread_broadcast"), True),
        (msg(subtype="bot_message", bot_id="B1"), False),
        (msg(bot_id="B1"), False),  # a bot without a subtype is still a bot
        (msg(user=BOT), False),
        (msg(subtype="message_changed"), False),
        (msg(subtype="message_deleted"), False),
        (msg(subtype="channel_join"), False),
        (msg(edited={"user": "U1", "ts": "3.0"}), False),
        (msg(user=None), False),
        (msg(text=f"<@{BOT}> hi"), False),  # app_mention answers this one
        (msg(text=f"<@{BOT}> hi", channel_type="im", channel="D1"), True),
    ],
)
def test_message_filter(event: dict[str, Any], kept: bool) -> None:
    result = from_message(event, team_id="T1", bot_user_id=BOT, event_id="Ev1")
    assert (result is not None) == kept


def test_a_top_level_dm_starts_its_own_thread() -> None:
    event = msg(channel="D1", channel_type="im", thread_ts=None, ts="5.5", text="hey")
    result = from_message(event, team_id="T1", bot_user_id=BOT, event_id="Ev1")
    assert result is not None
    assert (result.thread_ts, result.is_direct, result.starts_thread) == ("5.5", True, True)


def test_a_mention_threads_at_itself_or_its_thread() -> None:
    top = {
        "type": "app_mention",
        "channel": "C1",
        "user": "U1",
        "ts": "7.0",
        "text": f"<@{BOT}> summarise <@U2|ana>'s point",
    }
    result = from_app_mention(top, team_id="T1", bot_user_id=BOT, event_id="Ev2")
    assert result is not None
    assert result.thread_ts == "7.0"
    assert result.text == "summarise <@U2|ana>'s point"
    inner = dict(top, thread_ts="6.0")
    result = from_app_mention(inner, team_id="T1", bot_user_id=BOT, event_id="Ev3")
    assert result is not None
    assert result.thread_ts == "6.0"
    edited = dict(top, edited={"user": "U1", "ts": "8.0"})
    assert from_app_mention(edited, team_id="T1", bot_user_id=BOT, event_id="Ev4") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"<@{BOT}> hello", "hello"),
        (f"hello <@{BOT}>", "hello"),
        (f"hey <@{BOT}|bot> there", "hey there"),
        (f"<@{BOT}>", ""),
        ("<@U2> stays", "<@U2> stays"),
    ],
)
def test_strip_mention(text: str, expected: str) -> None:
    assert strip_mention(text, BOT) == expected
