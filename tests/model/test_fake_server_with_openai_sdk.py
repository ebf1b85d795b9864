"""The fake server speaks the real wire format: the official ``openai`` SDK parses it.

If these pass, tests that use ``FakeResponsesServer`` exercise the same bytes a real endpoint
sends, not a dialect only our own client understands.
"""

from __future__ import annotations

import json
import typing
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from tests.fakes.responses_server import FakeResponsesServer

KEY = "sdk-test-key"

STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeResponsesServer]:
    async with FakeResponsesServer(api_key=KEY) as server:
        yield server


@pytest.fixture
async def sdk(fake: FakeResponsesServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
    yield client
    await client.close()


async def test_sdk_reads_a_non_streamed_answer(
    fake: FakeResponsesServer, sdk: openai.AsyncOpenAI
) -> None:
    fake.reply(usage={"input_tokens": 12, "output_tokens": 5, "cached_tokens": 2})
    response = await sdk.responses.create(model="fake-model", input="What is 2+2?")
    assert response.output_text == "answer 1 to: What is 2+2?"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 5)
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.total_tokens == 17
    assert fake.requests[0]["body"]["input"] == "What is 2+2?"


async def test_sdk_reads_a_streamed_answer_in_openai_order(
    fake: FakeResponsesServer, sdk: openai.AsyncOpenAI
) -> None:
    fake.reply("4200 + 42 equals 4242.", delta_count=3)
    stream = await sdk.responses.create(model="fake-model", input="sum?", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events] == STREAM_ORDER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1]
    assert final.type == "response.completed"
    assert deltas == final.response.output_text == "4200 + 42 equals 4242."
    assert final.response.usage is not None
    assert final.response.usage.total_tokens > 0


@pytest.mark.parametrize("reasoning", [False, True])
async def test_sdk_stream_helper_accumulates_the_same_text(
    fake: FakeResponsesServer, sdk: openai.AsyncOpenAI, reasoning: bool
) -> None:
    # The helper rebuilds the response from the events and checks indexes and item ids as
    # it goes, so it is stricter about consistency than a plain event loop.
    fake.reply("Paris is the capital.", reasoning=reasoning, delta_count=5)
    async with sdk.responses.stream(model="fake-model", input="capital?") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == "Paris is the capital."
    assert [item.type for item in final.output] == (
        ["reasoning", "message"] if reasoning else ["message"]
    )
    assert final.usage is not None
    assert final.usage.output_tokens_details.reasoning_tokens == (8 if reasoning else 0)


def sdk_event_models() -> dict[str, type[BaseModel]]:
    """The SDK's model class for each stream event ``type``."""
    union = typing.get_args(ResponseStreamEvent)[0]  # Annotated[Union[...], discriminator]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        (event_type,) = typing.get_args(model.model_fields["type"].annotation)
        models[event_type] = model
    return models


async def test_fake_bodies_validate_against_the_sdk_models(fake: FakeResponsesServer) -> None:
    # Validation (not the SDK's lenient construction) proves no required field is missing.
    fake.reply("validated", reasoning=True)
    fake.reply("validated")
    fake.stream_failure(nested=False)  # the flat error event is the SDK's own shape
    fake.incomplete("max_output_tokens", text="cut")
    headers = {"Authorization": f"Bearer {KEY}"}
    models = sdk_event_models()
    seen_types: set[str] = set()
    async with httpx.AsyncClient(base_url=fake.base_url, headers=headers) as http:
        for _ in range(3):
            streamed = await http.post(
                "/responses", json={"model": "m", "input": "x", "stream": True}
            )
            assert streamed.headers["content-type"].startswith("text/event-stream")
            frames = [f for f in streamed.text.split("\n\n") if f]
            for frame in frames:
                event_line, data_line = frame.split("\n")
                payload = json.loads(data_line.removeprefix("data: "))
                assert event_line == f"event: {payload['type']}"
                models[payload["type"]].model_validate(payload)
                seen_types.add(payload["type"])
        body = await http.post("/responses", json={"model": "m", "input": "x"})
    assert {"error", "response.failed", "response.reasoning_summary_text.delta"} <= seen_types
    response = Response.model_validate(body.json())
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


async def test_sdk_sees_a_lost_chain_as_bad_request_previous_response_not_found(
    fake: FakeResponsesServer, sdk: openai.AsyncOpenAI
) -> None:
    first = await sdk.responses.create(model="fake-model", input="hi")
    follow_up = await sdk.responses.create(
        model="fake-model", input="again", previous_response_id=first.id
    )
    assert follow_up.previous_response_id == first.id
    fake.forget_all()
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.responses.create(model="fake-model", input="more", previous_response_id=first.id)
    assert info.value.status_code == 400
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"


async def test_sdk_sees_a_wrong_key_as_authentication_error(fake: FakeResponsesServer) -> None:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="wrong", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.responses.create(model="fake-model", input="hi")
    finally:
        await client.close()
    assert info.value.code == "invalid_api_key"


async def test_sdk_reads_the_model_list(fake: FakeResponsesServer, sdk: openai.AsyncOpenAI) -> None:
    fake.models = ["gpt-a", "gpt-b"]
    assert [m.id async for m in sdk.models.list()] == ["gpt-a", "gpt-b"]


async def test_sdk_reads_streamed_parallel_function_calls_and_chains_their_outputs(
    fake: FakeResponsesServer, sdk: openai.AsyncOpenAI
) -> None:
    fake.function_calls(
        ("orders__lookup_order", {"order_id": "A1"}),
        ("orders__lookup_order", {"order_id": "B2"}),
        text="Let me look.",
    )
    tools: list[typing.Any] = [
        {"type": "function", "name": "orders__lookup_order", "parameters": {"type": "object"}}
    ]
    stream = await sdk.responses.create(
        model="fake-model", input="where are A1 and B2?", tools=tools, stream=True
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds.count("response.function_call_arguments.done") == 2
    assert kinds[-1] == "response.completed"
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["message", "function_call", "function_call"]
    # The arguments stream per item (by output_index), and add up to the item's own.
    for done in (e for e in events if e.type == "response.function_call_arguments.done"):
        deltas = "".join(
            e.delta
            for e in events
            if e.type == "response.function_call_arguments.delta"
            and e.output_index == done.output_index
        )
        assert deltas == done.arguments
    final = events[-1]
    assert final.type == "response.completed"
    calls = [item for item in final.response.output if item.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [{"order_id": "A1"}, {"order_id": "B2"}]
    assert final.response.output_text == "Let me look."

    # The outputs go back chained, one per call.
    answer = await sdk.responses.create(
        model="fake-model",
        previous_response_id=final.response.id,
        input=[
            {"type": "function_call_output", "call_id": c.call_id, "output": f"ok {n}"}
            for n, c in enumerate(calls)
        ],
    )
    assert answer.output_text.startswith("answer 2")
    assert all(
        item.get("type") == "function_call_output" for item in fake.requests[-1]["body"]["input"]
    )


async def test_unanswered_or_unknown_calls_are_refused_as_openai_does(
    fake: FakeResponsesServer, sdk: openai.AsyncOpenAI
) -> None:
    fake.function_calls(("t__a", {}), ("t__b", {}))
    first = await sdk.responses.create(model="fake-model", input="go")
    calls = [item for item in first.output if item.type == "function_call"]
    with pytest.raises(openai.BadRequestError, match="No tool output found for function call"):
        await sdk.responses.create(
            model="fake-model",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "x"}],
        )
    with pytest.raises(openai.BadRequestError, match="No tool call found for function call"):
        await sdk.responses.create(
            model="fake-model",
            input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
        )
