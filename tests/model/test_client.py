"""ResponsesClient against the fake Responses server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.errors import (
    ChainNotFoundError,
    ContextTooLongError,
    ModelAuthError,
    ModelBadRequestError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelServerError,
    ModelStreamError,
    ModelTimeoutError,
    QuotaExceededError,
    ResponseFailedError,
    ResponseIncompleteError,
    StreamProtocolError,
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
from bot.model.http_errors import error_from_response
from tests.fakes.responses_server import FakeResponsesServer

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
async def fake() -> AsyncIterator[FakeResponsesServer]:
    async with FakeResponsesServer(api_key=KEY) as server:
        yield server


def make_client(fake: FakeResponsesServer, **kwargs: Any) -> ResponsesClient:
    options: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": KEY,
        "idle_timeout": 2.0,
        "total_timeout": 10.0,
        "retry": RetryPolicy.no_delay(),
        **kwargs,
    }
    return ResponsesClient(**options)


@pytest.fixture
async def client(fake: FakeResponsesServer) -> AsyncIterator[ResponsesClient]:
    async with make_client(fake) as c:
        yield c


def ask(text: str = "What is 4200 + 42?", **kwargs: Any) -> ResponseRequest:
    return ResponseRequest(model="fake-model", input=text, **kwargs)


async def collect(client: ResponsesClient, request: ResponseRequest) -> list[ModelEvent]:
    return [event async for event in client.stream(request)]


async def collect_into(
    client: ResponsesClient, request: ResponseRequest, seen: list[ModelEvent]
) -> None:
    """Like ``collect``, but what arrived before an exception stays in ``seen``."""
    async for event in client.stream(request):
        seen.append(event)


def streamed_text(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def error_json(
    code: str | None,
    message: str = "nope",
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ------------------------------------------------------------------ happy paths


async def test_stream_sends_what_the_endpoint_expects_and_yields_the_answer(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.reply("4200 + 42 equals 4242.", delta_count=4)
    events = await collect(client, ask(instructions="Be brief."))

    assert streamed_text(events) == "4200 + 42 equals 4242."
    done = events[-1]
    assert isinstance(done, Completed)
    assert done.result.text == "4200 + 42 equals 4242."
    assert done.result.response_id.startswith("resp_")
    assert done.result.model == "fake-model"
    (request,) = fake.requests
    assert request["path"] == "/v1/responses"
    assert request["body"] == {
        "model": "fake-model",
        "input": "What is 4200 + 42?",
        "stream": True,
        "store": True,
        "instructions": "Be brief.",
        "truncation": "auto",
    }
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["accept"] == "text/event-stream"
    assert request["headers"]["user-agent"] == "slack-responses-bot"


async def test_create_returns_text_and_usage(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.reply("four", usage={"input_tokens": 9, "output_tokens": 2, "cached_tokens": 1})
    result = await client.create(ask())
    assert result.text == "four"
    assert result.usage == Usage(input_tokens=9, cached_tokens=1, output_tokens=2, total_tokens=11)
    assert fake.requests[0]["body"]["stream"] is False
    assert fake.requests[0]["headers"]["accept"] == "application/json"


@pytest.mark.parametrize("streamed", [True, False])
async def test_seed_relay_usage_naming_is_normalised(
    fake: FakeResponsesServer, client: ResponsesClient, streamed: bool
) -> None:
    counts = {"input_tokens": 30, "cached_tokens": 8, "output_tokens": 12, "reasoning_tokens": 5}
    fake.reply("relayed", usage_style="relay", usage=counts)
    if streamed:
        done = (await collect(client, ask()))[-1]
        assert isinstance(done, Completed)
        result = done.result
    else:
        result = await client.create(ask())
    assert result.usage == Usage(
        input_tokens=30, cached_tokens=8, output_tokens=12, reasoning_tokens=5, total_tokens=42
    )


async def test_reasoning_is_streamed_apart_from_the_answer(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.reply("The answer.", reasoning=True)
    events = await collect(client, ask())
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == "Thinking about the question."
    assert streamed_text(events) == "The answer."
    assert isinstance(events[-1], Completed)
    assert events[-1].result.text == "The answer."


async def test_a_follow_up_chains_on_previous_response_id(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    first = await client.create(ask("first"))
    events = await collect(client, ask("second", previous_response_id=first.response_id))
    assert streamed_text(events) == "answer 2 to: second"
    assert fake.requests[1]["body"]["previous_response_id"] == first.response_id


async def test_a_lost_chain_is_chain_not_found_and_not_retried(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    first = await client.create(ask("first"))
    fake.forget_all()
    with pytest.raises(ChainNotFoundError) as info:
        await collect(client, ask("second", previous_response_id=first.response_id))
    assert info.value.status_code == 400
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"
    assert info.value.request_id is not None
    assert len(fake.requests) == 2


async def test_scripted_previous_response_not_found(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.previous_response_not_found()
    with pytest.raises(ChainNotFoundError):
        await client.create(ask())


async def test_fake_records_requests_and_issued_ids_for_other_tests(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.script_reply("slow", delay=0.05)
    result = await client.create(ask("hello"))
    (recorded,) = await fake.wait_for_requests(1)
    assert recorded.body == recorded["body"]
    assert recorded.body["input"] == "hello"
    assert recorded.path == "/v1/responses"
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert fake.response_ids == [result.response_id]
    assert result.text == "slow"
    assert fake.pending_scripts == 0


async def test_list_models(fake: FakeResponsesServer, client: ResponsesClient) -> None:
    fake.models = ["gpt-a", "gpt-b"]
    assert await client.list_models() == ["gpt-a", "gpt-b"]
    assert fake.model_list_requests == 1


async def test_trailing_slash_in_base_url(fake: FakeResponsesServer) -> None:
    async with make_client(fake, base_url=fake.base_url + "/") as client:
        assert (await client.create(ask())).text == "answer 1 to: What is 4200 + 42?"
    assert fake.requests[0]["path"] == "/v1/responses"


async def test_a_relay_that_ignores_stream_true_still_works(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    body = (
        b'{"id":"resp_x","status":"completed","model":"m","output":[{"type":"message",'
        b'"content":[{"type":"output_text","text":"whole"}]}],"usage":{"input_tokens":1,'
        b'"output_tokens":2}}'
    )
    fake.raw(body, content_type="application/json")
    events = await collect(client, ask())
    assert events[0] == TextDelta("whole")
    assert isinstance(events[-1], Completed)
    assert events[-1].result.usage.total_tokens == 3


# ------------------------------------------------------------------ in-stream failures


@pytest.mark.parametrize("nested", [True, False])
async def test_stream_failure_is_response_failed_with_code_and_partial_text(
    fake: FakeResponsesServer, client: ResponsesClient, nested: bool
) -> None:
    fake.stream_failure("half an answer", delta_count=2, code="server_error", nested=nested)
    seen: list[ModelEvent] = []
    with pytest.raises(ResponseFailedError) as info:
        await collect_into(client, ask(), seen)
    assert info.value.code == "server_error"
    assert info.value.partial_text == streamed_text(seen) == "half an answer"
    assert info.value.request_id is not None
    assert len(fake.requests) == 1


async def test_incomplete_stream_and_body(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.incomplete("max_output_tokens", text="cut short")
    with pytest.raises(ResponseIncompleteError) as info:
        await collect(client, ask())
    assert (info.value.reason, info.value.partial_text) == ("max_output_tokens", "cut short")
    fake.incomplete("content_filter", text="hidden")
    with pytest.raises(ResponseIncompleteError) as body_info:
        await client.create(ask())
    assert body_info.value.reason == "content_filter"


async def test_dropped_midway_is_a_stream_error_with_partial_text_and_not_retried(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.drop_after(2, text="one two three four")
    seen: list[ModelEvent] = []
    with pytest.raises(ModelStreamError) as info:
        await collect_into(client, ask(), seen)
    assert isinstance(info.value, StreamProtocolError)
    assert info.value.code == "stream_interrupted"
    assert info.value.partial_text == streamed_text(seen) != ""
    assert info.value.response_id is not None
    assert len(fake.requests) == 1


async def test_stalled_stream_is_an_idle_timeout_with_partial_text(
    fake: FakeResponsesServer,
) -> None:
    fake.stall_after(1, text="slow answer here")
    async with make_client(fake, idle_timeout=0.3) as client:
        seen: list[ModelEvent] = []
        with pytest.raises(ModelTimeoutError) as info:
            await collect_into(client, ask(), seen)
    assert info.value.kind == "idle"
    assert isinstance(info.value, ModelTimeoutError)
    assert info.value.partial_text == streamed_text(seen) != ""
    assert len(fake.requests) == 1
    await fake.wait_for_disconnects(1)  # and the stalled connection was closed


async def test_total_timeout_caps_a_stream_that_keeps_going(fake: FakeResponsesServer) -> None:
    fake.reply("x" * 200, delta_count=200, delay_between_deltas=0.02)
    async with make_client(fake, idle_timeout=5.0, total_timeout=0.4) as client:
        with pytest.raises(ModelTimeoutError) as info:
            await collect(client, ask())
    assert info.value.kind == "total"
    assert isinstance(info.value, ModelTimeoutError)
    assert info.value.partial_text.startswith("x")


async def test_total_timeout_caps_a_non_streamed_call(fake: FakeResponsesServer) -> None:
    fake.stall_after(0)
    async with make_client(fake, total_timeout=0.3) as client:
        with pytest.raises(ModelTimeoutError) as info:
            await client.create(ask())
    assert info.value.kind == "total"


async def test_garbage_in_the_stream_is_a_protocol_error(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.raw(b"data: {not json\n\n")
    with pytest.raises(StreamProtocolError):
        await collect(client, ask())


async def test_stream_ending_without_terminal_event_is_a_protocol_error(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.raw(b'data: {"type":"response.output_text.delta","output_index":0,"delta":"hi"}\n\n')
    with pytest.raises(StreamProtocolError) as info:
        await collect(client, ask())
    assert info.value.partial_text == "hi"


# ------------------------------------------------------------------ retries


async def test_429_with_retry_after_ms_is_retried_after_that_delay(
    fake: FakeResponsesServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.error(
        429, error_json("rate_limit_exceeded", type_="requests"), headers={"retry-after-ms": "30"}
    )
    fake.reply("after the wait")
    caplog.set_level(logging.INFO, logger="bot.model.client")
    async with make_client(fake, retry=RetryPolicy(max_retries=2, max_retry_after=1.0)) as client:
        events = await collect(client, ask())
    assert streamed_text(events) == "after the wait"
    assert len(fake.requests) == 2
    (record,) = [r for r in caplog.records if r.name == "bot.model.client"]
    assert record.levelno == logging.INFO
    assert "status 429" in record.getMessage()
    assert "in 0.03 s" in record.getMessage()
    assert KEY not in record.getMessage()


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503])
async def test_transient_statuses_are_retried(
    fake: FakeResponsesServer, client: ResponsesClient, status: int
) -> None:
    fake.error(status, error_json("server_error", type_="server_error"))
    fake.reply("ok")
    assert (await client.create(ask())).text == "ok"
    assert len(fake.requests) == 2


async def test_retries_stop_after_max_retries(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    for _ in range(3):
        fake.error(503, error_json("server_error", type_="server_error"))
    with pytest.raises(ModelServerError) as info:
        await collect(client, ask())
    assert info.value.status_code == 503
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, error_json("invalid_value", param="temperature"), ModelBadRequestError),
        (400, error_json("context_length_exceeded"), ContextTooLongError),
        (403, error_json("unsupported_country_region_territory"), ModelAuthError),
        (404, error_json(None, "Not found"), ModelNotFoundError),
        (422, error_json(None, "bad"), ModelBadRequestError),
        (429, error_json("insufficient_quota", type_="insufficient_quota"), QuotaExceededError),
    ],
)
async def test_request_and_account_errors_are_not_retried(
    fake: FakeResponsesServer,
    client: ResponsesClient,
    status: int,
    body: dict[str, Any],
    expected: type[ModelHTTPError],
) -> None:
    fake.error(status, body)
    fake.reply("must not be reached")
    with pytest.raises(expected) as info:
        await collect(client, ask())
    assert type(info.value) is expected
    assert info.value.status_code == status
    assert len(fake.requests) == 1


async def test_wrong_key_is_an_auth_error_not_retried_and_never_echoed(
    fake: FakeResponsesServer,
) -> None:
    wrong = "sk-wrong-key-9876543210"
    async with make_client(fake, api_key=wrong) as client:
        with pytest.raises(ModelAuthError) as info:
            await client.create(ask())
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert len(fake.requests) == 1
    assert wrong not in str(info.value)


async def test_a_key_echoed_by_the_endpoint_is_scrubbed(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.error(401, error_json("invalid_api_key", f"Incorrect API key provided: {KEY}."))
    with pytest.raises(ModelAuthError) as info:
        await client.create(ask())
    assert KEY not in str(info.value)
    assert "***" in str(info.value)


async def test_connection_refused_is_retried_then_a_connection_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.INFO, logger="bot.model.client")
    async with ResponsesClient(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, retry=RetryPolicy.no_delay(2)
    ) as client:
        with pytest.raises(ModelConnectionError) as info:
            await collect(client, ask())
    assert info.value.code == "connection_error"
    retries = [r for r in caplog.records if r.name == "bot.model.client"]
    assert len(retries) == 2
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert KEY not in str(info.value)


async def test_html_error_page_gives_a_clean_server_error(
    fake: FakeResponsesServer,
) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    fake.error(502, page, content_type="text/html")
    async with make_client(fake, retry=RetryPolicy.no_delay(0)) as client:
        with pytest.raises(ModelServerError) as info:
            await client.create(ask())
    assert str(info.value) == "the model endpoint answered HTTP 502 Bad Gateway"
    assert info.value.code == "server_error"


async def test_a_redirect_is_not_followed_and_the_other_host_gets_nothing(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    seen: list[tuple[str, str, str | None]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Authorization")))
        return web.json_response({"id": "resp_evil", "output": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        elsewhere = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/responses"
        fake.error(307, "", headers={"Location": elsewhere})
        with pytest.raises(ModelHTTPError) as info:
            await collect(client, ask())
        assert info.value.status_code == 307
        assert info.value.code == "redirect_not_followed"
        # A client given by the caller that follows redirects is overridden too.
        fake.error(307, "", headers={"Location": elsewhere})
        async with (
            httpx.AsyncClient(follow_redirects=True) as http,
            make_client(fake, http_client=http) as borrowing,
        ):
            with pytest.raises(ModelHTTPError):
                await borrowing.create(ask())
    finally:
        await runner.cleanup()
    assert seen == []
    assert len(fake.requests) == 2


# ------------------------------------------------------------------ closing the upstream


async def test_breaking_out_of_the_loop_closes_the_upstream_connection(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.reply("y" * 100, delta_count=100, delay_between_deltas=0.02)
    async for event in client.stream(ask()):
        assert isinstance(event, TextDelta)
        break
    await fake.wait_for_disconnects(1)


async def test_aclosing_closes_the_upstream_connection(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.reply("y" * 100, delta_count=100, delay_between_deltas=0.02)
    async with contextlib.aclosing(client.stream(ask())) as events:
        async for _ in events:
            break
    await fake.wait_for_disconnects(1)


async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.reply("z" * 100, delta_count=100, delay_between_deltas=0.02)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in client.stream(ask()):
            first_delta.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await first_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for_disconnects(1)


async def test_a_given_http_client_is_not_closed(fake: FakeResponsesServer) -> None:
    async with httpx.AsyncClient() as http:
        async with make_client(fake, http_client=http) as client:
            assert (await client.create(ask())).text.startswith("answer 1")
        assert not http.is_closed


async def test_the_owned_pool_is_reused_across_streams(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    # After the terminal event the rest of the body is drained, so the connection goes back
    # to the pool: every turn does not pay for a new connection (a TLS handshake in real life).
    for _ in range(3):
        await collect(client, ask())
    await client.create(ask())
    assert len({r["peer"] for r in fake.requests}) == 1


def test_base_url_must_be_absolute_http() -> None:
    with pytest.raises(ValueError, match="base_url"):
        ResponsesClient(base_url="api.example.com/v1", api_key=KEY)


# ------------------------------------------------------------------ the one error mapping


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (
            400,
            error_json("previous_response_not_found", param="previous_response_id"),
            ChainNotFoundError,
            "previous_response_not_found",
        ),
        (
            400,
            error_json(None, "Response resp_1 not found", param="previous_response_id"),
            ChainNotFoundError,
            "previous_response_not_found",
        ),
        (
            400,
            error_json("context_length_exceeded"),
            ContextTooLongError,
            "context_length_exceeded",
        ),
        (400, error_json("model_not_found", param="model"), ModelNotFoundError, "model_not_found"),
        (404, {"detail": "Not Found"}, ModelNotFoundError, "model_not_found"),
        (401, error_json("invalid_api_key"), ModelAuthError, "invalid_api_key"),
        (403, {"error": "forbidden"}, ModelAuthError, "unauthorized"),
        (413, b"too big", ContextTooLongError, "request_too_large"),
        (429, error_json("rate_limit_exceeded"), ModelRateLimitError, "rate_limit_exceeded"),
        (429, error_json("insufficient_quota"), QuotaExceededError, "insufficient_quota"),
        (500, b"", ModelServerError, "server_error"),
        (503, b"\xff\xfe garbage", ModelServerError, "server_error"),
        (302, b"", ModelHTTPError, "redirect_not_followed"),
    ],
)
def test_error_mapping(
    status: int, body: dict[str, Any] | bytes, expected: type[ModelError], code: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    error = error_from_response(status, httpx.Headers({"x-request-id": "req_1"}), raw)
    assert type(error) is expected
    assert error.code == code
    assert error.status_code == status
    assert error.request_id == "req_1"
    assert "<" not in str(error)


def test_error_mapping_carries_param_type_and_retry_after() -> None:
    body = (
        b'{"error":{"message":"m","type":"requests","param":"model","code":"rate_limit_exceeded"}}'
    )
    error = error_from_response(429, httpx.Headers({"Retry-After": "2"}), body)
    assert (error.param, error.error_type, error.retry_after) == ("model", "requests", 2.0)


def test_error_mapping_ignores_content_type_and_truncates_long_messages() -> None:
    error = error_from_response(
        400, httpx.Headers({}), b'{"error":{"message":"' + b"m" * 2000 + b'"}}'
    )
    assert len(str(error)) <= 500
