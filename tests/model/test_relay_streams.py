"""What relays do to a stream, and the text that wins: the final response's, then each part's
``output_text.done``, then the deltas; JSON bodies recognised by their content; ``[DONE]``
without ``response.completed``; absurd usage figures.

Accumulator cases feed decoded events directly; client cases go over real HTTP to the fake
Responses server in its relay modes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from bot.errors import ErrorMeaning, ResponseFailedError, StreamProtocolError
from bot.model.accumulator import MAX_PLAUSIBLE_TOKENS, StreamAccumulator, normalise_usage
from bot.model.client import ResponsesClient
from bot.model.retry import RetryPolicy
from bot.model.types import Completed, ModelEvent, ResponseRequest, TextDelta, Usage
from tests.fakes.responses_server import FakeResponsesServer

CREATED = {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}


def added(index: int, kind: str = "message") -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": index, "item": {"type": kind}}


def item_done(index: int, kind: str = "message") -> dict[str, Any]:
    return {"type": "response.output_item.done", "output_index": index, "item": {"type": kind}}


def delta(text: str, index: int | None = 0) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "response.output_text.delta", "delta": text}
    if index is not None:
        event.update(output_index=index, content_index=0)
    return event


def text_done(text: str, index: int = 0) -> dict[str, Any]:
    return {
        "type": "response.output_text.done",
        "output_index": index,
        "content_index": 0,
        "text": text,
    }


def completed(output: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
    response = {"id": "resp_1", "status": "completed", "output": output, "usage": usage}
    return {"type": "response.completed", "response": response}


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "content": [{"type": "output_text", "text": text}]}


def feed_all(events: list[dict[str, Any]], *, done_sentinel: bool = False) -> list[ModelEvent]:
    acc = StreamAccumulator()
    out: list[ModelEvent] = []
    for event in events:
        out += acc.feed(event)
    out += acc.finish(done_sentinel=done_sentinel)
    return out


def final_text(events: list[ModelEvent]) -> str:
    last = events[-1]
    assert isinstance(last, Completed)
    return last.result.text


# ------------------------------------------------------------------ text sources


def test_text_only_in_output_text_done_is_shown_and_is_the_answer() -> None:
    events = feed_all([CREATED, added(0), text_done("All here."), item_done(0), completed([])])
    assert events[0] == TextDelta("All here.")
    assert final_text(events) == "All here."


def test_a_done_text_that_differs_from_the_deltas_wins_when_the_output_is_empty() -> None:
    events = feed_all(
        [CREATED, added(0), delta("Helo wrld"), text_done("Hello world"), completed([])]
    )
    assert final_text(events) == "Hello world"


def test_reasoning_flattened_into_the_deltas_is_replaced_by_the_final_output() -> None:
    events = feed_all(
        [
            CREATED,
            delta("Let me think. ", index=None),
            delta("It is 4.", index=None),
            completed([{"type": "reasoning", "summary": []}, message("It is 4.")]),
        ]
    )
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me think. It is 4."
    assert final_text(events) == "It is 4."


def test_the_final_output_wins_over_deltas_and_done_texts() -> None:
    events = feed_all(
        [CREATED, added(0), delta("draft"), text_done("draft"), completed([message("final")])]
    )
    assert final_text(events) == "final"


# ------------------------------------------------------------------ [DONE] without completed


def test_done_after_a_whole_answer_completes_with_unknown_usage() -> None:
    events = feed_all(
        [CREATED, added(0), delta("Whole "), delta("answer."), text_done("Whole answer.")],
        done_sentinel=True,
    )
    last = events[-1]
    assert isinstance(last, Completed)
    assert (last.result.response_id, last.result.text) == ("resp_1", "Whole answer.")
    assert last.result.usage == Usage()


def test_done_after_the_message_item_closed_completes_too() -> None:
    events = feed_all([CREATED, added(0), delta("Fine."), item_done(0)], done_sentinel=True)
    assert final_text(events) == "Fine."


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([CREATED, added(0), delta("Half")], id="part-never-closed"),
        pytest.param([added(0), delta("x"), text_done("x")], id="no-response-id"),
        pytest.param([CREATED], id="no-text"),
        pytest.param([CREATED, delta("a", index=None)], id="unindexed-deltas"),
    ],
)
def test_done_after_an_unfinished_answer_is_a_break(events: list[dict[str, Any]]) -> None:
    with pytest.raises(StreamProtocolError) as info:
        feed_all(events, done_sentinel=True)
    assert info.value.code == "stream_interrupted"


def test_done_after_an_error_event_is_that_error() -> None:
    with pytest.raises(ResponseFailedError) as info:
        feed_all(
            [CREATED, {"type": "error", "code": "context_length_exceeded", "message": "long"}],
            done_sentinel=True,
        )
    assert info.value.meaning is ErrorMeaning.CONTEXT_LENGTH


def test_a_bare_final_response_frame_is_the_terminal_event() -> None:
    events = feed_all(
        [
            CREATED,
            delta("Hi"),
            {"id": "resp_1", "object": "response", "status": "completed", "output": []},
        ]
    )
    assert final_text(events) == "Hi"


# ------------------------------------------------------------------ usage figures


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"input_tokens": 1e20, "output_tokens": 5}, Usage(0, 0, 5, 0, 5)),
        ({"input_tokens": float("inf"), "output_tokens": float("nan")}, Usage()),
        ({"input_tokens": -12, "output_tokens": 3, "total_tokens": -9}, Usage(0, 0, 3, 0, 3)),
        ({"input_tokens": "12", "output_tokens": "1e2"}, Usage(12, 0, 100, 0, 112)),
        ({"input_tokens": "many", "output_tokens": True}, Usage()),
        ({"input_tokens": MAX_PLAUSIBLE_TOKENS + 1, "output_tokens": 1}, Usage(0, 0, 1, 0, 1)),
        (
            {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 50},
                "output_tokens": 4,
                "output_tokens_details": {"reasoning_tokens": 9},
            },
            Usage(10, 10, 4, 4, 14),
        ),
    ],
)
def test_absurd_usage_figures_are_dropped_not_trusted(raw: dict[str, Any], expected: Usage) -> None:
    assert normalise_usage(raw) == expected


# ------------------------------------------------------------------ over HTTP, relay modes

KEY = "relay-key"


@pytest.fixture
async def fake() -> AsyncIterator[FakeResponsesServer]:
    async with FakeResponsesServer(api_key=KEY) as server:
        yield server


@pytest.fixture
async def client(fake: FakeResponsesServer) -> AsyncIterator[ResponsesClient]:
    async with ResponsesClient(
        base_url=fake.base_url, api_key=KEY, retry=RetryPolicy.no_delay(0)
    ) as client:
        yield client


async def stream_all(client: ResponsesClient) -> list[ModelEvent]:
    async with aclosing(client.stream(ResponseRequest(model="m", input="hi"))) as events:
        return [event async for event in events]


@pytest.mark.parametrize(
    "variant",
    [
        {"flatten_reasoning": True},
        {"text_in_done_only": True},
        {"body_as": "text/plain"},
        {"body_as": "text/event-stream"},
        {"body_as": "application/octet-stream"},
        {"end_with_done": True},
    ],
)
async def test_every_relay_variant_of_one_answer_gives_that_answer(
    fake: FakeResponsesServer, client: ResponsesClient, variant: dict[str, Any]
) -> None:
    fake.reply("The answer.", **variant)
    events = await stream_all(client)
    assert final_text(events) == "The answer."
    assert isinstance(events[-1], Completed)
    assert events[-1].result.response_id == fake.response_ids[0]


async def test_a_failed_json_body_under_an_event_stream_type_is_that_failure(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    body = (
        b'\n {"id":"resp_9","status":"failed","output":[],"error":{"code":null,'
        b'"message":"Previous response with id \'resp_8\' not found."}}'
    )
    fake.raw(body, content_type="text/event-stream", chunk_size=7)
    with pytest.raises(ResponseFailedError) as info:
        await stream_all(client)
    assert info.value.meaning is ErrorMeaning.LOST_CHAIN


async def test_an_event_stream_that_starts_with_a_comment_is_still_a_stream(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    frames = (
        ": OPENROUTER PROCESSING\n\n"
        'data: {"type":"response.created","response":{"id":"resp_c"}}\n\n'
        'data: {"type":"response.output_text.delta","output_index":0,"delta":"ok"}\n\n'
        'data: {"type":"response.completed","response":{"id":"resp_c","output":[]}}\n\n'
    )
    fake.raw(frames, content_type="application/json")  # the content-type does not decide
    assert final_text(await stream_all(client)) == "ok"
