"""The stream state machine: answer text only from message items, typed terminal outcomes."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ResponseFailedError, ResponseIncompleteError, StreamProtocolError
from bot.model.accumulator import StreamAccumulator, normalise_usage, result_from_response_json
from bot.model.types import Completed, ModelEvent, ReasoningDelta, TextDelta, Usage

USAGE = {
    "input_tokens": 16,
    "input_tokens_details": {"cached_tokens": 4},
    "output_tokens": 11,
    "output_tokens_details": {"reasoning_tokens": 3},
    "total_tokens": 27,
}


def message(text: str, *, item_id: str = "msg_1") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def response(status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "model": "gpt-x", "status": status, "output": output, **extra}


def delta(text: str, *, index: int = 0, item_id: str = "msg_1", **extra: Any) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "item_id": item_id,
        "output_index": index,
        "content_index": 0,
        "delta": text,
        **extra,
    }


def item_added(index: int, item_type: str, item_id: str = "x") -> dict[str, Any]:
    return {
        "type": "response.output_item.added",
        "output_index": index,
        "item": {"id": item_id, "type": item_type},
    }


def run(events: list[dict[str, Any]]) -> tuple[list[ModelEvent], StreamAccumulator]:
    acc = StreamAccumulator()
    out: list[ModelEvent] = []
    for event in events:
        out += acc.feed(event)
    acc.finish()
    return out, acc


def texts(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def completed(events: list[ModelEvent]) -> Completed:
    last = events[-1]
    assert isinstance(last, Completed)
    return last


CREATED = {"type": "response.created", "response": response("in_progress", [])}


def test_plain_text_stream_yields_deltas_then_completed() -> None:
    events, _ = run(
        [
            CREATED,
            item_added(0, "message"),
            delta("Hel"),
            delta("lo"),
            {
                "type": "response.completed",
                "response": response("completed", [message("Hello")], usage=USAGE),
            },
        ]
    )
    assert events[:2] == [TextDelta("Hel"), TextDelta("lo")]
    result = completed(events).result
    assert (result.response_id, result.text, result.model) == ("resp_1", "Hello", "gpt-x")
    assert result.usage == Usage(16, 4, 11, 3, 27)


def test_reasoning_first_and_rotating_ids_are_tracked_by_output_index() -> None:
    # Copilot gives each event a new item_id; only output_index is stable.
    events, _ = run(
        [
            CREATED,
            item_added(0, "reasoning", "id-1"),
            {
                "type": "response.reasoning_summary_text.delta",
                "item_id": "id-2",
                "output_index": 0,
                "delta": "think",
            },
            {
                "type": "response.reasoning_text.delta",
                "item_id": "id-3",
                "output_index": 0,
                "delta": "raw",
            },
            item_added(1, "message", "id-4"),
            delta("An", index=1, item_id="id-5"),
            delta("swer", index=1, item_id="id-6"),
            {
                "type": "response.completed",
                "response": response(
                    "completed",
                    [
                        {
                            "id": "id-7",
                            "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": "think"}],
                        },
                        message("Answer", item_id="id-8"),
                    ],
                ),
            },
        ]
    )
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [
        ReasoningDelta("think"),
        ReasoningDelta("raw"),
    ]
    assert texts(events) == "Answer"
    assert completed(events).result.text == "Answer"


def test_output_text_in_a_non_message_item_is_not_the_answer() -> None:
    events, _ = run(
        [
            item_added(0, "reasoning"),
            delta("secret", index=0),
            item_added(1, "message"),
            delta("shown", index=1),
            {"type": "response.completed", "response": response("completed", [])},
        ]
    )
    assert texts(events) == "shown"
    assert completed(events).result.text == "shown"


def test_missing_sequence_numbers_and_annotations_are_fine() -> None:
    annotation = {
        "type": "response.output_text.annotation.added",
        "output_index": 0,
        "content_index": 0,
        "annotation": {"type": "url_citation", "url": "https://example.com"},
    }
    events, _ = run(
        [
            delta("a"),
            annotation,
            delta("b"),
            {"type": "response.completed", "response": response("completed", [message("ab")])},
        ]
    )
    assert texts(events) == "ab"


def test_function_call_only_gives_empty_text_and_completes() -> None:
    call = {"id": "fc_1", "type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"}
    events, _ = run(
        [
            item_added(0, "function_call"),
            {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{}"},
            {"type": "response.completed", "response": response("completed", [call])},
        ]
    )
    assert events == [completed(events)]
    assert completed(events).result.text == ""


def test_terminal_output_is_preferred_over_deltas() -> None:
    events, _ = run(
        [
            delta("draft"),
            {"type": "response.completed", "response": response("completed", [message("final")])},
        ]
    )
    assert completed(events).result.text == "final"


@pytest.mark.parametrize(
    "output",
    [
        [],  # no message item at all
        [{"type": "message", "content": []}],  # a relay's skeletal message
    ],
)
def test_deltas_are_the_fallback_when_the_terminal_output_has_no_text(
    output: list[dict[str, Any]],
) -> None:
    events, _ = run(
        [
            delta("from "),
            delta("deltas"),
            {"type": "response.completed", "response": response("completed", output)},
        ]
    )
    assert completed(events).result.text == "from deltas"


def test_refusal_is_shown_as_the_answer() -> None:
    refusal = {"type": "message", "content": [{"type": "refusal", "refusal": "I can't help."}]}
    events, _ = run(
        [
            {
                "type": "response.refusal.delta",
                "output_index": 0,
                "content_index": 0,
                "delta": "I can't help.",
            },
            {"type": "response.completed", "response": response("completed", [refusal])},
        ]
    )
    assert texts(events) == completed(events).result.text == "I can't help."


def test_nested_error_then_failed_without_own_error_uses_the_error_event_code() -> None:
    acc = StreamAccumulator()
    acc.feed(CREATED)
    acc.feed(delta("part"))
    acc.feed(
        {
            "type": "error",
            "error": {
                "type": "insufficient_quota",
                "code": "insufficient_quota",
                "message": "quota",
            },
        }
    )
    with pytest.raises(ResponseFailedError) as info:
        acc.feed({"type": "response.failed", "response": response("failed", [], error=None)})
    assert info.value.code == "insufficient_quota"
    assert info.value.message == "quota"
    assert info.value.partial_text == "part"
    assert info.value.response_id == "resp_1"


def test_failed_uses_its_own_error_code() -> None:
    acc = StreamAccumulator()
    acc.feed({"type": "error", "code": "a", "message": "first"})
    failed = response("failed", [], error={"code": "server_error", "message": "boom"})
    with pytest.raises(ResponseFailedError) as info:
        acc.feed({"type": "response.failed", "response": failed})
    assert info.value.code == "server_error"


@pytest.mark.parametrize(
    "error_event",
    [
        {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None},
        {"type": "error", "error": {"code": "rate_limit_exceeded", "message": "slow down"}},
        {"error": {"code": "rate_limit_exceeded", "message": "slow down"}},  # no type at all
    ],
)
def test_error_event_then_end_of_stream_is_a_failure_with_its_code(
    error_event: dict[str, Any],
) -> None:
    acc = StreamAccumulator()
    acc.feed(delta("so far"))
    acc.feed(error_event)
    with pytest.raises(ResponseFailedError) as info:
        acc.finish()
    assert (info.value.code, info.value.message) == ("rate_limit_exceeded", "slow down")
    assert info.value.partial_text == "so far"


def test_flat_error_without_code_does_not_use_the_event_type_as_code() -> None:
    acc = StreamAccumulator()
    acc.feed({"type": "error", "message": "odd"})
    with pytest.raises(ResponseFailedError) as info:
        acc.finish()
    assert info.value.code == "response_failed"


def test_incomplete_carries_reason_and_partial_text() -> None:
    acc = StreamAccumulator()
    acc.feed(delta("cut sho"))
    incomplete = response(
        "incomplete", [message("cut sho")], incomplete_details={"reason": "max_output_tokens"}
    )
    with pytest.raises(ResponseIncompleteError) as info:
        acc.feed({"type": "response.incomplete", "response": incomplete})
    assert info.value.reason == "max_output_tokens"
    assert info.value.code == "incomplete_max_output_tokens"
    assert info.value.partial_text == "cut sho"


def test_end_without_terminal_is_a_protocol_error_with_partial_text() -> None:
    acc = StreamAccumulator()
    acc.feed(CREATED)
    acc.feed(delta("half"))
    with pytest.raises(StreamProtocolError) as info:
        acc.finish()
    assert info.value.partial_text == "half"
    assert info.value.response_id == "resp_1"


def test_events_after_the_terminal_event_are_ignored() -> None:
    acc = StreamAccumulator()
    out = acc.feed(
        {"type": "response.completed", "response": response("completed", [message("x")])}
    )
    assert isinstance(out[0], Completed)
    assert acc.feed(delta("late")) == []
    acc.finish()  # does not raise


def test_completed_without_any_response_id_is_a_protocol_error() -> None:
    acc = StreamAccumulator()
    with pytest.raises(StreamProtocolError):
        acc.feed({"type": "response.completed", "response": {"status": "completed", "output": []}})


def test_unknown_events_are_ignored() -> None:
    events, _ = run(
        [
            {"type": "response.future_thing", "output_index": 0},
            {"no_type": True},
            delta("ok"),
            {"type": "response.completed", "response": response("completed", [message("ok")])},
        ]
    )
    assert texts(events) == "ok"


# ------------------------------------------------------------------ non-streamed bodies


def test_result_from_body_takes_text_by_item_and_part_type() -> None:
    body = response(
        "completed",
        [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "no"}]},
            {"type": "web_search_call", "status": "completed"},
            {
                "type": "message",
                "content": [{"type": "output_text", "text": "A"}, {"type": "other", "text": "no"}],
            },
            message("B"),
        ],
        usage=USAGE,
    )
    result = result_from_response_json(body)
    assert (result.text, result.response_id, result.status) == ("AB", "resp_1", "completed")
    assert result.usage.total_tokens == 27


def test_result_from_body_uses_top_level_output_text_only_without_messages() -> None:
    assert result_from_response_json({"id": "gen-1", "output": [], "output_text": "x"}).text == "x"


def test_result_from_body_raises_on_failed_and_incomplete() -> None:
    failed = response("failed", [], error={"code": "server_error", "message": "boom"})
    with pytest.raises(ResponseFailedError) as failed_info:
        result_from_response_json(failed)
    assert failed_info.value.code == "server_error"
    incomplete = response(
        "incomplete", [message("par")], incomplete_details={"reason": "content_filter"}
    )
    with pytest.raises(ResponseIncompleteError) as inc_info:
        result_from_response_json(incomplete)
    assert (inc_info.value.reason, inc_info.value.partial_text) == ("content_filter", "par")


def test_result_from_body_without_id_is_a_protocol_error() -> None:
    with pytest.raises(StreamProtocolError):
        result_from_response_json({"status": "completed", "output": [message("x")]})


# ------------------------------------------------------------------ usage


def test_usage_openai_naming() -> None:
    assert normalise_usage(USAGE) == Usage(
        input_tokens=16, cached_tokens=4, output_tokens=11, reasoning_tokens=3, total_tokens=27
    )


def test_usage_relay_naming() -> None:
    relay = {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 8, "text_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 5, "text_tokens": 7},
    }
    assert normalise_usage(relay) == Usage(30, 8, 12, 5, 42)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, Usage()),
        ({}, Usage()),
        ({"input_tokens": 3, "output_tokens": 4}, Usage(3, 0, 4, 0, 7)),
        ({"prompt_tokens": 3, "completion_tokens": 4}, Usage(3, 0, 4, 0, 7)),
        (
            {"input_tokens": None, "output_tokens": "5", "input_tokens_details": None},
            Usage(0, 0, 5, 0, 5),
        ),
    ],
)
def test_usage_edge_cases(raw: dict[str, Any] | None, expected: Usage) -> None:
    assert normalise_usage(raw) == expected
