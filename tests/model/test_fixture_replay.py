"""Replay every recorded Responses-API body through the real client over HTTP.

The recordings (OpenAI, Azure, OpenRouter, DeepSeek, Bedrock, Copilot) live outside the repo in
``../shared/fixtures/responses``; see its SOURCES.md. The expected text, usage and outcome are
computed here from each file with a plain JSON parse, independently of ``bot.model``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import (
    ModelBadRequestError,
    ModelNotFoundError,
    ModelStreamError,
    ResponseFailedError,
    ResponseIncompleteError,
)
from bot.model import (
    Completed,
    ModelEvent,
    ReasoningDelta,
    ResponseRequest,
    ResponsesClient,
    RetryPolicy,
    TextDelta,
    Usage,
)
from tests.fakes.responses_server import FakeResponsesServer

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "responses"
KEY = "test-key"

if not FIXTURES.is_dir():
    pytest.skip(
        "../shared/fixtures/responses not present: recorded streams live outside the repo",
        allow_module_level=True,
    )

SSE_FILES = sorted(p.name for p in FIXTURES.glob("*.sse"))
BODY_FILES = sorted(p.name for p in FIXTURES.glob("*.json") if not p.name.endswith(".request.json"))
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


def test_every_recording_is_covered() -> None:
    # A new recording dropped into the directory is replayed automatically; this guards
    # against the glob silently matching nothing.
    assert len(SSE_FILES) >= 12
    assert {"openai_text.json", "deepseek_error_400.json"} <= set(BODY_FILES)


# ------------------------------------------------------------------ independent expectations


def payloads(raw: bytes) -> list[dict[str, Any]]:
    """Every ``data:`` JSON of a recording (all of them have one data line per event)."""
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            out.append(json.loads(line[5:]))
    return out


def terminal_response(raw: bytes) -> tuple[str, dict[str, Any]]:
    events = [p for p in payloads(raw) if p["type"] in TERMINAL]
    assert events, "every recording ends with a terminal event"
    return events[-1]["type"], events[-1]["response"]


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response.get("output", [])
        if item["type"] == "message"
        for part in item.get("content", [])
        if part["type"] == "output_text"
    )


def expected_usage(usage: dict[str, Any] | None) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=usage["input_tokens"],
        cached_tokens=usage["input_tokens_details"]["cached_tokens"],
        output_tokens=usage["output_tokens"],
        reasoning_tokens=usage["output_tokens_details"]["reasoning_tokens"],
        total_tokens=usage["total_tokens"],
    )


def reasoning_text(raw: bytes) -> str:
    return "".join(
        p["delta"]
        for p in payloads(raw)
        if p["type"] in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta")
    )


# ------------------------------------------------------------------ plumbing


@pytest.fixture
async def fake() -> AsyncIterator[FakeResponsesServer]:
    async with FakeResponsesServer(api_key=KEY) as server:
        yield server


@pytest.fixture
async def client(fake: FakeResponsesServer) -> AsyncIterator[ResponsesClient]:
    async with ResponsesClient(
        base_url=fake.base_url, api_key=KEY, idle_timeout=5, retry=RetryPolicy.no_delay()
    ) as c:
        yield c


REQUEST = ResponseRequest(model="recorded", input="replay")


async def replay(client: ResponsesClient, seen: list[ModelEvent]) -> None:
    """Stream ``REQUEST``; what arrived stays in ``seen`` when it raises."""
    async for event in client.stream(REQUEST):
        seen.append(event)


def joined(events: list[ModelEvent], kind: type[TextDelta | ReasoningDelta]) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


# ------------------------------------------------------------------ streams


@pytest.mark.parametrize("chunk_size", [None, 61], ids=["whole", "61-byte-writes"])
@pytest.mark.parametrize("name", SSE_FILES)
async def test_recorded_stream(
    fake: FakeResponsesServer, client: ResponsesClient, name: str, chunk_size: int | None
) -> None:
    raw = (FIXTURES / name).read_bytes()
    kind, response = terminal_response(raw)
    text = output_text(response)
    fake.raw(raw, chunk_size=chunk_size)
    seen: list[ModelEvent] = []

    if kind == "response.completed":
        await replay(client, seen)
        done = seen[-1]
        assert isinstance(done, Completed)
        assert [e for e in seen if isinstance(e, Completed)] == [done]
        assert done.result.text == text
        assert joined(seen, TextDelta) == text  # the deltas and the final output agree
        assert done.result.usage == expected_usage(response["usage"])
        assert done.result.response_id == response["id"]
        assert done.result.status == "completed"
    else:
        with pytest.raises(ModelStreamError) as info:
            await replay(client, seen)
        assert info.value.partial_text == joined(seen, TextDelta) == text
        assert info.value.response_id == response["id"]
        assert not any(isinstance(e, Completed) for e in seen)

    thoughts = reasoning_text(raw)
    assert joined(seen, ReasoningDelta) == thoughts
    if thoughts:
        assert thoughts not in joined(seen, TextDelta)
    assert len(fake.requests) == 1


async def test_incomplete_recording_is_incomplete_for_max_output_tokens(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    raw = (FIXTURES / "openai_incomplete_stream.sse").read_bytes()
    fake.raw(raw)
    with pytest.raises(ResponseIncompleteError) as info:
        await replay(client, [])
    assert info.value.reason == "max_output_tokens"
    assert len(info.value.partial_text) == 152  # SOURCES.md: 152 text chars


async def test_error_then_failed_recording_is_response_failed_insufficient_quota(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.raw((FIXTURES / "openai_stream_error_then_failed.sse").read_bytes())
    with pytest.raises(ResponseFailedError) as info:
        await replay(client, [])
    assert info.value.code == "insufficient_quota"
    assert info.value.partial_text == ""


@pytest.mark.parametrize(
    "name", ["openai_function_call_stream.sse", "bedrock_mantle_function_call_stream.sse"]
)
async def test_function_call_only_streams_complete_with_empty_text(
    fake: FakeResponsesServer, client: ResponsesClient, name: str
) -> None:
    fake.raw((FIXTURES / name).read_bytes())
    seen: list[ModelEvent] = []
    await replay(client, seen)
    assert len(seen) == 1
    assert isinstance(seen[0], Completed)
    assert seen[0].result.text == ""


# ------------------------------------------------------------------ non-streamed bodies


@pytest.mark.parametrize("name", ["openai_text.json", "openai_previous_response_id.json"])
async def test_recorded_body(fake: FakeResponsesServer, client: ResponsesClient, name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    body = json.loads(raw)
    fake.raw(raw, content_type="application/json")
    result = await client.create(REQUEST)
    assert result.text == output_text(body) != ""
    assert result.usage == expected_usage(body["usage"])
    assert (result.response_id, result.model) == (body["id"], body["model"])


async def test_openai_text_body_values(fake: FakeResponsesServer, client: ResponsesClient) -> None:
    fake.raw((FIXTURES / "openai_text.json").read_bytes(), content_type="application/json")
    result = await client.create(REQUEST)
    assert result.text == "4200 + 42 equals 4242."
    assert result.usage == Usage(input_tokens=16, output_tokens=11, total_tokens=27)


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
async def test_model_not_found_with_http_400_is_model_not_found(
    fake: FakeResponsesServer, client: ResponsesClient, streamed: bool
) -> None:
    raw = (FIXTURES / "openai_error_model_not_found.json").read_bytes()
    fake.raw(raw, status=400, content_type="application/json")
    call = replay(client, []) if streamed else client.create(REQUEST)
    with pytest.raises(ModelNotFoundError) as info:
        await call
    assert (info.value.status_code, info.value.code, info.value.param) == (
        400,
        "model_not_found",
        "model",
    )
    assert "does not exist" in str(info.value)
    assert len(fake.requests) == 1  # a 400 is not retried


async def test_deepseek_error_sent_as_octet_stream_is_a_bad_request(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    raw = (FIXTURES / "deepseek_error_400.json").read_bytes()
    fake.raw(raw, status=400, content_type="application/octet-stream")
    with pytest.raises(ModelBadRequestError) as info:
        await client.create(REQUEST)
    assert type(info.value) is ModelBadRequestError
    assert info.value.code == "invalid_request_error"
    assert info.value.error_type == "invalid_request_error"
    assert str(info.value) == "No tool output found for tool call call-a."
