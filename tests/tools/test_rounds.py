"""The tool round planner: function calls out of a response's output, one
``function_call_output`` per call back, bad arguments answered without running anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.conversation.tool_round import function_call_output, plan_round
from tests.fakes.mcp_server import FakeMcpServer
from tests.tools.conftest import MakeRegistry, run_calls

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "responses"


def completed_output(name: str) -> list[dict[str, Any]]:
    """The ``output`` of the ``response.completed`` event of a recorded stream."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"../shared/fixtures/responses/{name} not present (recordings live outside)")
    for line in path.read_text().splitlines():
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event.get("type") == "response.completed":
                output: list[dict[str, Any]] = event["response"]["output"]
                return output
    raise AssertionError(f"{name} has no response.completed event")


def call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def test_openais_recorded_parallel_calls_are_planned_in_order() -> None:
    tool_round = plan_round(completed_output("openai_function_call_stream.sse"))
    assert [(c.call_id, c.name, c.arguments) for c in tool_round.calls] == [
        ("call_sKC7OABqf2A2PTLCm0CLeRWV", "secret_retrieval_tool", {"password": "mellon"}),
        ("call_OdR3s3xop0vtgkDyWRMLafuH", "secret_retrieval_tool", {"password": "radiance"}),
    ]
    items = tool_round.input_items(
        {"call_OdR3s3xop0vtgkDyWRMLafuH": "second", "call_sKC7OABqf2A2PTLCm0CLeRWV": "first"}
    )
    assert items == [
        {
            "type": "function_call_output",
            "call_id": "call_sKC7OABqf2A2PTLCm0CLeRWV",
            "output": "first",
        },
        {
            "type": "function_call_output",
            "call_id": "call_OdR3s3xop0vtgkDyWRMLafuH",
            "output": "second",
        },
    ]


def test_bedrocks_recorded_call_with_empty_object_arguments() -> None:
    tool_round = plan_round(completed_output("bedrock_mantle_function_call_stream.sse"))
    (only,) = tool_round.calls
    assert (only.call_id, only.name, only.arguments, only.runnable) == (
        "call_0",
        "first_tool",
        {},
        True,
    )


def test_a_text_answer_has_no_round() -> None:
    output: list[dict[str, Any]] = [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "hi", "annotations": []}],
        },
    ]
    tool_round = plan_round(output)
    assert not tool_round.has_calls
    assert tool_round.input_items({}) == []
    assert plan_round(None).calls == ()


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ('{"order_id": "A1"', "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('"A1"', "must be a JSON object, not a string"),
        ("42", "must be a JSON object, not a number"),
        ("null", "must be a JSON object, not null"),
        ("true", "must be a JSON object, not a boolean"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_unusable_arguments_are_answered_with_an_error_and_not_run(
    arguments: str, error: str
) -> None:
    tool_round = plan_round([call("c1", "orders__lookup_order", arguments)])
    (bad,) = tool_round.calls
    assert not bad.runnable
    assert bad.arguments is None
    assert tool_round.runnable == ()
    (item,) = tool_round.input_items({"c1": "ignored: the call was never run"})
    assert item["call_id"] == "c1"
    assert error in item["output"]
    assert "the tool was not run" in item["output"]


def test_arguments_already_decoded_and_empty_arguments_are_accepted() -> None:
    tool_round = plan_round(
        [call("c1", "orders__lookup_order", {"order_id": "A1"}), call("c2", "orders__ping", "")]
    )
    assert [c.arguments for c in tool_round.calls] == [{"order_id": "A1"}, {}]
    assert tool_round.calls[0].raw_arguments == '{"order_id": "A1"}'


def test_calls_without_id_are_skipped_and_repeated_ids_taken_once() -> None:
    output = [
        {"type": "function_call", "name": "orders__lookup_order", "arguments": "{}"},
        call("c1", "orders__lookup_order", '{"order_id": "A1"}'),
        call("c1", "orders__lookup_order", '{"order_id": "A2"}'),
        call("c2", "", "{}"),
    ]
    tool_round = plan_round(output)
    assert [c.call_id for c in tool_round.calls] == ["c1", "c2"]
    assert tool_round.calls[0].arguments == {"order_id": "A1"}
    assert tool_round.calls[1].error == "Error: the function call has no name."


def test_a_call_left_without_output_is_still_answered() -> None:
    tool_round = plan_round([call("c1", "a__b", "{}"), call("c2", "a__c", "{}")])
    items = tool_round.input_items({"c1": "done"})
    assert items == [
        function_call_output("c1", "done"),
        function_call_output("c2", "Error: the tool call was not run."),
    ]


def test_transcript_mode_gets_the_calls_themselves() -> None:
    tool_round = plan_round([call("c1", "orders__lookup_order", '{"order_id":"A1"}')])
    assert tool_round.call_items() == [
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "orders__lookup_order",
            "arguments": '{"order_id":"A1"}',
        }
    ]


async def test_a_round_trip_through_a_real_mcp_server(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry(
        servers=[{"name": "orders", "url": fake_mcp.url, "require_approval": ["refund_order"]}]
    )
    await registry.list_tools()
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        call("c1", "orders__lookup_order", '{"order_id": "A1"}'),
        call("c2", "orders__lookup_order", '{"order_id": '),
        call("c3", "orders__flaky_inventory", '{"sku": "S-9"}'),
        call("c4", "orders__nope", "{}"),
        call("c5", "orders__refund_order", '{"order_id": "A1", "amount": 3}'),
        call("c6", "orders__refund_order", '{"order_id": "A2", "amount": 4}'),
    ]
    tool_round = plan_round(output)
    results = await run_calls(registry, tool_round, approved={"c6"})

    assert set(results) == {"c1", "c3", "c4", "c5", "c6"}  # c2 was never run
    assert {cid: r.status for cid, r in results.items()} == {
        "c1": "ok",
        "c3": "tool_error",
        "c4": "rejected",
        "c5": "rejected",
        "c6": "ok",
    }
    items = tool_round.input_items({cid: r.output for cid, r in results.items()})
    assert [i["call_id"] for i in items] == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert all(i["type"] == "function_call_output" for i in items)
    outputs = [i["output"] for i in items]
    assert outputs[0] == "Order A1: shipped on 2025-03-04, 2 items."
    assert "not valid JSON" in outputs[1]
    assert "inventory database is offline" in outputs[2]
    assert "no tool named 'orders__nope'" in outputs[3]
    assert "needs the approval" in outputs[4]
    assert outputs[5] == "Refunded 4.00 on order A2."
    # Only what was valid, known and approved reached the server.
    assert sorted((c.tool, json.dumps(c.arguments, sort_keys=True)) for c in fake_mcp.calls) == [
        ("flaky_inventory", '{"sku": "S-9"}'),
        ("lookup_order", '{"order_id": "A1"}'),
        ("refund_order", '{"amount": 4.0, "order_id": "A2"}'),
    ]
