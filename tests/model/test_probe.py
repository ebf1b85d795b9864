"""The cheap checks of an endpoint (chains, tools, streaming) against the fake Responses
server in the modes of real servers and relays, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.model.client import ResponsesClient
from bot.model.probe import check_chains, check_streaming, check_tools
from bot.model.retry import RetryPolicy
from tests.fakes.responses_server import FakeResponsesServer

KEY = "probe-key"


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


@pytest.mark.parametrize(
    ("mode", "style", "chains"),
    [
        ("strict", "openai", "kept"),
        ("strict", "litellm", "kept"),
        ("strict", "one-api", "kept"),
        ("strict", "new-api", "kept"),
        ("strict", "stream", "kept"),
        ("ignore_unknown", "openai", "ignored"),
        ("ignore_all", "openai", "ignored"),
    ],
)
async def test_a_made_up_previous_response_id_tells_whether_chains_are_kept(
    fake: FakeResponsesServer, client: ResponsesClient, mode: Any, style: Any, chains: str
) -> None:
    fake.chain_mode, fake.error_style = mode, style
    check = await check_chains(client, "fake-model")
    assert check.chains == chains, check
    [request] = fake.requests
    body = request.body
    assert body["previous_response_id"].startswith("resp_")
    assert body["previous_response_id"] not in fake.known_response_ids
    assert (body["store"], body["max_output_tokens"], body["stream"]) == (False, 16, False)


async def test_a_probe_that_cannot_tell_says_unknown(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.chain_mode = "ignore_unknown"
    fake.error(429, {"error": {"message": "slow down", "code": "rate_limit_exceeded"}})
    check = await check_chains(client, "fake-model")
    assert check.chains == "unknown"
    assert "rate_limit_exceeded" in check.detail


async def test_a_cut_short_answer_to_the_probe_still_means_it_answered(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    fake.chain_mode = "ignore_unknown"
    fake.incomplete("max_output_tokens")
    assert (await check_chains(client, "fake-model")).chains == "ignored"


async def test_tools_and_streaming(fake: FakeResponsesServer, client: ResponsesClient) -> None:
    assert await check_tools(client, "fake-model") is True
    assert fake.requests[0].body["tools"][0]["type"] == "function"
    fake.error(
        400,
        {
            "error": {
                "message": "tools is not supported in this model.",
                "type": "invalid_request_error",
                "param": "tools",
                "code": "unsupported_parameter",
            }
        },
    )
    assert await check_tools(client, "fake-model") is False
    fake.error(503, {"error": {"message": "busy", "type": "server_error"}})
    assert await check_tools(client, "fake-model") is None

    assert await check_streaming(client, "fake-model") is True
    fake.reply("x", end_with_done=True)
    assert await check_streaming(client, "fake-model") is True
    fake.drop_after(1, text="abc")
    assert await check_streaming(client, "fake-model") is False
