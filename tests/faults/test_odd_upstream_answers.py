"""Hostile or odd answers from the model endpoint (issue #11, items 9 and 11), through the real
boundaries: signed Slack events in, the fake Slack and fake Responses servers out, SQLite.

- Absurd usage figures (1e20, Infinity, a 21-digit string, negative, words) are dropped: the
  delivered answer's turn completes, the chain advances, nothing is reported as interrupted.
  On the code before the fix, 1e20, Infinity and the 21-digit string broke the turn after the
  answer was shown (an integer overflow writing the turn, or a crash in the usage parser),
  left it pending and the chain where it was.
- ``context_length_exceeded`` inside a 200 stream (``response.failed``, an ``error`` event
  alone, or a relay's wording without the code) gets the same advice as the HTTP 400 form.
  Before the fix it got "The model service failed while writing this answer".
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown

FAST: dict[str, Any] = {"model_max_retries": 0, "model_idle_timeout": 2}


async def _root(bot: BotUnderTest) -> str:
    root, _ = await bot.mention("hello")
    await bot.wait_replies("C1", root, 1)
    return root


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param({"input_tokens": 1e20, "output_tokens": 7, "total_tokens": 1e20}, id="1e20"),
        pytest.param(
            {"input_tokens": float("inf"), "output_tokens": float("nan")}, id="infinity-nan"
        ),
        pytest.param(
            {"input_tokens": "100000000000000000000", "output_tokens": "7"}, id="21-digit-string"
        ),
        pytest.param(
            {"input_tokens": -40, "output_tokens": -3, "total_tokens": -43}, id="negative"
        ),
        pytest.param({"input_tokens": "lots", "output_tokens": None}, id="words"),
        pytest.param(
            {
                "prompt_tokens": 1e30,
                "completion_tokens": 9,
                "prompt_tokens_details": {"cached_tokens": 1e25},
            },
            id="relay-naming-1e30",
        ),
    ],
)
async def test_absurd_usage_figures_never_break_a_delivered_answer_or_the_chain(
    start_bot: StartBot, usage: dict[str, Any]
) -> None:
    bot = await start_bot(**FAST)
    root = await _root(bot)
    bot.model.reply("The answer, whole.", raw_usage=usage)
    await bot.reply("next", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 2)

    assert shown(replies[1]) == "The answer, whole."  # no note of any kind
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "completed"]
    assert turns[1].response_id == bot.model.response_ids[1]
    # Every stored figure is a plausible count: absurd ones were dropped, not clamped into
    # a budget-breaking number.
    for figure in (turns[1].input_tokens, turns[1].output_tokens, turns[1].cached_tokens):
        assert 0 <= figure <= 100_000_000

    # The chain advanced past the odd answer.
    await bot.reply("and then?", thread_ts=root)
    await bot.wait_replies("C1", root, 3)
    assert bot.model_bodies()[2]["previous_response_id"] == bot.model.response_ids[1]

    # Nothing is left pending to be reported "interrupted" at the next start.
    await bot.service.stop()
    bot = await start_bot(**FAST)
    assert [t.status for t in await bot.turns("C1", root)] == ["completed"] * 3
    assert len(bot.slack.bot_replies("C1", root)) == 3


CONTEXT_MESSAGE = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)
IN_STREAM_OVERFLOWS = [
    pytest.param(
        {"code": "context_length_exceeded", "message": CONTEXT_MESSAGE, "events": "both"},
        id="error-then-failed",
    ),
    pytest.param(
        {"code": "context_length_exceeded", "message": CONTEXT_MESSAGE, "events": "failed_only"},
        id="response.failed",
    ),
    pytest.param(
        {
            "code": "context_length_exceeded",
            "message": CONTEXT_MESSAGE,
            "events": "error_only",
            "nested": False,
        },
        id="flat-error-event-alone",
    ),
    pytest.param(
        {
            # LiteLLM's proxy in a stream: the status as code, the meaning only in the words.
            "code": "400",
            "error_type": "invalid_request_error",
            "message": "litellm.ContextWindowExceededError: litellm.BadRequestError: "
            "ContextWindowExceededError: OpenAIException - This model's maximum context "
            "length is 128000 tokens. However, your messages resulted in 131072 tokens.",
            "events": "both",
        },
        id="litellm-words",
    ),
]


async def _http_overflow_notice(bot: BotUnderTest) -> str:
    bot.model.error(
        400,
        {
            "error": {
                "message": CONTEXT_MESSAGE,
                "type": "invalid_request_error",
                "param": "input",
                "code": "context_length_exceeded",
            }
        },
    )
    ts, _ = await bot.mention("a long one over HTTP")
    [reply] = await bot.wait_replies("C1", ts, 1)
    return shown(reply)


@pytest.mark.parametrize("failure", IN_STREAM_OVERFLOWS)
async def test_a_context_overflow_inside_the_stream_gets_the_same_advice_as_the_http_form(
    start_bot: StartBot, failure: dict[str, Any]
) -> None:
    bot = await start_bot(**FAST)
    http_notice = await _http_overflow_notice(bot)

    root = await _root(bot)
    bot.model.stream_failure("", delta_count=0, **failure)
    await bot.reply("and now a very long paste", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 2)

    assert shown(replies[1]) == http_notice
    assert "new thread" in http_notice, http_notice
    assert "shorten" in http_notice, http_notice
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == "context_length_exceeded"
    # Not "fixed" by re-sending the whole conversation: one call, and the chain is intact.
    assert len(bot.model_bodies()) == 3
    await bot.reply("shorter", thread_ts=root)
    await bot.wait_replies("C1", root, 3)
    assert bot.model_bodies()[3]["previous_response_id"] == bot.model.response_ids[0]
