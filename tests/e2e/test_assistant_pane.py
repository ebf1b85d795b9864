"""Slack's AI-app surface, as a person uses it: the assistant pane (prompts, titles, where the
person is, channel summaries), the feedback buttons every answer ends with, and the thread
status while the model works. Driven through signed events and interactivity payloads into
the running service, against the fake Slack and fake model on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from bot.channel_settings.schema import DEFAULT_LOADING_MESSAGES, DEFAULT_SUGGESTED_PROMPTS
from bot.slack.assistant.context import NOT_A_MEMBER
from bot.slack.listeners.assistant import PROMPTS_TITLE
from bot.slack.listeners.feedback import COMMENT_CALLBACK, THANKS_BAD, THANKS_GOOD
from tests.e2e.harness import BotUnderTest, shown, slash_command, wait_until
from tests.fakes.responses_server import user_texts

DM = "D1"
ASKER = "U1"
ADMIN = "UADMIN"


async def open_pane(bot: BotUnderTest, *, viewing: str | None = None, user: str = ASKER) -> str:
    """The person opens the assistant pane (while viewing ``viewing``); returns its thread."""
    root = bot.slack.start_assistant_thread(DM, user=user)
    event = bot.slack.assistant_thread_event(
        "assistant_thread_started",
        channel=DM,
        thread_ts=root,
        user=user,
        viewing=viewing,
        team=bot.team_id,
    )
    await bot.send_event(event, counted=False)
    await bot.slack.wait_for(lambda: _prompts_for(bot, root))
    return root


def _prompts_for(bot: BotUnderTest, root: str) -> dict[str, Any] | None:
    return next((p for p in bot.slack.suggested_prompts if p["thread_ts"] == root), None)


async def move_to(bot: BotUnderTest, root: str, channel: str, user: str = ASKER) -> None:
    """The person opens another channel while the pane stays open."""
    calls = len(bot.slack.calls)
    event = bot.slack.assistant_thread_event(
        "assistant_thread_context_changed",
        channel=DM,
        thread_ts=root,
        user=user,
        viewing=channel,
        team=bot.team_id,
    )
    await bot.send_event(event, counted=False)

    async def saved() -> bool:
        found = await bot.service.store.assistant_threads.find(channel_id=DM, thread_ts=root)
        return found is not None and found.viewing == channel

    for _ in range(200):  # the listener runs after the acknowledgement
        if await saved():
            break
        await bot.slack.wait_for(lambda: len(bot.slack.calls) >= calls, timeout=0.05)
    assert await saved()


async def ask(bot: BotUnderTest, root: str, text: str, *, count: int) -> list[dict[str, Any]]:
    await bot.dm(text, channel=DM, thread_ts=root)
    return await bot.wait_replies(DM, root, count)


# ----------------------------------------------------------------- the pane and its thread


async def test_a_new_pane_thread_offers_the_workspace_prompts_which_admins_change(
    bot: BotUnderTest,
) -> None:
    root = await open_pane(bot)
    offered = _prompts_for(bot, root)
    assert offered is not None
    assert offered["title"] == PROMPTS_TITLE
    assert [p["message"] for p in offered["prompts"]] == list(DEFAULT_SUGGESTED_PROMPTS)
    assert all(p["title"] == p["message"] for p in offered["prompts"])

    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    _, _, answer = await slash_command(
        bot,
        "set default suggested_prompts What changed this week? | Draft a status update",
        user=ADMIN,
    )
    assert "suggested_prompts" in answer, answer
    second = await open_pane(bot)
    offered = _prompts_for(bot, second)
    assert offered is not None
    assert [p["message"] for p in offered["prompts"]] == [
        "What changed this week?",
        "Draft a status update",
    ]
    # The change is audited like every setting.
    audit = await bot.service.store.list_settings_audit(team_id=bot.team_id)
    assert audit[0].field == "suggested_prompts"
    assert audit[0].changed_by == ADMIN


async def test_the_first_answer_titles_the_pane_thread_and_the_thread_is_one_chain(
    bot: BotUnderTest,
) -> None:
    root = await open_pane(bot)
    bot.model.script_reply("Rotate them one at a time.")
    replies = await ask(bot, root, "How do I rotate our API keys safely?", count=1)
    assert shown(replies[0]) == "Rotate them one at a time."
    await bot.slack.wait_for(lambda: bot.slack.titles.get((DM, root)))
    assert bot.slack.titles[(DM, root)] == "How do I rotate our API keys safely?"

    await ask(bot, root, "And the webhooks' secrets?", count=2)
    # One title, from the question that got the first answer; one chain for the thread.
    assert len(bot.slack.calls_to("assistant.threads.setTitle")) == 1
    first, second = bot.model_bodies()
    assert "previous_response_id" not in first
    assert second["previous_response_id"] == bot.model.response_ids[0]
    # The pane's earlier messages are never read back from Slack (the service saw them).
    assert not bot.slack.calls_to("conversations.replies")
    turns = await bot.turns(DM, root)
    assert [t.status for t in turns] == ["completed", "completed"]


async def test_a_pane_message_delivered_twice_is_answered_once(bot: BotUnderTest) -> None:
    root = await open_pane(bot)
    ts = bot.slack.add_message(DM, user=ASKER, text="only once please", thread_ts=root)
    event = {
        "type": "message",
        "channel": DM,
        "user": ASKER,
        "text": "only once please",
        "ts": ts,
        "event_ts": ts,
        "thread_ts": root,
        "channel_type": "im",
    }
    await bot.send_event(event, event_id="EvPANE1")
    await bot.send_event(event, event_id="EvPANE1", retry_num=1)
    await bot.wait_replies(DM, root, 1)
    await bot.wait_idle()
    assert len(bot.model_bodies()) == 1
    assert len(bot.slack.bot_replies(DM, root)) == 1


# ----------------------------------------------------------------- where the person is


async def test_the_model_is_told_which_channel_the_person_is_viewing(bot: BotUnderTest) -> None:
    bot.slack.add_channel("CLAUNCH", members=[ASKER])
    root = await open_pane(bot)
    await move_to(bot, root, "CLAUNCH")
    await ask(bot, root, "What is this channel for?", count=1)
    [body] = bot.model_bodies()
    seen = " ".join(user_texts(body))
    assert "viewing the Slack channel #claunch" in seen
    # Named only: nothing was read from the channel for a question that is no summary.
    assert not bot.slack.calls_to("conversations.history")


async def test_summarise_this_channel_reads_its_last_messages_with_their_authors(
    bot: BotUnderTest,
) -> None:
    bot.slack.add_user("U2", name="alice")
    bot.slack.add_channel("CLAUNCH", members=[ASKER, "U2"])
    bot.slack.add_message("CLAUNCH", user="U2", text="The launch moves to Friday")
    bot.slack.add_message("CLAUNCH", user=ASKER, text="Noted, I'll tell <@U2>'s team")
    root = await open_pane(bot, viewing="CLAUNCH")
    await ask(bot, root, "Summarise this channel", count=1)
    [body] = bot.model_bodies()
    seen = "\n".join(user_texts(body))
    assert "The last 2 messages of #claunch, oldest first" in seen
    assert "alice: The launch moves to Friday" in seen
    assert seen.index("The launch moves") < seen.index("Noted, I'll tell @alice's team")
    assert len(bot.slack.calls_to("conversations.history")) == 1


async def test_summarising_a_channel_the_person_is_not_in_is_refused_without_naming_it(
    bot: BotUnderTest,
) -> None:
    bot.slack.add_user("U2", name="alice")
    bot.slack.add_channel("CSECRET", members=["U2"], private=True)
    bot.slack.add_message("CSECRET", user="U2", text="Acquisition talks with Initech")
    root = await open_pane(bot, viewing="CSECRET")
    bot.model.script_reply("I can't read that channel for you.")
    replies = await ask(bot, root, "Summarise this channel", count=1)
    [body] = bot.model_bodies()
    sent = str(body)
    assert "csecret" not in sent.lower()
    assert "Initech" not in sent
    assert not bot.slack.calls_to("conversations.history")
    assert not bot.slack.calls_to("conversations.info")
    text = shown(replies[0])
    assert NOT_A_MEMBER in text
    assert "csecret" not in text.lower()


async def test_a_channel_the_bot_is_not_in_is_named_but_not_read(bot: BotUnderTest) -> None:
    bot.slack.add_channel("CPUBLIC", members=[ASKER], bot=False)
    root = await open_pane(bot, viewing="CPUBLIC")
    replies = await ask(bot, root, "catch me up", count=1)
    assert "invite me there" in shown(replies[0])
    assert not bot.slack.calls_to("conversations.history")
    seen = " ".join(user_texts(bot.model_bodies()[0]))
    assert "You are not a member of #cpublic" in seen


# ----------------------------------------------------------------- feedback on every answer


async def _answer_in_channel(bot: BotUnderTest) -> tuple[str, dict[str, Any]]:
    bot.model.script_reply("Paris.")
    ts, _ = await bot.mention("capital of France?")
    await bot.wait_replies("C1", ts, 1)
    # Buttons whose message already held the whole text may follow it (at the lowest
    # priority): wait for them rather than for a fixed time.
    await wait_until(lambda: _ending_kinds(bot.slack.bot_replies("C1", ts)[-1]) != set())
    return ts, bot.slack.bot_replies("C1", ts)[-1]


def _ending_kinds(message: dict[str, Any]) -> set[str]:
    return {b["type"] for b in message.get("blocks") or []} & {"context_actions", "actions"}


@pytest.mark.parametrize("native", [True, False], ids=["native-stream", "post-and-update"])
async def test_every_finished_answer_ends_with_the_feedback_buttons(
    start_bot: Any, native: bool
) -> None:
    bot: BotUnderTest = await start_bot(slack_native_streaming=native)
    # A short answer (whole before its first post) and one whose updates already show all of
    # it before the model finishes (its buttons then follow the text).
    bot.model.script_reply("Paris.")
    bot.model.reply(
        "A longer answer, " * 40, delta_count=2, delay_between_deltas=0.3, delay_before_end=2.5
    )
    short, _ = await bot.mention("capital of France?")
    long, _ = await bot.mention("tell me more", channel="C2")
    for channel, ts in (("C1", short), ("C2", long)):
        await bot.wait_replies(channel, ts, 1)
        await wait_until(
            lambda c=channel, t=ts: (
                "context_actions" in _ending_kinds(bot.slack.bot_replies(c, t)[-1])
            )
        )
        [answer] = bot.slack.bot_replies(channel, ts)
        assert shown(answer).strip()  # the text is there, and the buttons after it
        assert answer["blocks"][-1]["type"] == "context_actions"


async def _click(bot: BotUnderTest, message: dict[str, Any], *, positive: bool) -> None:
    before = len(bot.slack.ephemerals)
    payload = bot.slack.feedback_click("C1", message["ts"], user=ASKER, positive=positive)
    status, _ = await bot.interact(payload)
    assert status == 200
    await bot.slack.wait_for(lambda: len(bot.slack.ephemerals) > before)


def _feedback_total(bot: BotUnderTest, value: str) -> float:
    for metric in bot.service.metrics.feedback.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("value") == value:
                return float(sample.value)
    return 0.0


async def test_a_feedback_click_is_stored_counted_in_usage_and_changed_by_a_second(
    bot: BotUnderTest,
) -> None:
    _, answer = await _answer_in_channel(bot)
    kinds = [b["type"] for b in answer.get("blocks") or []]
    assert "context_actions" in kinds
    assert shown(answer) == "Paris."

    await _click(bot, answer, positive=True)
    assert bot.slack.ephemerals[-1]["user"] == ASKER
    assert bot.slack.ephemerals[-1]["text"] == THANKS_GOOD
    _, _, usage = await slash_command(bot, "usage", user=ASKER)
    assert "Feedback, 30 days*: 👍 1 · 👎 0" in usage
    assert "`test-model`: 👍 1 · 👎 0" in usage

    await _click(bot, answer, positive=False)  # changed: still one vote
    assert bot.slack.ephemerals[-1]["text"] == THANKS_BAD
    _, _, usage = await slash_command(bot, "usage", user=ASKER)
    assert "Feedback, 30 days*: 👍 0 · 👎 1" in usage
    assert _feedback_total(bot, "good") == 1
    assert _feedback_total(bot, "bad") == 1

    # The 👎 note offers a comment: its button opens a form, the submission is kept.
    offer = bot.slack.ephemerals[-1]["blocks"][-1]["elements"][0]
    status, _ = await bot.interact(
        {
            "type": "block_actions",
            "team": {"id": "T1"},
            "user": {"id": ASKER},
            "trigger_id": "trigger-comment",
            "container": {"type": "message", "channel_id": "C1", "is_ephemeral": True},
            "channel": {"id": "C1"},
            "actions": [
                {"type": "button", "action_id": offer["action_id"], "value": offer["value"]}
            ],
        }
    )
    assert status == 200
    await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    form = bot.slack.calls_to("views.open")[-1].params["view"]
    status, _ = await bot.interact(
        {
            "type": "view_submission",
            "team": {"id": "T1"},
            "user": {"id": ASKER},
            "view": {
                "id": "VCOMMENT",
                "type": "modal",
                "callback_id": COMMENT_CALLBACK,
                "private_metadata": form["private_metadata"],
                "state": {"values": {"comment": {"text": {"value": "It was Lyon."}}}},
            },
        }
    )
    assert status == 200

    async def comment() -> str | None:
        from sqlalchemy import select

        from storage.models import AnswerFeedback

        async with bot.service.store.reading() as session:
            rows = (await session.execute(select(AnswerFeedback))).scalars().all()
        assert len(rows) == 1
        assert (rows[0].value, rows[0].user_id) == ("bad", ASKER)
        return rows[0].comment

    for _ in range(100):
        if await comment():
            break
        await bot.slack.wait_for(lambda: True, timeout=0.05)
    assert await comment() == "It was Lyon."

    # Per channel and per model for the whole workspace (admins).
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    _, _, workspace = await slash_command(bot, "usage workspace", user=ADMIN)
    assert "Feedback by channel, 30 days*: 👍 0 · 👎 1" in workspace
    assert "<#C1>: 👍 0 · 👎 1" in workspace
    assert "`test-model`: 👍 0 · 👎 1" in workspace


@pytest.mark.parametrize("native", [True, False], ids=["native-stream", "post-and-update"])
async def test_a_surface_that_refuses_feedback_buttons_gets_plain_buttons_that_work(
    start_bot: Any, native: bool
) -> None:
    bot: BotUnderTest = await start_bot(slack_native_streaming=native)
    bot.slack.unsupported_blocks = {"context_actions"}
    _, answer = await _answer_in_channel(bot)
    assert shown(answer) == "Paris."  # the answer is never lost to its buttons
    kinds = [b["type"] for b in answer.get("blocks") or []]
    assert "context_actions" not in kinds
    assert "actions" in kinds
    refused = [c for c in bot.slack.calls if c.error == "invalid_blocks"]
    assert refused  # the feedback buttons were offered first, and refused
    await _click(bot, answer, positive=True)
    assert bot.slack.ephemerals[-1]["text"] == THANKS_GOOD
    counts = await bot.service.store.feedback_since(
        since=(await bot.turns("C1", answer["thread_ts"]))[0].created_at, by="channel"
    )
    assert [(c.key, c.good, c.bad) for c in counts] == [("C1", 1, 0)]


async def test_notes_carry_no_feedback_buttons(bot: BotUnderTest) -> None:
    bot.model.script_error(
        429,
        {"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}},
    )
    ts, _ = await bot.mention("hello?")
    [note] = await bot.wait_replies("C1", ts, 1)
    assert all(b["type"] != "context_actions" for b in note.get("blocks") or [])


# ----------------------------------------------------------------- the status while it works


async def test_loading_messages_come_from_the_workspace_and_the_status_clears_on_every_outcome(
    bot: BotUnderTest,
) -> None:
    # An answer.
    ts, _ = await bot.mention("first")
    await bot.wait_replies("C1", ts, 1)
    started = [s for s in bot.slack.statuses if s["thread_ts"] == ts and s["status"]]
    assert started[0]["loading_messages"] == list(DEFAULT_LOADING_MESSAGES)
    assert bot.slack.statuses[-1] == {
        "channel_id": "C1",
        "thread_ts": ts,
        "status": "",
        "loading_messages": None,
    }

    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    await slash_command(bot, "set default loading_messages Brewing… | Almost there…", user=ADMIN)

    # A note (the model failed).
    bot.model.script_error(
        500, {"error": {"message": "boom", "type": "server_error", "code": "server_error"}}
    )
    bot.model.script_error(
        500, {"error": {"message": "boom", "type": "server_error", "code": "server_error"}}
    )
    ts, _ = await bot.mention("second")
    await bot.wait_replies("C1", ts, 1)
    mine = [s for s in bot.slack.statuses if s["thread_ts"] == ts]
    assert mine[0]["loading_messages"] == ["Brewing…", "Almost there…"]
    assert mine[-1]["status"] == ""
    assert bot.slack.thread_status("C1", ts) == ""


async def test_the_status_clears_when_the_person_stops_the_answer(bot: BotUnderTest) -> None:
    bot.model.script_reply("word " * 40, delta_count=20, delay_between_deltas=0.3)
    ts, _ = await bot.mention("tell me a long story")
    live = await bot.slack.wait_for(
        lambda: [m for m in bot.slack.bot_replies("C1", ts) if shown(m)], timeout=5
    )
    bot.slack.stop_stream_by_user("C1", live[0]["ts"])
    await bot.wait_replies("C1", ts, 2)
    assert [s["status"] for s in bot.slack.statuses if s["thread_ts"] == ts][-1] == ""
    turns = await bot.turns("C1", ts)
    assert turns[0].status == "stopped"
