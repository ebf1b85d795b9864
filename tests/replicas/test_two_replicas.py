"""Two service processes on one PostgreSQL database, receiving interleaved events of the same
threads (and Slack's retries of one event at the other replica): one answer per event, and
every thread's chain stays one unforked line."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.harness import MODEL_KEY, SIGNING_SECRET, sign
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import FakeSlack

REPO = Path(__file__).resolve().parents[2]
THREADS = 4
FOLLOW_UPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"


async def _start(env: dict[str, str], tmp_path: Path) -> Replica:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env={**env, "PORT": str(port)},
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    replica = Replica(process, port)
    deadline = asyncio.get_running_loop().time() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(replica.url + "/readyz") as response:
                    if response.status == 200:
                        return replica
            except aiohttp.ClientConnectionError:
                pass
            assert process.returncode is None, "a replica exited during start-up"
            assert asyncio.get_running_loop().time() < deadline, "a replica never became ready"
            await asyncio.sleep(0.05)


async def _handled(http: aiohttp.ClientSession, replicas: list[Replica]) -> int:
    """Deliveries both replicas have finished with, from their /metrics."""
    total = 0.0
    for replica in replicas:
        async with http.get(replica.url + "/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith("slackbot_turns_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def test_two_replicas_answer_each_event_once_and_never_fork_a_chain(
    tmp_path: Path, postgres_url: str
) -> None:
    async with FakeSlack() as slack, FakeResponsesServer(api_key=MODEL_KEY) as model:
        # Each answer takes a moment, so turns of one thread really do overlap in time.
        model.answerer = lambda body, n: f"answer {n}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))},
            "PYTHONPATH": str(REPO),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": MODEL_KEY,
            "DEFAULT_MODEL": "test-model",
            "DATABASE_URL": postgres_url,
            "HOST": "127.0.0.1",
            "SLACK_NATIVE_STREAMING": "false",
            "LOG_LEVEL": "WARNING",
            "CONVERSATION_PROBE": "false",  # no start-up probe among the counted requests
        }
        replicas = [await _start(env, tmp_path), await _start(env, tmp_path)]
        try:
            async with aiohttp.ClientSession() as http:

                async def deliver(
                    replica: Replica, event: dict[str, Any], event_id: str, retry: int | None = None
                ) -> None:
                    body = json.dumps(
                        {
                            "team_id": "T1",
                            "api_app_id": "A1",
                            "type": "event_callback",
                            "event_id": event_id,
                            "event_time": 1,
                            "event": event,
                        }
                    ).encode()
                    headers = {"Content-Type": "application/json", **sign(body)}
                    if retry is not None:
                        headers["X-Slack-Retry-Num"] = str(retry)
                    async with http.post(
                        replica.url + "/slack/events", data=body, headers=headers
                    ) as response:
                        assert response.status == 200

                roots: list[str] = []
                for i in range(THREADS):
                    text = f"<@{slack.bot_user_id}> start {i}"
                    ts = slack.add_message("C1", user="U1", text=text)
                    roots.append(ts)
                    event = {
                        "type": "app_mention",
                        "user": "U1",
                        "text": text,
                        "ts": ts,
                        "channel": "C1",
                        "event_ts": ts,
                    }
                    await deliver(replicas[i % 2], event, f"EvRoot{i}")
                await slack.wait_for(
                    lambda: all(slack.bot_replies("C1", r) for r in roots), timeout=30
                )

                # Interleaved follow-ups of every thread to both replicas at once, each also
                # retried by "Slack" at the other replica.
                sends = []
                for i, root in enumerate(roots):
                    for j in range(FOLLOW_UPS):
                        text = f"follow-up {i}.{j}"
                        ts = slack.add_message("C1", user="U1", text=text, thread_ts=root)
                        event = {
                            "type": "message",
                            "user": "U1",
                            "text": text,
                            "ts": ts,
                            "thread_ts": root,
                            "channel": "C1",
                            "event_ts": ts,
                            "channel_type": "channel",
                        }
                        event_id = f"EvF{i}_{j}"
                        sends.append(deliver(replicas[j % 2], event, event_id))
                        sends.append(deliver(replicas[(j + 1) % 2], event, event_id, retry=1))
                await asyncio.gather(*sends)
                await slack.wait_for(
                    lambda: all(len(slack.bot_replies("C1", r)) >= 1 + FOLLOW_UPS for r in roots),
                    timeout=60,
                )
                # Wait until both replicas have finished with every delivery (answered or
                # deduplicated): only then would a duplicate answer have shown up.
                deliveries = THREADS + 2 * THREADS * FOLLOW_UPS
                deadline = asyncio.get_running_loop().time() + 30
                while await _handled(http, replicas) < deliveries:
                    assert asyncio.get_running_loop().time() < deadline, "deliveries unhandled"
                    await asyncio.sleep(0.05)
        finally:
            for replica in replicas:
                replica.process.send_signal(signal.SIGTERM)
            for replica in replicas:
                await asyncio.wait_for(replica.process.wait(), timeout=30)

        assert [r.process.returncode for r in replicas] == [0, 0]
        for root in roots:
            assert len(slack.bot_replies("C1", root)) == 1 + FOLLOW_UPS  # one per event

        # Every thread's requests form one chain: each names the answer to the one before.
        requests = [r for r in model.requests if r.path.endswith("/responses")]
        assert len(requests) == len(model.response_ids) == THREADS * (1 + FOLLOW_UPS)
        by_thread: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
        for request, response_id in zip(requests, model.response_ids, strict=True):
            thread = request.body["metadata"]["slack_thread"]
            by_thread[thread].append((request.body.get("previous_response_id"), response_id))
        for root in roots:
            chain = by_thread[root]
            assert len(chain) == 1 + FOLLOW_UPS
            assert chain[0][0] is None
            for (_, answered), (previous, _) in itertools.pairwise(chain):
                assert previous == answered  # unforked: each turn follows the one before
