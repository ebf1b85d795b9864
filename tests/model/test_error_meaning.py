"""Errors keep their meaning across relays: the shapes OpenAI, Azure, LiteLLM's proxy and
one-api / new-api relays send, as HTTP errors and inside 200 streams.

The bodies are written faithfully after the public sources named on each (issue threads,
relay source and tests, provider docs); none is invented wording. Each goes through the real
client against the fake server (HTTP) or the stream accumulator (in-stream), never through a
shortcut.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from bot.errors import (
    ChainNotFoundError,
    ContextTooLongError,
    ErrorMeaning,
    ModelAuthError,
    ModelBadRequestError,
    ModelError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelServerError,
    QuotaExceededError,
    ResponseFailedError,
)
from bot.model.accumulator import StreamAccumulator
from bot.model.client import ResponsesClient
from bot.model.error_meaning import (
    ErrorFacts,
    canonical_code,
    classify,
    is_vague_code,
    refused_tool,
)
from bot.model.http_errors import error_from_response
from bot.model.retry import RetryPolicy
from bot.model.types import ResponseRequest
from bot.user_messages import user_message
from tests.fakes.responses_server import FakeResponsesServer

LOST = "Previous response with id 'resp_0a1b2c3d4e5f' not found."


def _e(message: str, **fields: Any) -> dict[str, Any]:
    return {"error": {"message": message, **fields}}


# (status, body, class, meaning, stored code)
HTTP_CASES = [
    # --- OpenAI (api reference "Error codes"; the recorded model_not_found fixture)
    pytest.param(
        400,
        _e(
            LOST,
            type="invalid_request_error",
            param="previous_response_id",
            code="previous_response_not_found",
        ),
        ChainNotFoundError,
        ErrorMeaning.LOST_CHAIN,
        "previous_response_not_found",
        id="openai-lost-chain",
    ),
    pytest.param(
        400,
        _e(
            "Your input exceeds the context window of this model. Please adjust your input "
            "and try again.",
            type="invalid_request_error",
            param="input",
            code="context_length_exceeded",
        ),
        ContextTooLongError,
        ErrorMeaning.CONTEXT_LENGTH,
        "context_length_exceeded",
        id="openai-context",
    ),
    pytest.param(
        429,
        _e(
            "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): "
            "Limit 30000, Used 29500, Requested 1200. Please try again in 1.4s.",
            type="tokens",
            param=None,
            code="rate_limit_exceeded",
        ),
        ModelRateLimitError,
        ErrorMeaning.RATE_LIMIT,
        "rate_limit_exceeded",
        id="openai-rate-limit",
    ),
    pytest.param(
        429,
        _e(
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            param=None,
            code="insufficient_quota",
        ),
        QuotaExceededError,
        ErrorMeaning.QUOTA,
        "insufficient_quota",
        id="openai-quota",
    ),
    # --- Azure OpenAI (its 429, DeploymentNotFound, content filter and key refusal shapes)
    pytest.param(
        429,
        {
            "error": {
                "code": "429",
                "message": "Requests to the Responses_Create Operation under Azure OpenAI API "
                "version 2025-03-01-preview have exceeded token rate limit of your current "
                "OpenAI S0 pricing tier. Please retry after 60 seconds. Please go here: "
                "https://aka.ms/oai/quotaincrease if you would like to further increase the "
                "default rate limit.",
            }
        },
        ModelRateLimitError,
        ErrorMeaning.RATE_LIMIT,
        "rate_limit_exceeded",
        id="azure-token-rate-limit",
    ),
    pytest.param(
        404,
        {
            "error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist. If you "
                "created the deployment within the last 5 minutes, please wait a moment and "
                "try again.",
            }
        },
        ModelNotFoundError,
        ErrorMeaning.UNKNOWN_MODEL,
        "DeploymentNotFound",
        id="azure-deployment-not-found",
    ),
    pytest.param(
        400,
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure "
                "OpenAI's content management policy. Please modify your prompt and retry.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation"},
            }
        },
        ModelBadRequestError,
        ErrorMeaning.CONTENT_FILTER,
        "content_filter",
        id="azure-content-filter",
    ),
    pytest.param(
        401,
        {
            "error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API "
                "endpoint. Make sure to provide a valid key for an active subscription and use "
                "a correct regional API endpoint for your resource.",
            }
        },
        ModelAuthError,
        ErrorMeaning.AUTH,
        "unauthorized",
        id="azure-bad-key",
    ),
    # --- LiteLLM's proxy: "code" is the status as a string, the meaning is in "message"
    pytest.param(
        400,
        _e(
            f"litellm.BadRequestError: OpenAIException - {LOST}",
            type="invalid_request_error",
            param="None",
            code="400",
        ),
        ChainNotFoundError,
        ErrorMeaning.LOST_CHAIN,
        "previous_response_not_found",
        id="litellm-lost-chain",
    ),
    pytest.param(
        400,
        _e(
            "litellm.ContextWindowExceededError: litellm.BadRequestError: "
            "ContextWindowExceededError: OpenAIException - This model's maximum context length "
            "is 128000 tokens. However, your messages resulted in 131072 tokens.",
            type="None",
            param="None",
            code="400",
        ),
        ContextTooLongError,
        ErrorMeaning.CONTEXT_LENGTH,
        "context_length_exceeded",
        id="litellm-context-window",
    ),
    pytest.param(
        400,
        _e(
            "/responses: Invalid model name passed in model=gpt-nope. Call `/v1/models` to "
            "view available models for your key.",
            type="None",
            param="None",
            code="400",
        ),
        ModelNotFoundError,
        ErrorMeaning.UNKNOWN_MODEL,
        "model_not_found",
        id="litellm-invalid-model-name",
    ),
    pytest.param(
        400,
        {"detail": {"error": "/responses: Invalid model name passed in model=gpt-nope"}},
        ModelNotFoundError,
        ErrorMeaning.UNKNOWN_MODEL,
        "model_not_found",
        id="litellm-http-exception-detail",
    ),
    pytest.param(
        429,
        _e(
            "litellm.RateLimitError: AzureException RateLimitError - Requests to the "
            "ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-15-preview "
            "have exceeded token rate limit of your current OpenAI S0 pricing tier.",
            type="None",
            param="None",
            code="429",
        ),
        ModelRateLimitError,
        ErrorMeaning.RATE_LIMIT,
        "rate_limit_exceeded",
        id="litellm-rate-limit",
    ),
    # --- one-api / new-api relays
    pytest.param(
        400,
        _e(
            f"{LOST} (request id: 20261204120000123456789)",
            type="one_api_error",
            param="",
            code="bad_response_status_code",
        ),
        ChainNotFoundError,
        ErrorMeaning.LOST_CHAIN,
        "previous_response_not_found",
        id="one-api-lost-chain",
    ),
    pytest.param(
        400,
        _e(LOST, type="bad_response_status_code", param="", code="bad_response_status_code"),
        ChainNotFoundError,
        ErrorMeaning.LOST_CHAIN,
        "previous_response_not_found",
        id="new-api-lost-chain",
    ),
    pytest.param(
        503,
        {
            "error": {
                "code": "model_not_found",
                "message": "No available channel for model gpt-nope under group default "
                "(distributor) (request id: 20260913074845429824002868d9d60KCSdWH1)",
                "type": "new_api_error",
            }
        },
        ModelNotFoundError,
        ErrorMeaning.UNKNOWN_MODEL,
        "model_not_found",
        id="new-api-no-channel-503",
    ),
    pytest.param(
        403,
        _e(
            # new-api writes amounts with a full-width dollar sign.
            "预扣费额度失败, 用户剩余额度: \uff0412.345678, 需要预扣费额度: \uff041500.000016",
            type="new_api_error",
            code="pre_consume_token_quota_failed",
        ),
        QuotaExceededError,
        ErrorMeaning.QUOTA,
        "pre_consume_token_quota_failed",
        id="new-api-pre-consume-quota",
    ),
    pytest.param(
        403,
        _e("用户额度不足", type="one_api_error", code="insufficient_user_quota"),
        QuotaExceededError,
        ErrorMeaning.QUOTA,
        "insufficient_user_quota",
        id="one-api-user-quota",
    ),
    pytest.param(
        402,
        _e(
            "Budget pool quota has been exhausted. Please ask an administrator to increase the "
            "limit or select another budget pool.",
            type="bad_response_status_code",
            param="",
            code="bad_response_status_code",
        ),
        QuotaExceededError,
        ErrorMeaning.QUOTA,
        "insufficient_quota",
        id="relay-budget-402",
    ),
    pytest.param(
        429,
        _e(
            "Request was rejected due to rate limiting. Details: TPM limit reached.",
            type="bad_response_status_code",
            param="",
            code="bad_response_status_code",
        ),
        ModelRateLimitError,
        ErrorMeaning.RATE_LIMIT,
        "rate_limit_exceeded",
        id="new-api-tpm",
    ),
    pytest.param(
        400,
        _e(
            "bad response status code 400",
            type="upstream_error",
            param="400",
            code="bad_response_status_code",
        ),
        ModelBadRequestError,
        ErrorMeaning.UNKNOWN,
        "bad_response_status_code",
        id="one-api-wrapper-says-nothing",
    ),
    pytest.param(
        500,
        _e("bad response status code 500", type="upstream_error", code="bad_response_status_code"),
        ModelServerError,
        ErrorMeaning.SERVER,
        "server_error",
        id="one-api-500",
    ),
]


@pytest.mark.parametrize(("status", "body", "error_class", "meaning", "code"), HTTP_CASES)
def test_http_error_shapes_of_relays_keep_their_meaning(
    status: int,
    body: dict[str, Any],
    error_class: type[ModelHTTPError],
    meaning: ErrorMeaning,
    code: str,
) -> None:
    # Relays send JSON under any content-type; the body is parsed as is.
    error = error_from_response(status, {}, json.dumps(body).encode())
    assert type(error) is error_class
    assert error.meaning is meaning
    assert error.code == code
    assert error.status_code == status


@pytest.fixture
async def fake() -> AsyncIterator[FakeResponsesServer]:
    async with FakeResponsesServer(api_key="k") as server:
        yield server


@pytest.fixture
async def client(fake: FakeResponsesServer) -> AsyncIterator[ResponsesClient]:
    async with ResponsesClient(
        base_url=fake.base_url, api_key="k", retry=RetryPolicy.no_delay(2)
    ) as client:
        yield client


REQUEST = ResponseRequest(model="fake-model", input="hi")


async def _drain(client: ResponsesClient, request: ResponseRequest) -> None:
    async with aclosing(client.stream(request)) as events:
        async for _ in events:
            pass


async def test_a_relays_unknown_model_503_is_not_retried(
    fake: FakeResponsesServer, client: ResponsesClient
) -> None:
    body = {
        "error": {
            "code": "model_not_found",
            "message": "No available channel for model fake-model under group default "
            "(distributor)",
            "type": "new_api_error",
        }
    }
    fake.error(503, body)
    fake.error(503, body)
    with pytest.raises(ModelNotFoundError):
        await _drain(client, REQUEST)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("style", ["litellm", "one-api", "new-api", "azure", "stream"])
async def test_the_fakes_relay_styles_of_a_lost_chain_are_all_a_lost_chain(
    fake: FakeResponsesServer, client: ResponsesClient, style: Any
) -> None:
    fake.error_style = style
    request = ResponseRequest(model="fake-model", input="hi", previous_response_id="resp_gone")
    with pytest.raises(ModelError) as info:
        await _drain(client, request)
    assert info.value.meaning is ErrorMeaning.LOST_CHAIN
    with pytest.raises(ModelError) as again:
        await client.create(request)
    assert again.value.meaning is ErrorMeaning.LOST_CHAIN


# In-stream: the same meanings when a 200 stream fails (``error`` event and/or
# ``response.failed``), nested as OpenAI recorded it or flat.
STREAM_CASES = [
    pytest.param(
        {"code": "context_length_exceeded", "message": "Your input exceeds the context window."},
        ErrorMeaning.CONTEXT_LENGTH,
        "context_length_exceeded",
        id="openai-context",
    ),
    pytest.param(
        {"code": None, "message": LOST},
        ErrorMeaning.LOST_CHAIN,
        "previous_response_not_found",
        id="relay-lost-chain-words-only",
    ),
    pytest.param(
        {
            "type": "invalid_request_error",
            "code": "400",
            "message": "litellm.ContextWindowExceededError: This model's maximum context "
            "length is 8192 tokens.",
        },
        ErrorMeaning.CONTEXT_LENGTH,
        "context_length_exceeded",
        id="litellm-context",
    ),
    pytest.param(
        {"type": "insufficient_quota", "code": "insufficient_quota", "message": "quota"},
        ErrorMeaning.QUOTA,
        "insufficient_quota",
        id="quota",
    ),
    pytest.param(
        {"code": "rate_limit_exceeded", "message": "Rate limit reached for requests"},
        ErrorMeaning.RATE_LIMIT,
        "rate_limit_exceeded",
        id="rate-limit",
    ),
    pytest.param(
        {"code": "model_not_found", "message": "The model `gpt-nope` does not exist."},
        ErrorMeaning.UNKNOWN_MODEL,
        "model_not_found",
        id="unknown-model",
    ),
    pytest.param(
        {"code": "server_error", "message": "The server had an error."},
        ErrorMeaning.SERVER,
        "server_error",
        id="server",
    ),
]


@pytest.mark.parametrize("shape", ["error-then-failed", "failed-only", "flat-error-only"])
@pytest.mark.parametrize(("error", "meaning", "code"), STREAM_CASES)
def test_in_stream_failures_keep_their_meaning(
    error: dict[str, Any], meaning: ErrorMeaning, code: str, shape: str
) -> None:
    acc = StreamAccumulator()
    acc.feed({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})
    if shape == "error-then-failed":
        acc.feed({"type": "error", "error": error})
        last: dict[str, Any] = {"type": "response.failed", "response": {"id": "resp_1"}}
    elif shape == "failed-only":
        last = {"type": "response.failed", "response": {"id": "resp_1", "error": error}}
    else:
        acc.feed({**error, "type": "error"})
        last = {}  # the body just ends
    with pytest.raises(ResponseFailedError) as info:
        acc.feed(last) if last else acc.finish()
    assert info.value.meaning is meaning
    assert info.value.code == code


def test_the_user_hears_the_same_for_a_meaning_whatever_its_shape() -> None:
    http = error_from_response(
        400, {}, json.dumps(_e("too long", code="context_length_exceeded")).encode()
    )
    stream = ResponseFailedError("too long", meaning=ErrorMeaning.CONTEXT_LENGTH)
    assert user_message(http) == user_message(stream)
    assert "new thread" in user_message(stream)
    quota = ResponseFailedError("q", meaning=ErrorMeaning.QUOTA)
    assert "quota" in user_message(quota)


def test_vague_codes_and_canonical_codes() -> None:
    for vague in (None, "", "400", "bad_response_status_code", "upstream_error", "None"):
        assert is_vague_code(vague), vague
    assert not is_vague_code("insufficient_user_quota")
    assert canonical_code("400", ErrorMeaning.LOST_CHAIN) == "previous_response_not_found"
    assert canonical_code("400", ErrorMeaning.UNKNOWN) == "400"
    assert canonical_code("DeploymentNotFound", ErrorMeaning.UNKNOWN_MODEL) == "DeploymentNotFound"


def test_a_quota_increase_link_is_not_a_quota_and_a_status_alone_decides_little() -> None:
    azure = ErrorFacts(status=429, code="429", message="see https://aka.ms/oai/quotaincrease")
    assert classify(azure) is ErrorMeaning.RATE_LIMIT
    assert classify(ErrorFacts(status=400)) is ErrorMeaning.UNKNOWN
    assert classify(ErrorFacts(status=502)) is ErrorMeaning.SERVER
    # In a stream there is no status: a bare message that says nothing stays unknown.
    assert classify(ErrorFacts(message="Something went wrong")) is ErrorMeaning.UNKNOWN


@pytest.mark.parametrize(
    ("status", "error", "tool"),
    [
        (
            400,
            {
                "message": "Tool 'web_search' is not supported with gpt-3.5-turbo.",
                "type": "invalid_request_error",
                "param": "tools",
                "code": None,
            },
            "web_search",
        ),
        (
            400,
            {"message": "Hosted tool 'code_interpreter' is not supported.", "code": "400"},
            "code_interpreter",
        ),
        (
            400,
            {"message": "Invalid value: 'file_search'.", "param": "tools[0].type"},
            "file_search",
        ),
        (400, {"message": "tools is not supported in this model.", "param": "tools"}, None),
    ],
)
def test_a_refused_tool_is_named(status: int, error: dict[str, Any], tool: str | None) -> None:
    facts = ErrorFacts(
        status=status,
        code=error.get("code"),
        type=error.get("type"),
        param=error.get("param"),
        message=error.get("message"),
    )
    assert classify(facts) is ErrorMeaning.UNSUPPORTED_TOOL
    assert refused_tool(facts.message) == tool
