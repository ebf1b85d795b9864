"""An answer's steps as the user watches them: task cards in a native stream, compact lines
above the text on the fallback path; coalesced through the one pump, neutralised and escaped,
and kept when a long answer is split. ``LiveReplySink`` against the fake Slack Web API,
through slack_sdk's real client and the real rate budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.conversation import IncomingMessage, StepSink, StepStatus, ToolStep
from bot.slack.budget import RateBudget
from bot.slack.client import ScheduledWebClient
from bot.slack.identity import BotIdentity
from bot.slack.reply import LiveReplySink
from bot.slack.reply.steps import MAX_TITLE_CHARS
from bot.slack.tool_texts import STEPS_FALLBACK
from bot.slack.workspaces import WorkspaceClients
from tests.fakes.slack_server import FakeSlack

RUNNING, DONE, FAILED = StepStatus.IN_PROGRESS, StepStatus.COMPLETE, StepStatus.ERROR


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def workspaces(slack: FakeSlack) -> WorkspaceClients:
    def client() -> ScheduledWebClient:
        return ScheduledWebClient(
            budget=budget, token=slack.bot_token, base_url=slack.api_url, timeout=10
        )

    budget = RateBudget()
    return WorkspaceClients.single(
        token=slack.bot_token,
        identity=BotIdentity(user_id="UBOT", bot_id="BBOT", team_id="T1"),
        client=client(),
        stream_client=client(),
    )


def _message(slack: FakeSlack) -> IncomingMessage:
    ts = slack.add_message("C1", user="U1", text="<@UBOT> look it up")
    return IncomingMessage(
        team_id="T1", channel_id="C1", thread_ts=ts, ts=ts, user_id="U1", text="look it up"
    )


def _sink(
    workspaces: WorkspaceClients, message: IncomingMessage, *, native: bool, **kwargs: Any
) -> LiveReplySink:
    return LiveReplySink(
        workspaces=workspaces,
        message=message,
        native_streaming=native,
        flush_interval=kwargs.pop("flush_interval", 0.05),
        **kwargs,
    )


def _step(step_id: str, title: str, status: StepStatus, **kwargs: Any) -> ToolStep:
    return ToolStep(step_id=step_id, title=title, status=status, **kwargs)


def _lines(message: dict[str, Any]) -> list[str]:
    """The step lines a posted message shows above its text."""
    blocks = message.get("blocks") or []
    assert blocks, message
    assert blocks[0]["type"] == "context", blocks
    return str(blocks[0]["elements"][0]["text"]).split("\n")


def _markdown(message: dict[str, Any]) -> str:
    return "".join(
        str(b["text"]) for b in message.get("blocks") or [] if b.get("type") == "markdown"
    )


async def test_the_reply_sink_is_a_step_sink(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    assert isinstance(_sink(workspaces, _message(slack), native=True), StepSink)


async def test_native_stream_shows_each_step_as_a_task_card_updated_in_place(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=True)
    await sink.started()
    await sink.step(_step("call_1", "orders · lookup order 42", RUNNING))
    start = (await slack.wait_for(lambda: slack.calls_to("chat.startStream"), timeout=5))[0]
    assert start.ok
    assert start.params["task_display_mode"] == "timeline"
    assert start.params["chunks"] == [
        {
            "type": "task_update",
            "id": "call_1",
            "title": "orders · lookup order 42",
            "status": "in_progress",
        }
    ]
    await sink.step(
        _step(
            "call_1",
            "orders · lookup order 42",
            DONE,
            sources=(("Order 42", "https://shop.example/orders/42"),),
        )
    )
    await sink.delta("Order 42 shipped ")
    ts = await sink.finish("Order 42 shipped yesterday.")

    assert ts == start.response["ts"]
    assert all(c.ok for c in slack.calls), [c.error for c in slack.calls if not c.ok]
    assert slack.stream_tasks("C1", ts) == [
        {
            "id": "call_1",
            "title": "orders · lookup order 42",
            "status": "complete",
            "sources": [
                {"type": "url", "url": "https://shop.example/orders/42", "text": "Order 42"}
            ],
        }
    ]
    reply = slack.message("C1", ts)
    assert reply is not None
    assert reply["text"] == "Order 42 shipped yesterday."
    # The card came before the text: the cards sit in the answer where they happened.
    kinds = [c["type"] for c in slack.stream_chunks("C1", ts)]
    assert kinds[0] == "task_update"
    assert len(slack.calls_to("chat.stopStream")) == 1


async def test_status_changes_between_two_calls_become_one_call_with_the_latest_states(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=True, flush_interval=0.5)
    await sink.started()
    await sink.step(_step("a", "search · first", RUNNING))
    await slack.wait_for(lambda: slack.calls_to("chat.startStream"), timeout=5)
    # Within one update interval: three changes to two steps.
    await sink.step(_step("b", "search · second", RUNNING))
    await sink.step(_step("a", "search · first", DONE))
    await sink.step(_step("b", "search · second", FAILED))
    await slack.wait_for(lambda: slack.calls_to("chat.appendStream"), timeout=5)
    await asyncio.sleep(0)  # the pump has nothing more to send
    [append] = slack.calls_to("chat.appendStream")
    assert [(c["id"], c["status"]) for c in append.params["chunks"]] == [
        ("a", "complete"),
        ("b", "error"),
    ]
    ts = await sink.finish("Done.")
    assert len(slack.calls_to("chat.appendStream")) == 1  # nothing changed since: not resent
    assert [(t["id"], t["status"]) for t in slack.stream_tasks("C1", ts)] == [
        ("a", "complete"),
        ("b", "error"),
    ]


async def test_a_step_that_repeats_its_state_sends_nothing(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=True)
    await sink.started()
    step = _step("a", "search · x", RUNNING)
    await sink.step(step)
    await slack.wait_for(lambda: slack.calls_to("chat.startStream"), timeout=5)
    await sink.step(step)
    await sink.finish("Answer.")
    stop = slack.calls_to("chat.stopStream")[0]
    assert "chunks" not in stop.params  # only the text: the card was already shown as it is
    assert slack.calls_to("chat.appendStream") == []


async def test_fallback_shows_a_compact_line_per_step_above_the_answer_and_keeps_it(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=False)
    await sink.started()
    await sink.step(_step("call_1", "orders · lookup order 42", RUNNING))
    [post] = await slack.wait_for(lambda: slack.calls_to("chat.postMessage"), timeout=5)
    assert post.ok
    assert post.params["text"] == STEPS_FALLBACK  # steps only, no text yet
    ts = post.response["ts"]
    first = slack.message("C1", ts)
    assert first is not None
    assert _lines(first) == [":hourglass_flowing_sand: orders · lookup order 42"]

    await sink.step(_step("call_1", "orders · lookup order 42", DONE))
    await sink.step(
        _step("call_2", "web · search", FAILED, sources=(("Docs", "https://docs.example/a"),))
    )
    assert await sink.finish("Order 42 shipped.") == ts

    [reply] = slack.bot_replies("C1", message.thread_ts)
    assert _lines(reply) == [
        ":white_check_mark: orders · lookup order 42",
        ":x: web · search · <https://docs.example/a|Docs>",
    ]
    assert _markdown(reply) == "Order 42 shipped."
    assert slack.calls_to("chat.startStream") == []
    assert all(c.ok for c in slack.calls)


async def test_what_steps_show_cannot_notify_a_channel_nor_inject_markup(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    hostile = "lookup <!channel> @here <https://evil.example|click> & " + "x" * 300
    for native in (True, False):
        message = _message(slack)
        sink = _sink(workspaces, message, native=native)
        await sink.started()
        await sink.step(
            _step(
                "s",
                hostile,
                DONE,
                details="for <!everyone>",
                sources=(("<!here> source", "https://ok.example/"),),
            )
        )
        if native:
            await slack.wait_for(lambda: slack.calls_to("chat.startStream"), timeout=5)
        ts = await sink.finish("ok")
        assert ts is not None
        if native:
            [card] = slack.stream_tasks("C1", ts)
            shown = [card["title"], card["details"], card["sources"][0]["text"]]
            assert len(card["title"]) <= MAX_TITLE_CHARS
        else:
            reply = slack.message("C1", ts)
            assert reply is not None
            shown = _lines(reply)
            title, link = shown[0].split(" · ")
            assert len(title) <= MAX_TITLE_CHARS + len(":white_check_mark: ")
            assert link == "<https://ok.example/|&lt;!here&gt; source>"  # escaped, links nowhere
            shown[0] = title
        for text in shown:
            for broadcast in ("<!channel>", "<!here>", "<!everyone>", "@here"):
                assert broadcast not in text, text
            assert "<https://evil" not in text
        assert "&lt;https://evil.example|click&gt; &amp;" in shown[0]
        assert shown[0].endswith("…")


async def test_a_long_answer_with_steps_is_split_and_the_lines_stay_on_its_first_message(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=False, limit=400)
    await sink.started()
    await sink.step(_step("a", "docs · fetch page", RUNNING))
    await slack.wait_for(lambda: slack.calls_to("chat.postMessage"), timeout=5)
    await sink.step(_step("a", "docs · fetch page", DONE))
    answer = "\n\n".join(f"Paragraph {n}: " + "words " * 20 for n in range(8))
    for piece in range(0, len(answer), 90):
        await sink.delta(answer[piece : piece + 90])
        await asyncio.sleep(0.01)
    await sink.finish(answer)

    replies = slack.bot_replies("C1", message.thread_ts)
    assert len(replies) >= 3
    assert _lines(replies[0]) == [":white_check_mark: docs · fetch page"]
    for later in replies[1:]:
        assert all(b["type"] != "context" for b in later.get("blocks") or [])
    shown = "".join(_markdown(r) for r in replies)
    assert "".join(shown.split()) == "".join(answer.split())
    assert all(c.ok for c in slack.calls)


async def test_a_long_native_answer_with_steps_keeps_its_cards_in_the_first_message(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=True, limit=400)
    await sink.started()
    await sink.step(_step("a", "docs · fetch page", RUNNING))
    await slack.wait_for(lambda: slack.calls_to("chat.startStream"), timeout=5)
    await sink.step(_step("a", "docs · fetch page", DONE))
    answer = "\n\n".join(f"Paragraph {n}: " + "words " * 20 for n in range(8))
    for piece in range(0, len(answer), 90):
        await sink.delta(answer[piece : piece + 90])
        await asyncio.sleep(0.01)
    first_ts = await sink.finish(answer)

    assert first_ts is not None
    assert slack.stream_tasks("C1", first_ts) == [
        {"id": "a", "title": "docs · fetch page", "status": "complete"}
    ]
    replies = slack.bot_replies("C1", message.thread_ts)
    assert len(replies) >= 3
    shown = "".join(r["text"] if not r.get("blocks") else _markdown(r) for r in replies)
    assert "".join(shown.split()) == "".join(answer.split())
    assert all(c.ok for c in slack.calls)


async def test_steps_of_an_empty_answer_still_end_with_the_empty_answer_note(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=False)
    await sink.started()
    await sink.step(_step("a", "tool · x", DONE))
    ts = await sink.finish("")
    reply = slack.message("C1", str(ts))
    assert reply is not None
    assert _lines(reply) == [":white_check_mark: tool · x"]
    assert "empty answer" in _markdown(reply)


async def test_steps_shown_only_as_the_answer_finishes_go_in_its_one_call(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    # The final text arrives before the pump opened a message: the one post carries both
    # (a finished answer is never opened as a stream).
    message = _message(slack)
    sink = _sink(workspaces, message, native=True)
    await sink.started()
    await sink.step(_step("a", "tool · x", DONE))
    ts = await sink.finish("Answer.")
    reply = slack.message("C1", str(ts))
    assert reply is not None
    assert _lines(reply) == [":white_check_mark: tool · x"]
    assert _markdown(reply) == "Answer."


async def test_many_steps_fit_one_context_block(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=False)
    await sink.started()
    for n in range(40):
        await sink.step(_step(f"s{n}", f"tool · call number {n} " + "y" * 100, DONE))
    ts = await sink.finish("All done.")
    reply = slack.message("C1", str(ts))
    assert reply is not None
    lines = _lines(reply)
    assert lines[0].startswith("…and ")
    assert lines[-1].startswith(":white_check_mark: tool · call number 39")
    assert all(c.ok for c in slack.calls)


@pytest.mark.parametrize("native", [True, False])
async def test_the_first_text_after_steps_goes_at_once_later_changes_wait_their_turn(
    slack: FakeSlack, workspaces: WorkspaceClients, native: bool
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=native, flush_interval=30.0)
    await sink.started()
    await sink.step(_step("a", "tool · x", DONE))
    await slack.wait_for(lambda: [c for c in slack.calls if c.method.startswith("chat.")])
    growing = "chat.appendStream" if native else "chat.update"

    await sink.delta("The first words")
    # Not held back by the 30-second update interval: the message had no text yet.
    [first] = await slack.wait_for(lambda: slack.calls_to(growing), timeout=5)
    assert "The first words" in str(first.params)
    await sink.step(_step("b", "tool · y", RUNNING))
    await asyncio.sleep(0.2)
    assert len(slack.calls_to(growing)) == 1  # coalesced until the interval (or the end)
    await sink.finish("The first words, and the rest.")
    assert all(c.ok for c in slack.calls)


async def test_a_burst_of_step_changes_costs_a_few_calls_and_ends_at_the_latest_states(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=True, flush_interval=0.2)
    await sink.started()
    for n in range(60):
        status = RUNNING if n < 59 else DONE
        await sink.step(_step(f"call_{n % 6}", f"tool · call {n % 6}", status, details=f"{n}"))
        await asyncio.sleep(0.01)
    ts = await sink.finish("Done.")

    calls = [c for c in slack.calls if c.method.startswith("chat.")]
    assert len(calls) <= 8, [c.method for c in calls]  # ~0.6 s of changes, 0.2 s apart
    tasks = {t["id"]: t for t in slack.stream_tasks("C1", str(ts))}
    assert sorted(tasks) == [f"call_{n}" for n in range(6)]
    assert tasks["call_5"]["status"] == "complete"
    assert tasks["call_5"]["details"] == "59"
    assert all(c.ok for c in slack.calls)


async def test_a_stream_that_expires_while_a_step_waits_goes_on_in_a_new_message(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    # A call waiting for approval can outlast a stream (Slack ends one after ~5 minutes).
    message = _message(slack)
    sink = _sink(workspaces, message, native=True)
    await sink.started()
    await sink.step(_step("call_1", "orders · cancel order 42", RUNNING, details="approval?"))
    [start] = await slack.wait_for(lambda: slack.calls_to("chat.startStream"), timeout=5)
    slack.expire_stream("C1", start.response["ts"])

    await sink.step(_step("call_1", "orders · cancel order 42", DONE))
    await sink.delta("Cancelled.")
    await slack.wait_for(lambda: len(slack.calls_to("chat.startStream")) == 2, timeout=5)
    await sink.finish("Cancelled.")

    replies = slack.bot_replies("C1", message.thread_ts)
    assert len(replies) == 2
    assert slack.stream_tasks("C1", start.response["ts"])[0]["status"] == "in_progress"
    # The rest went on in a new stream (the budget allows one), the card at its latest state.
    second = replies[1]
    assert [t["status"] for t in slack.stream_tasks("C1", second["ts"])] == ["complete"]
    assert second["text"] == "Cancelled."


async def test_a_corrected_final_text_keeps_the_step_lines(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    message = _message(slack)
    sink = _sink(workspaces, message, native=False)
    await sink.started()
    await sink.step(_step("a", "web · search", DONE))
    await sink.delta("Let me think about the question first. ")
    await slack.wait_for(
        lambda: (
            [c for c in slack.calls_to("chat.update") if "Let me" in str(c.params)]
            or [c for c in slack.calls_to("chat.postMessage") if "Let me" in str(c.params)]
        )
    )
    # The finished response's text is not what was streamed (a relay streamed reasoning).
    ts = await sink.finish("The answer is 42.")

    reply = slack.message("C1", str(ts))
    assert reply is not None
    assert _lines(reply) == [":white_check_mark: web · search"]
    assert _markdown(reply) == "The answer is 42."


async def test_a_final_text_waits_for_a_stream_being_started_and_never_doubles_it(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    # (Without steps: the same pump path.) A stream expires mid-answer; the rest starts a new
    # one, and the final text arrives while Slack is still answering that start.
    message = _message(slack)
    sink = _sink(workspaces, message, native=True)
    await sink.started()
    await sink.delta("Part one. ")
    [first] = await slack.wait_for(lambda: slack.calls_to("chat.startStream"), timeout=5)
    slack.expire_stream("C1", first.response["ts"])
    slack.slow_next("chat.startStream", 0.3)

    await sink.delta("Part two.")
    await slack.wait_for(lambda: len(slack.calls_to("chat.startStream")) == 2, timeout=5)
    await sink.finish("Part one. Part two.")

    replies = slack.bot_replies("C1", message.thread_ts)
    assert "".join(r["text"] for r in replies) == "Part one. Part two."
    assert len(replies) == 2
    assert len(slack.calls_to("chat.stopStream")) == 1  # the second stream, closed
    assert slack.calls_to("chat.postMessage") == []
