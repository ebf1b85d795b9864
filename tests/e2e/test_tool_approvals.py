"""Approval of tool calls: the question in the thread, addressed to the person who asked, with
Approve / Deny; only their click counts, exactly once, on any replica; no answer in time is a
denial; a stopped answer withdraws the question. Signed clicks into the running service, the
fake Slack Web API, a real SQLite file."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.conversation import ApprovalRequest, IncomingMessage
from bot.i18n import reading
from bot.slack.approvals import APPROVE_ACTION, DENY_ACTION, SlackApprovals
from bot.slack.tool_texts import APPROVAL_ALREADY_DECIDED
from storage.engine import create_engine, create_session_factory
from storage.records import ApprovalRecord, ApprovalStatus
from storage.repositories import Store
from tests.e2e.harness import BotUnderTest, wait_until

TITLE = "orders · cancel order 42"


async def _request(bot: BotUnderTest, *, user: str = "U1") -> ApprovalRequest:
    ts = bot.slack.add_message("C1", user=user, text=f"<@{bot.bot_user_id}> cancel order 42")
    turn = await bot.service.store.start_turn(
        team_id="T1",
        channel_id="C1",
        thread_ts=ts,
        user_id=user,
        user_ts=ts,
        event_id=None,
        model="test-model",
    )
    message = IncomingMessage(
        team_id="T1", channel_id="C1", thread_ts=ts, ts=ts, user_id=user, text="cancel order 42"
    )
    return ApprovalRequest(
        message=message,
        turn_id=turn.turn_id,
        call_id="call_1",
        server="orders",
        tool="cancel_order",
        title=TITLE,
    )


async def _question(bot: BotUnderTest, request: ApprovalRequest) -> dict[str, Any]:
    """The question message once the bot has posted it in the thread."""
    thread = request.message.thread_ts
    [question] = await bot.slack.wait_for(
        lambda: bot.slack.bot_replies("C1", thread) or None, timeout=5
    )
    return question


def _text(message: dict[str, Any] | None) -> str:
    assert message is not None
    return " ".join(
        str(b["text"]["text"]) for b in message.get("blocks") or [] if b.get("type") == "section"
    )


def _buttons(message: dict[str, Any] | None) -> list[str]:
    assert message is not None
    return [
        str(e.get("action_id"))
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


async def _click(bot: BotUnderTest, ts: str, *, user: str, action: str) -> None:
    status, _ = await bot.interact(bot.slack.button_click("C1", ts, user=user, action_id=action))
    assert status == 200


async def _records(bot: BotUnderTest, request: ApprovalRequest) -> list[ApprovalRecord]:
    return await bot.service.store.tool_approvals.list_for_turn(request.turn_id)


async def test_the_asker_approves_and_the_question_shows_it_without_buttons(
    bot: BotUnderTest,
) -> None:
    request = await _request(bot)
    asking = asyncio.create_task(bot.service.approvals.ask(request, timeout=30))
    question = await _question(bot, request)
    assert "<@U1>" in _text(question)
    assert TITLE in _text(question)
    assert _buttons(question) == [APPROVE_ACTION, DENY_ACTION]

    await _click(bot, question["ts"], user="U1", action=APPROVE_ACTION)

    assert await asyncio.wait_for(asking, 5) is True
    shown = bot.slack.message("C1", question["ts"])
    assert _text(shown) == f"*{TITLE}*: approved by <@U1>."
    assert _buttons(shown) == []
    [record] = await _records(bot, request)
    assert (record.status, record.decided_by) == (ApprovalStatus.APPROVED, "U1")
    assert record.message_ts == question["ts"]
    assert bot.slack.ephemerals == []


async def test_the_asker_denies(bot: BotUnderTest) -> None:
    request = await _request(bot)
    asking = asyncio.create_task(bot.service.approvals.ask(request, timeout=30))
    question = await _question(bot, request)

    await _click(bot, question["ts"], user="U1", action=DENY_ACTION)

    assert await asyncio.wait_for(asking, 5) is False
    shown = bot.slack.message("C1", question["ts"])
    assert "denied by <@U1>" in _text(shown)
    assert _buttons(shown) == []


async def test_someone_else_is_told_privately_and_nothing_changes(bot: BotUnderTest) -> None:
    request = await _request(bot)
    asking = asyncio.create_task(bot.service.approvals.ask(request, timeout=30))
    question = await _question(bot, request)

    await _click(bot, question["ts"], user="U2", action=APPROVE_ACTION)

    [refusal] = await bot.slack.wait_for(lambda: bot.slack.ephemerals, timeout=5)
    assert refusal["user"] == "U2"
    assert refusal["thread_ts"] == request.message.thread_ts
    assert "<@U1>" in refusal["text"]
    [record] = await _records(bot, request)
    assert record.status == ApprovalStatus.PENDING
    assert not asking.done()
    assert _buttons(bot.slack.message("C1", question["ts"])) == [APPROVE_ACTION, DENY_ACTION]

    await _click(bot, question["ts"], user="U1", action=APPROVE_ACTION)
    assert await asyncio.wait_for(asking, 5) is True


async def test_no_answer_in_time_is_a_denial_and_the_question_says_so(
    bot: BotUnderTest,
) -> None:
    request = await _request(bot)
    asking = asyncio.create_task(bot.service.approvals.ask(request, timeout=0.5))
    question = await _question(bot, request)
    late = bot.slack.button_click("C1", question["ts"], user="U1", action_id=APPROVE_ACTION)
    assert await asyncio.wait_for(asking, 5) is False

    [record] = await _records(bot, request)
    assert record.status == ApprovalStatus.EXPIRED
    shown = bot.slack.message("C1", question["ts"])
    assert _text(shown) == f"*{TITLE}*: no answer within 1 second, so the call was not run."
    assert _buttons(shown) == []
    # A click after the end (a stale client still showing the buttons) changes nothing.
    await bot.interact(late)
    [note] = await bot.slack.wait_for(lambda: bot.slack.ephemerals, timeout=5)
    assert note["text"] == APPROVAL_ALREADY_DECIDED
    assert note["user"] == "U1"
    [record] = await _records(bot, request)
    assert record.status == ApprovalStatus.EXPIRED


async def test_a_stopped_answer_withdraws_the_question(bot: BotUnderTest) -> None:
    request = await _request(bot)
    asking = asyncio.create_task(bot.service.approvals.ask(request, timeout=30))
    question = await _question(bot, request)

    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking

    [record] = await _records(bot, request)
    assert record.status == ApprovalStatus.WITHDRAWN
    shown = bot.slack.message("C1", question["ts"])
    assert "no longer needed" in _text(shown)
    assert _buttons(shown) == []


async def test_a_double_click_decides_once(bot: BotUnderTest) -> None:
    request = await _request(bot)
    asking = asyncio.create_task(bot.service.approvals.ask(request, timeout=30))
    question = await _question(bot, request)
    click = bot.slack.button_click("C1", question["ts"], user="U1", action_id=APPROVE_ACTION)
    deny = bot.slack.button_click("C1", question["ts"], user="U1", action_id=DENY_ACTION)

    await asyncio.gather(bot.interact(click), bot.interact(deny), bot.interact(click))

    decided = await asyncio.wait_for(asking, 5)
    [record] = await _records(bot, request)
    assert record.status == (ApprovalStatus.APPROVED if decided else ApprovalStatus.DENIED)
    notes = await bot.slack.wait_for(lambda: bot.slack.ephemerals[1:] or None, timeout=5)
    assert len(notes) == 1  # two clicks too many, each told it was decided already
    updates = [c for c in bot.slack.calls_to("chat.update") if c.params.get("ts") == question["ts"]]
    assert len(updates) == 1


async def test_a_decision_made_on_another_replica_is_seen_by_polling(bot: BotUnderTest) -> None:
    # A second replica on the same database asks; the click lands on the running service,
    # which has no waiter for it in memory.
    engine = create_engine(bot.service.settings.database_url)
    try:
        other = SlackApprovals(
            workspaces=bot.service.workspaces,
            store=Store(create_session_factory(engine)).tool_approvals,
            poll_interval=0.1,
        )
        request = await _request(bot)
        asking = asyncio.create_task(other.ask(request, timeout=30))
        question = await _question(bot, request)

        await _click(bot, question["ts"], user="U1", action=APPROVE_ACTION)

        assert await asyncio.wait_for(asking, 5) is True
        await wait_until(lambda: _buttons(bot.slack.message("C1", question["ts"])) == [])
        assert "approved by <@U1>" in _text(bot.slack.message("C1", question["ts"]))
    finally:
        await engine.dispose()


async def test_a_question_that_cannot_be_posted_is_a_denial(bot: BotUnderTest) -> None:
    request = await _request(bot)
    bot.slack.fail_next("chat.postMessage", "channel_not_found")

    assert await bot.service.approvals.ask(request, timeout=30) is False

    [record] = await _records(bot, request)
    assert record.status == ApprovalStatus.WITHDRAWN
    assert record.message_ts is None


async def test_the_question_is_in_the_askers_language_and_a_refusal_in_the_clickers(
    bot: BotUnderTest,
) -> None:
    bot.slack.add_user("U1", name="anna", locale="de-DE")
    bot.slack.add_user("U2", name="kenji", locale="ja-JP")
    request = await _request(bot)
    # The turn runs in the asker's language (bot.conversation.service sets the reader).
    with reading("de"):
        asking = asyncio.create_task(bot.service.approvals.ask(request, timeout=30))
    question = await _question(bot, request)
    assert _text(question) == f"<@U1>, darf ich das ausführen? *{TITLE}*"

    await _click(bot, question["ts"], user="U2", action=APPROVE_ACTION)
    [refusal] = await bot.slack.wait_for(lambda: bot.slack.ephemerals or None, timeout=5)
    assert refusal["text"] == "承認または拒否できるのは、質問した <@U1> さんだけです。"

    await _click(bot, question["ts"], user="U1", action=DENY_ACTION)
    assert await asyncio.wait_for(asking, 5) is False
    shown = bot.slack.message("C1", question["ts"])
    assert _text(shown) == (
        f"*{TITLE}*: von <@U1> abgelehnt, der Aufruf wurde daher nicht ausgeführt."
    )
