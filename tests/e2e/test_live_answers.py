"""Live answers: a status at once, text growing while the model writes, the exact whole answer
at the end, Slack's limits and rate budgets respected, broken streams explained."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bot.slack.reply import REASONING_STATUS, THINKING_STATUS
from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown
from tests.fakes.responses_server import last_user_text

ANSWER = ("The answer grows one piece at a time, so the reader sees it arrive. " * 6).strip()


def _content(text: str) -> str:
    """Text without code-fence lines and whitespace: what must be neither lost nor doubled."""
    lines = [line for line in text.split("\n") if not re.match(r"^\s{0,3}(```|~~~)", line)]
    return re.sub(r"\s+", "", "".join(lines))


def _fences_balanced(text: str) -> bool:
    return sum(1 for line in text.split("\n") if re.match(r"^\s{0,3}```", line)) % 2 == 0


async def test_status_first_then_text_grows_before_the_model_finishes(bot: BotUnderTest) -> None:
    bot.model.script_reply(ANSWER, delta_count=8, delay_between_deltas=0.4)
    ts, _ = await bot.mention("stream please")

    # The status shows at once...
    await bot.slack.wait_for(lambda: bot.slack.statuses, timeout=5)
    assert bot.slack.statuses[0]["status"] == THINKING_STATUS
    assert bot.slack.statuses[0]["loading_messages"]
    # ...then part of the answer is visible while the model is still writing...
    partial = await bot.slack.wait_for(
        lambda: [shown(m) for m in bot.slack.bot_replies("C1", ts) if shown(m)], timeout=5
    )
    assert ANSWER.startswith(partial[0])
    assert partial[0] != ANSWER
    # ...and the posted message clears the status.
    assert bot.slack.thread_status("C1", ts) == ""

    [reply] = await bot.wait_replies("C1", ts, 1)
    assert shown(reply) == ANSWER


async def test_native_stream_appends_at_most_about_once_a_second(bot: BotUnderTest) -> None:
    bot.model.script_reply(ANSWER, delta_count=24, delay_between_deltas=0.125)
    ts, _ = await bot.mention("stream please")
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert shown(reply) == ANSWER
    starts = bot.slack.calls_to("chat.startStream")
    assert len(starts) == 1
    assert starts[0].params["recipient_user_id"] == "U1"
    assert starts[0].params["recipient_team_id"] == "T1"
    times = [c.time for c in bot.slack.calls_to("chat.appendStream")]
    assert len(times) >= 1
    gaps = [b - a for a, b in zip([starts[0].time, *times], times, strict=False)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert len(bot.slack.calls_to("chat.stopStream")) == 1


async def test_fallback_edits_at_most_about_once_a_second(start_bot: StartBot) -> None:
    bot = await start_bot(slack_native_streaming=False)
    bot.model.script_reply(ANSWER, delta_count=24, delay_between_deltas=0.125)
    ts, _ = await bot.mention("edit please")
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert shown(reply) == ANSWER
    assert bot.slack.calls_to("chat.startStream") == []
    post = bot.slack.calls_to("chat.postMessage")[0]
    updates = [c.time for c in bot.slack.calls_to("chat.update")]
    assert 1 <= len(updates) <= 5
    gaps = [b - a for a, b in zip([post.time, *updates], updates, strict=False)]
    assert all(gap >= 0.9 for gap in gaps[:-1]), gaps  # the last one is the final, exact text


@pytest.mark.parametrize(
    ("error", "status"),
    [("not_allowed_token_type", 200), ("ratelimited", 429)],
    ids=["refused", "rate-limited"],
)
async def test_when_slack_refuses_native_streaming_the_fallback_delivers_it_all(
    bot: BotUnderTest, error: str, status: int
) -> None:
    bot.slack.fail_next("chat.startStream", error, status=status, retry_after=30)
    bot.model.script_reply(ANSWER, delta_count=5)
    ts, _ = await bot.mention("hi")
    [reply] = await bot.wait_replies("C1", ts, 1)
    assert shown(reply) == ANSWER
    assert len(bot.slack.calls_to("chat.startStream")) == 1  # no waiting out Retry-After


async def test_native_streams_are_chosen_from_the_tier_2_budget_and_never_refused(
    bot: BotUnderTest,
) -> None:
    bot.slack.enforce_tiers()
    roots = []

    def answer(body: dict[str, object], n: int) -> str:
        number = last_user_text(body).rsplit(" ", 1)[-1]
        return (f"answer {number} " * 20).strip()

    bot.model.answerer = answer
    for _ in range(8):
        bot.model.script_reply(None, delta_count=10, delay_between_deltas=0.2)
    for i in range(8):
        ts, _ = await bot.mention(f"question {i}", user=f"U{i}")
        roots.append(ts)
    for ts in roots:
        await bot.wait_replies("C1", ts, 1, timeout=30)
    for i, ts in enumerate(roots):
        assert (
            "".join(shown(r) for r in bot.slack.bot_replies("C1", ts))
            == (f"answer {i} " * 20).strip()
        ), i
    # Tier 2 (~20 a minute) allows a short burst of streams; the other answers fell back to
    # chat.postMessage + chat.update rather than be refused.
    starts = bot.slack.calls_to("chat.startStream")
    assert 1 <= len(starts) < 8
    assert len(bot.slack.calls_to("chat.stopStream")) == len(starts)
    assert [c for c in bot.slack.calls if c.method.endswith("Stream") and c.status == 429] == []


async def test_an_expired_native_stream_continues_in_a_new_message(bot: BotUnderTest) -> None:
    bot.model.script_reply(ANSWER, delta_count=6, delay_between_deltas=0.4)
    ts, _ = await bot.mention("long one")
    first = await bot.slack.wait_for(lambda: bot.slack.bot_replies("C1", ts), timeout=5)
    bot.slack.expire_stream("C1", first[0]["ts"])

    replies = await bot.wait_replies("C1", ts, 2)
    assert "".join(shown(r) for r in replies) == ANSWER


@pytest.mark.parametrize("length", [12_000, 50_000])
@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
async def test_long_answers_continue_in_new_messages_without_loss(
    start_bot: StartBot, length: int, native: bool
) -> None:
    bot = await start_bot(slack_native_streaming=native)
    parts: list[str] = []
    i = 0
    while sum(map(len, parts)) < length:
        if i % 4 == 3:
            parts.append("```python\n" + "\n".join(f"x_{i}_{j} = {j}" for j in range(60)) + "\n```")
        else:
            parts.append(f"Paragraph {i}. " + "Some words that make up a paragraph. " * 20)
        i += 1
    answer = "\n\n".join(parts)
    bot.model.script_reply(answer, delta_count=60)
    ts, _ = await bot.mention("write a lot")
    await bot.wait_replies("C1", ts, 1, timeout=30)

    chunks = [shown(r) for r in bot.slack.bot_replies("C1", ts)]
    assert len(chunks) >= (2 if length > 12_000 else 1)
    assert all(len(c) <= 12_000 for c in chunks)
    assert all(_fences_balanced(c) for c in chunks)
    assert _content("".join(chunks)) == _content(answer)


@pytest.mark.parametrize(
    ("script", "note"),
    [
        ("drop", "broke off"),
        ("failure", "failed while writing"),
        ("incomplete", "length limit"),
        ("stall", "stopped sending"),
    ],
)
async def test_a_broken_stream_keeps_the_text_so_far_and_says_why(
    start_bot: StartBot, script: str, note: str
) -> None:
    bot = await start_bot(model_idle_timeout=0.5)
    text = "First part of the answer. Second part of the answer. Third part."
    if script == "drop":
        bot.model.drop_after(2, text=text)
    elif script == "failure":
        bot.model.stream_failure(text, delta_count=2, code="server_error")
    elif script == "incomplete":
        bot.model.incomplete("max_output_tokens", text=text)
    else:
        bot.model.stall_after(2, text=text)
    ts, _ = await bot.mention("break please")
    replies = await bot.wait_replies("C1", ts, 1)
    visible = "\n".join(shown(r) for r in replies)
    assert note in visible, visible
    assert visible.startswith("First part")
    assert len(bot.model_bodies()) == 1  # nothing retried silently
    [turn] = await bot.turns("C1", ts)
    assert turn.status in {"failed", "incomplete"}


async def test_a_reasoning_model_shows_a_reasoning_status_and_no_reasoning_text(
    bot: BotUnderTest,
) -> None:
    # The model reasons, and sends nothing visible for a second before its answer.
    bot.model.script_reply(
        "\n" * 40 + "Just the answer.", reasoning=True, delta_count=3, delay_between_deltas=0.5
    )
    ts, _ = await bot.mention("think hard")
    [reply] = await bot.wait_replies("C1", ts, 1)
    assert shown(reply) == "Just the answer."
    assert REASONING_STATUS in [s["status"] for s in bot.slack.statuses]


async def test_where_the_status_is_refused_a_reaction_shows_work(bot: BotUnderTest) -> None:
    bot.slack.fail_next("assistant.threads.setStatus", "missing_scope")
    ts, _ = await bot.mention("hi")
    await bot.wait_replies("C1", ts, 1)
    assert [c.params["name"] for c in bot.slack.calls_to("reactions.add")] == [
        "hourglass_flowing_sand"
    ]
    assert len(bot.slack.calls_to("reactions.remove")) == 1


async def test_a_user_stop_cancels_the_model_call_and_keeps_the_chain(bot: BotUnderTest) -> None:
    root, _ = await bot.mention("first")
    await bot.wait_replies("C1", root, 1)
    bot.model.script_reply(ANSWER, delta_count=20, delay_between_deltas=0.3)
    await bot.reply("tell me a long story", thread_ts=root)
    live = await bot.slack.wait_for(
        lambda: [m for m in bot.slack.bot_replies("C1", root)[1:] if shown(m)], timeout=5
    )
    bot.slack.stop_stream_by_user("C1", live[0]["ts"])

    await bot.model.wait_for_disconnects(1, timeout=10)  # the upstream request was closed
    replies = await bot.wait_replies("C1", root, 3)
    assert ANSWER.startswith(shown(replies[1]))
    assert shown(replies[1]) != ANSWER
    assert "Stopped" in shown(replies[2])
    turns = await bot.turns("C1", root)
    assert [(t.status, t.error_code) for t in turns] == [
        ("completed", None),
        ("stopped", "stopped_by_user"),
    ]

    await bot.reply("next", thread_ts=root)
    await bot.wait_replies("C1", root, 4)
    assert bot.model_bodies()[-1]["previous_response_id"] == bot.model.response_ids[0]


def _sse(*events: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events)


@pytest.mark.parametrize(
    ("draft", "final"),
    [
        pytest.param("thinking aloud " * 1500, "Short final.", id="long-draft-short-final"),
        pytest.param(
            "Short draft.",
            ("Long final paragraph. " * 40 + "\n\n") * 20,
            id="short-draft-long-final",
        ),
    ],
)
@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
async def test_the_final_text_replaces_a_streamed_draft_across_messages(
    start_bot: StartBot, draft: str, final: str, native: bool
) -> None:
    """A relay streams one text (reasoning flattened into the answer) and finishes with
    another: the thread ends up showing exactly the final text, in as many messages as it
    needs, none left over."""
    bot = await start_bot(slack_native_streaming=native)
    pieces = [draft[i : i + 2000] for i in range(0, len(draft), 2000)]
    output = [{"type": "message", "content": [{"type": "output_text", "text": final}]}]
    bot.model.raw(
        _sse(
            {"type": "response.created", "response": {"id": "resp_relay", "status": "in_progress"}},
            *({"type": "response.output_text.delta", "delta": piece} for piece in pieces),
            {
                "type": "response.completed",
                "response": {"id": "resp_relay", "status": "completed", "output": output},
            },
        )
    )
    ts, _ = await bot.mention("go")
    await bot.wait_replies("C1", ts, 1, timeout=20)

    shown_texts = [shown(m) for m in bot.slack.bot_replies("C1", ts)]
    # (Trailing whitespace is not shown by Slack, and not sent.)
    assert "".join(shown_texts).replace("\n", "") == final.rstrip().replace("\n", "")
    assert all(len(text) <= 12_000 for text in shown_texts)
    assert len(shown_texts) == (1 if len(final) < 12_000 else 2)
    [turn] = await bot.turns("C1", ts)
    assert (turn.status, turn.response_id) == ("completed", "resp_relay")
