"""Model endpoint faults, one story each, through the real HTTP boundaries.

Every fault is met the same way: the root mention is answered first (so the thread has a
chain), the fault hits the next message in the thread, and then

(a) the thread shows a plain, specific sentence that says what to do: no stack trace, no raw
    upstream message, no markup, no key;
(b) the turn is stored with its status and error code;
(c) the chain head did not move: the message after the fault still continues from the last
    good response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import StartBot
from tests.e2e.harness import MODEL_KEY, BotUnderTest, shown

# Small limits so a fault costs well under a second.
FAST: dict[str, Any] = {
    "model_max_retries": 1,
    "model_idle_timeout": 0.5,
    "model_connect_timeout": 0.5,
    "model_total_timeout": 5,
}

CANT_REACH = "I couldn't reach the model service"
SERVER_ERROR = "The model service had an internal error. Please try again in a moment."
GARBLED = "The answer from the model service was cut off or garbled. Please try again."
BROKE_OFF = "The connection to the model service broke off mid-answer. Please try again."
STALLED = "The model service stopped sending mid-answer. Please try again."
RATE_LIMITED = "The model service is rate-limiting me right now"


def _error(
    message: str, *, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def assert_plain(notice: str, *secrets: str) -> None:
    """A sentence for a person: a warning, no trace, no markup, no key, no upstream text."""
    assert notice.startswith(":warning:"), notice
    for bad in ("Traceback", "Error:", "Exception", "<", "httpx", "sk-", MODEL_KEY, *secrets):
        assert bad not in notice, (bad, notice)


def sse(*events: dict[str, Any]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def envelope(response_id: str, status: str, output: list[Any]) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "status": status,
        "model": "test-model",
        "output": output,
        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
    }


def message_item(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def delta(text: str) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": text,
    }


async def fault_in_thread(bot: BotUnderTest, script: Callable[[], None]) -> tuple[str, str]:
    """Answer a root mention, arm ``script``, fail the next message in the thread; return
    (root ts, the notice the thread shows for the failed turn)."""
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    script()
    await bot.reply("this one meets the fault", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 2)
    return root, shown(replies[1])


async def chain_is_intact(bot: BotUnderTest, root: str, good_response_id: str) -> None:
    """The next message still continues from the last good response, and is answered."""
    before = len(bot.model_bodies())
    count = len(bot.slack.bot_replies("C1", root))
    await bot.reply("and after the fault", thread_ts=root)
    replies = await bot.wait_replies("C1", root, count + 1)
    bodies = bot.model_bodies()
    assert len(bodies) == before + 1
    assert bodies[-1]["previous_response_id"] == good_response_id
    assert shown(replies[-1]).startswith("answer")
    turns = await bot.turns("C1", root)
    assert turns[-1].status == "completed"


# ------------------------------------------------------------------- HTTP error answers


HTTP_FAULTS = [
    pytest.param(
        401,
        _error(
            f"Incorrect API key provided: {MODEL_KEY[:8]}****. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            type_="invalid_request_error",
            code="invalid_api_key",
        ),
        "invalid_api_key",
        "The model service refused my credentials. An admin needs to check the bot's API key.",
        id="401",
    ),
    pytest.param(
        403,
        _error(
            "Project proj_abc does not have access to this endpoint.",
            type_="invalid_request_error",
            code=None,
        ),
        "unauthorized",
        "The model service refused my credentials. An admin needs to check the bot's API key.",
        id="403",
    ),
    pytest.param(
        404,
        _error(
            "The model `gpt-nope` does not exist or you do not have access to it.",
            type_="invalid_request_error",
            code="model_not_found",
        ),
        "model_not_found",
        "The model configured for this channel was not found at the model service. "
        "An admin can pick another one with the settings command.",
        id="404-bad-model",
    ),
    pytest.param(
        429,
        _error(
            "You exceeded your current quota, please check your plan and billing details.",
            type_="insufficient_quota",
            code="insufficient_quota",
        ),
        "insufficient_quota",
        "The model service says this workspace's quota is used up. An admin needs to check "
        "the model account's billing; I can't answer until then.",
        id="429-insufficient-quota",
    ),
]


@pytest.mark.parametrize(("status", "body", "code", "sentence"), HTTP_FAULTS)
async def test_a_refusal_that_retrying_cannot_fix_is_explained_once_and_not_retried(
    start_bot: StartBot, status: int, body: dict[str, Any], code: str, sentence: str
) -> None:
    bot = await start_bot(**FAST)
    root, notice = await fault_in_thread(bot, lambda: bot.model.error(status, body))

    assert notice == f":warning: {sentence}"
    assert_plain(notice, body["error"]["message"])
    assert len(bot.model_bodies()) == 2  # root + one attempt: never retried
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == code
    await chain_is_intact(bot, root, bot.model.response_ids[0])


async def test_a_request_too_large_tells_the_user_to_shorten_or_start_a_new_thread(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(**FAST)
    page = "<html><head><title>413 Request Entity Too Large</title></head><body></body></html>"
    root, notice = await fault_in_thread(
        bot, lambda: bot.model.error(413, page, content_type="text/html")
    )

    assert_plain(notice)
    assert len(bot.model_bodies()) == 2  # never retried
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    await chain_is_intact(bot, root, bot.model.response_ids[0])
    # What the product should say and store:
    assert "too large" in notice or "too long" in notice, notice
    assert "new thread" in notice or "shorter" in notice, notice
    assert turns[1].error_code != "bad_request"


SERVER_FAULTS = [
    pytest.param(
        500,
        _error(
            "The server had an error while processing your request. Sorry about that!",
            type_="server_error",
            code=None,
        ),
        "application/json",
        "server_error",
        id="500",
    ),
    pytest.param(
        502,
        _error("Bad gateway.", type_="cf_bad_gateway", code="bad_gateway"),
        "application/json",
        "bad_gateway",
        id="502",
    ),
    pytest.param(
        503,
        _error(
            "The engine is currently overloaded, please try again later",
            type_="server_error",
            code=None,
        ),
        "application/json",
        "server_error",
        id="503",
    ),
    pytest.param(
        502,
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n",
        "text/html",
        "server_error",
        id="502-html-page",
    ),
]


@pytest.mark.parametrize(("status", "body", "content_type", "code"), SERVER_FAULTS)
async def test_a_server_error_is_retried_then_explained_plainly(
    start_bot: StartBot,
    status: int,
    body: dict[str, Any] | str,
    content_type: str,
    code: str,
) -> None:
    bot = await start_bot(**FAST)

    def script() -> None:
        for _ in range(2):  # the attempt and its one retry
            bot.model.error(status, body, content_type=content_type)

    root, notice = await fault_in_thread(bot, script)

    assert notice == f":warning: {SERVER_ERROR}"
    upstream = body["error"]["message"] if isinstance(body, dict) else "nginx"
    assert_plain(notice, upstream, "Bad Gateway")
    assert len(bot.model_bodies()) == 3  # root + attempt + one retry
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == code
    await chain_is_intact(bot, root, bot.model.response_ids[0])


RATE_LIMIT_BODY = _error(
    "Rate limit reached for test-model in organization org-abc on tokens per min (TPM): "
    "Limit 30000, Used 30000, Requested 100.",
    type_="tokens",
    code="rate_limit_exceeded",
)


async def test_a_429_with_retry_after_is_waited_out_and_answered_normally(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(**FAST)
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    bot.model.error(429, RATE_LIMIT_BODY, headers={"retry-after": "1"})
    started = asyncio.get_running_loop().time()
    await bot.reply("rate limited once", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 2)

    assert asyncio.get_running_loop().time() - started >= 1.0  # Retry-After was honoured
    assert shown(replies[1]).startswith("answer")  # a normal answer, no warning
    bodies = bot.model_bodies()
    assert len(bodies) == 3  # root + the 429 + the retry
    assert bodies[1]["previous_response_id"] == bodies[2]["previous_response_id"]
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "completed"]
    assert turns[1].error_code is None
    await chain_is_intact(bot, root, bot.model.response_ids[1])  # the chain moved on


async def test_a_429_without_retry_after_that_keeps_failing_says_rate_limited(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(**FAST)

    def script() -> None:
        for _ in range(2):
            bot.model.error(429, RATE_LIMIT_BODY)

    root, notice = await fault_in_thread(bot, script)

    assert notice == (
        ":warning: The model service is rate-limiting me right now. Please wait a minute and "
        "send your message again."
    )
    assert_plain(notice, RATE_LIMIT_BODY["error"]["message"])
    assert len(bot.model_bodies()) == 3  # root + attempt + one retry (backoff, no header)
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == "rate_limit_exceeded"
    await chain_is_intact(bot, root, bot.model.response_ids[0])


# ------------------------------------------------------------------- broken streams


async def test_a_stream_that_stalls_keeps_the_partial_text_and_adds_an_idle_note(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(**FAST)
    root, notice = await fault_in_thread(
        bot, lambda: bot.model.stall_after(1, text="The first half. The second half.")
    )

    assert notice.startswith("The first")  # what had arrived stays
    assert notice.endswith(f":warning: {STALLED}")
    assert_plain(notice.split("\n\n")[-1])
    await bot.model.wait_for_disconnects(1)  # the stalled request was abandoned, not leaked
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == "timeout_idle"
    await chain_is_intact(bot, root, bot.model.response_ids[0])


async def test_a_stream_that_drops_midway_keeps_the_partial_text_and_says_it_broke_off(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(**FAST)
    root, notice = await fault_in_thread(
        bot, lambda: bot.model.drop_after(1, text="The first half. The second half.")
    )

    assert notice.startswith("The first")
    assert notice.endswith(f":warning: {BROKE_OFF}")
    assert_plain(notice.split("\n\n")[-1])
    assert len(bot.model_bodies()) == 2  # the answer had started: never retried
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == "stream_interrupted"
    await chain_is_intact(bot, root, bot.model.response_ids[0])


async def test_malformed_sse_json_is_reported_as_garbled(start_bot: StartBot) -> None:
    bot = await start_bot(**FAST)
    body = (
        sse({"type": "response.created", "response": envelope("resp_bad", "in_progress", [])})
        + "event: response.output_text.delta\ndata: {not json\n\n"
    )
    root, notice = await fault_in_thread(bot, lambda: bot.model.raw(body))

    assert notice == f":warning: {GARBLED}"
    assert_plain(notice, "not json")
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == "stream_protocol_error"
    await chain_is_intact(bot, root, bot.model.response_ids[0])


async def test_a_stream_that_ends_without_a_terminal_event_is_reported(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(**FAST)
    body = sse(
        {"type": "response.created", "response": envelope("resp_cut", "in_progress", [])},
        {"type": "response.output_item.added", "output_index": 0, "item": message_item("")},
        delta("Half an answer"),
    )
    root, notice = await fault_in_thread(bot, lambda: bot.model.raw(body))

    assert notice.startswith("Half an answer")
    assert notice.endswith(f":warning: {BROKE_OFF}")
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == "stream_interrupted"
    assert turns[1].response_id == "resp_cut"  # recorded on the turn, not made the head
    await chain_is_intact(bot, root, bot.model.response_ids[0])


async def test_a_text_delta_before_response_created_is_still_answered(
    start_bot: StartBot,
) -> None:
    """Out of order but complete: the answer is delivered and becomes the chain head."""
    bot = await start_bot(**FAST)
    body = sse(
        delta("Early "),
        {"type": "response.created", "response": envelope("resp_ooo", "in_progress", [])},
        delta("bird."),
        {
            "type": "response.completed",
            "response": envelope("resp_ooo", "completed", [message_item("Early bird.")]),
        },
    )
    bot.model.remember("resp_ooo")
    root, answer = await fault_in_thread(bot, lambda: bot.model.raw(body))

    assert answer == "Early bird."
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "completed"]
    assert turns[1].response_id == "resp_ooo"
    await chain_is_intact(bot, root, "resp_ooo")


async def test_completed_before_any_output_item_is_shown_as_an_empty_answer(
    start_bot: StartBot,
) -> None:
    """A terminal event with no items at all: the thread says the answer was empty, plainly."""
    bot = await start_bot(**FAST)
    body = sse(
        {"type": "response.completed", "response": envelope("resp_empty", "completed", [])},
        delta("too late"),
    )
    bot.model.remember("resp_empty")
    root, answer = await fault_in_thread(bot, lambda: bot.model.raw(body))

    assert answer == "_(The model returned an empty answer.)_"
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "completed"]
    assert turns[1].response_id == "resp_empty"
    await chain_is_intact(bot, root, "resp_empty")


# ------------------------------------------------------------------- no answer at all


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SilentServer:
    """Accepts the connection and the request, then never sends a byte."""

    def __init__(self) -> None:
        self.requests = 0
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        await self._release.wait()
        return web.Response(status=503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    server = SilentServer()
    await server.start()
    yield server
    await server.stop()


async def unreachable_in_thread(
    start_bot: StartBot, base_url: str
) -> tuple[BotUnderTest, str, str]:
    """Answer a root mention, restart the bot on ``base_url``, send a follow-up there, then
    restart it on the good endpoint; return (the good bot, root ts, the notice)."""
    good = await start_bot(**FAST)
    root, _ = await good.mention("start")
    await good.wait_replies("C1", root, 1)
    await good.service.stop()

    broken = await start_bot(**{**FAST, "openai_base_url": base_url})
    await broken.reply("this one meets the fault", thread_ts=root)
    replies = await broken.wait_replies("C1", root, 2)
    await broken.service.stop()

    again = await start_bot(**FAST)
    return again, root, shown(replies[1])


@pytest.mark.parametrize(
    "host",
    [pytest.param("127.0.0.1:{port}", id="refused"), pytest.param("nonexistent.invalid", id="dns")],
)
async def test_an_unreachable_endpoint_is_retried_then_explained(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture, host: str
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    base_url = f"http://{host.format(port=_closed_port())}/v1"
    bot, root, notice = await unreachable_in_thread(start_bot, base_url)

    assert notice.startswith(f":warning: {CANT_REACH}")
    assert "try again" in notice
    assert_plain(notice, "nonexistent", "127.0.0.1", "Connect")
    retries = [r for r in caplog.records if "retry 1 of 1" in r.getMessage()]
    assert len(retries) == 1  # one retry before giving up
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code == "connection_error"
    assert len(bot.model_bodies()) == 1  # only the root ever reached the good endpoint
    await chain_is_intact(bot, root, bot.model.response_ids[0])


async def test_an_endpoint_that_never_answers_times_out_plainly(
    start_bot: StartBot, silent_server: SilentServer
) -> None:
    bot, root, notice = await unreachable_in_thread(
        start_bot, f"http://127.0.0.1:{silent_server.port}/v1"
    )

    assert_plain(notice)
    assert silent_server.requests >= 1
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed"]
    assert turns[1].error_code.startswith("timeout_")
    await chain_is_intact(bot, root, bot.model.response_ids[0])
    # What the product should say and store:
    assert notice == (
        ":warning: The model service took too long to answer. Please try again in a moment."
    )
    assert turns[1].error_code != "timeout_idle"
