"""Optional: a real third-party Responses server, LiteLLM's proxy, between the bot and the fake
model. Skipped unless a ``litellm`` executable is found (``LITELLM_BIN``, else on ``PATH``); it
is not a dependency of this project. To run it::

    python3.11 -m venv /tmp/litellm-venv
    /tmp/litellm-venv/bin/pip install "litellm[proxy]==1.108.7"
    LITELLM_BIN=/tmp/litellm-venv/bin/litellm scripts/test tests/e2e/test_litellm_proxy.py

The proxy runs offline (``LITELLM_LOCAL_MODEL_COST_MAP``), with no database, forwarding
``/v1/responses`` to the fake Responses server. What it does to the traffic, and what this
test pins down: it mints its own response ids (~450 characters, routing encoded in them) and
rewrites the upstream's ``previous_response_not_found`` to ``"code": "400"`` with the original
JSON inside ``message``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.errors import ErrorMeaning, ModelError
from bot.model.client import ResponsesClient
from bot.model.probe import check_chains
from bot.model.retry import RetryPolicy
from bot.model.types import Completed, ResponseRequest
from tests.conftest import StartBot
from tests.e2e.harness import MODEL_KEY, shown
from tests.fakes.responses_server import FakeResponsesServer, recall_answerer

PROXY_KEY = "sk-litellm-proxy-test-key"


def _litellm_bin() -> str | None:
    return os.environ.get("LITELLM_BIN") or shutil.which("litellm")


pytestmark = pytest.mark.skipif(
    _litellm_bin() is None,
    reason="LiteLLM's proxy is not installed (optional: set LITELLM_BIN, see module docstring)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proxy:
    base_url: str


@pytest.fixture
async def proxy(tmp_path: Path, fake_model: FakeResponsesServer) -> AsyncIterator[Proxy]:
    binary = _litellm_bin()
    assert binary is not None
    port = _free_port()
    config = tmp_path / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: test-model\n"
        "    litellm_params:\n"
        "      model: openai/test-model\n"
        f"      api_base: {fake_model.base_url}\n"
        f"      api_key: {MODEL_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {PROXY_KEY}\n"
    )
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log = (tmp_path / "litellm.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(url + "/health/liveliness")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.returncode is None, (tmp_path / "litellm.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "LiteLLM's proxy never became ready"
                await asyncio.sleep(0.2)
        yield Proxy(base_url=url + "/v1")
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.close()


async def test_through_litellm_chains_and_lost_chains_are_understood(
    proxy: Proxy, fake_model: FakeResponsesServer
) -> None:
    async with ResponsesClient(
        base_url=proxy.base_url, api_key=PROXY_KEY, retry=RetryPolicy.no_delay(0)
    ) as client:
        events = [
            e async for e in client.stream(ResponseRequest(model="test-model", input="my name"))
        ]
        first = events[-1]
        assert isinstance(first, Completed)
        assert len(first.result.response_id) > 255  # LiteLLM's own, routing-encoded id
        follow = ResponseRequest(
            model="test-model", input="again", previous_response_id=first.result.response_id
        )
        async with aclosing(client.stream(follow)) as stream:
            assert isinstance([e async for e in stream][-1], Completed)
        assert fake_model.requests[-1].body["previous_response_id"] == fake_model.response_ids[0]

        assert (await check_chains(client, "test-model")).chains == "kept"
        fake_model.forget_all()
        with pytest.raises(ModelError) as info:
            await client.create(follow)
        assert info.value.meaning is ErrorMeaning.LOST_CHAIN
        assert info.value.code == "previous_response_not_found"

        fake_model.chain_mode = "ignore_unknown"
        assert (await check_chains(client, "test-model")).chains == "ignored"


async def test_a_thread_through_litellm_survives_a_lost_chain(
    proxy: Proxy, start_bot: StartBot, fake_model: FakeResponsesServer
) -> None:
    fake_model.answerer = recall_answerer
    bot = await start_bot(openai_base_url=proxy.base_url, openai_api_key=PROXY_KEY)
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1, timeout=30)
    await bot.reply("I like tea", thread_ts=root)
    await bot.wait_replies("C1", root, 2, timeout=30)
    turns = await bot.turns("C1", root)
    assert len(turns[1].previous_response_id or "") > 255  # stored and sent back whole

    fake_model.forget_all()  # the upstream lost its stored responses
    await bot.reply("what do you know?", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 3, timeout=30)

    answer = shown(replies[2])
    assert "U1: my name is Ana | U1: I like tea | U1: what do you know?" in answer
    assert [t.status for t in await bot.turns("C1", root)] == ["completed"] * 3
