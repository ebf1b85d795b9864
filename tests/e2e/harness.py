"""Drives the real service over its real boundaries.

Slack → service: signed Events API requests over HTTP (exactly as Slack signs them).
Service → Slack / model: the fake Slack Web API and fake Responses servers on 127.0.0.1.
State: a real SQLite file under the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.service import Service
from bot.settings import Settings
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import FakeSlack

SIGNING_SECRET = "test-signing-secret-0123456789"
MODEL_KEY = "sk-test-model-key-abcdef123456"

_event_ids = itertools.count(1)


def sign(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The two headers Slack adds to every request: ``v0=`` HMAC-SHA256 of ``v0:ts:body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def make_settings(
    tmp_path: Path,
    slack: FakeSlack,
    model: FakeResponsesServer,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": slack.bot_token,
        "slack_signing_secret": SIGNING_SECRET,
        "bot_mode": "http",
        "host": "127.0.0.1",
        "port": 0,
        "slack_api_url": slack.api_url,
        "openai_base_url": model.base_url,
        "openai_api_key": MODEL_KEY,
        "default_model": "test-model",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "model_max_retries": 1,
        "log_format": "console",
        # The start-up chain probe is a model request of its own: tests that count requests
        # turn it on where they test it (tests/e2e/test_conversation_state.py).
        "conversation_probe": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class BotUnderTest:
    """A started service plus the ways a test talks to it."""

    service: Service
    slack: FakeSlack
    model: FakeResponsesServer
    http: aiohttp.ClientSession
    team_id: str = "T1"
    sent: list[dict[str, Any]] = field(default_factory=list)
    bot_user: str | None = None
    """The bot's user id in ``team_id`` (default: the fake's own bot)."""
    bot_id: str | None = None
    """The bot id of its messages in ``team_id`` (default: the fake's own bot)."""

    def in_team(self, team_id: str, *, bot_user: str, bot_id: str) -> BotUnderTest:
        """The same service seen from another installed workspace (``sent`` is shared, so
        ``wait_idle`` still counts every event)."""
        return replace(self, team_id=team_id, bot_user=bot_user, bot_id=bot_id)

    @property
    def bot_user_id(self) -> str:
        return self.bot_user or self.slack.bot_user_id

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    async def post_raw(
        self, body: bytes, headers: dict[str, str], path: str = "/slack/events"
    ) -> tuple[int, str]:
        async with self.http.post(self.base_url + path, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def send_event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        counted: bool = True,
    ) -> str:
        """Send one signed Events API callback; returns its event id. ``counted=False`` for an
        event that is no message (the assistant pane's): ``wait_idle`` does not wait for it."""
        event_id = event_id or f"Ev{next(_event_ids):08d}"
        envelope = {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "api_app_id": "A1",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}
            ],
        }
        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json", **sign(body)}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        status, text = await self.post_raw(body, headers)
        assert status == 200, f"Slack event refused: {status} {text}"
        if counted:
            self.sent.append(envelope)
        return event_id

    async def interact(self, payload: dict[str, Any]) -> tuple[int, str]:
        """A signed interactivity request (a button click, a form submission)."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post_raw(
            body, {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        )

    # --- what a person does in Slack ------------------------------------------------------
    async def mention(
        self, text: str, *, channel: str = "C1", user: str = "U1", thread_ts: str | None = None
    ) -> tuple[str, str]:
        """Post ``@bot text`` (top level, or in ``thread_ts``); returns (ts, event_id)."""
        full = f"<@{self.bot_user_id}> {text}"
        ts = self.slack.add_message(channel, user=user, text=full, thread_ts=thread_ts)
        event: dict[str, Any] = {
            "type": "app_mention",
            "user": user,
            "text": full,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return ts, await self.send_event(event)

    async def reply(
        self,
        text: str,
        *,
        thread_ts: str,
        channel: str = "C1",
        user: str = "U1",
        channel_type: str = "channel",
        **extra: Any,
    ) -> tuple[str, str]:
        """Post a plain message in a thread (no mention); returns (ts, event_id)."""
        ts = self.slack.add_message(channel, user=user, text=text, thread_ts=thread_ts)
        event = message_event(
            channel=channel,
            user=user,
            text=text,
            ts=ts,
            thread_ts=thread_ts,
            channel_type=channel_type,
            **extra,
        )
        return ts, await self.send_event(event)

    async def dm(
        self, text: str, *, channel: str = "D1", user: str = "U1", thread_ts: str | None = None
    ) -> tuple[str, str]:
        ts = self.slack.add_message(channel, user=user, text=text, thread_ts=thread_ts)
        event = message_event(
            channel=channel, user=user, text=text, ts=ts, thread_ts=thread_ts, channel_type="im"
        )
        return ts, await self.send_event(event)

    async def wait_replies(
        self, channel: str, thread_ts: str, count: int, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait until the bot has posted ``count`` messages in the thread and every event
        sent so far is handled (answers streamed in full); return the bot's messages."""
        await self.slack.wait_for(
            lambda: len(self.slack.bot_replies(channel, thread_ts, bot_id=self.bot_id)) >= count,
            timeout=timeout,
        )
        await self.wait_idle(timeout=timeout)
        return self.slack.bot_replies(channel, thread_ts, bot_id=self.bot_id)

    def handled_events(self) -> int:
        """How many delivered events the service has finished with (answered or not)."""
        total = 0.0
        for metric in self.service.metrics.turns.collect():
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        return int(total)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every event sent so far has been fully handled."""
        await wait_until(lambda: self.handled_events() >= len(self.sent), timeout=timeout)

    def model_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies the model endpoint received, in order."""
        return [r.body for r in self.model.requests if r.path.endswith("/responses")]

    async def turns(self, channel: str, thread_ts: str) -> list[Any]:
        return await self.service.store.list_turns(
            team_id=self.team_id, channel_id=channel, thread_ts=thread_ts
        )

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.base_url + path) as response:
            return response.status, await response.text()


def shown(message: dict[str, Any]) -> str:
    """What a person sees: the ``markdown`` block's text, else the message text."""
    blocks = message.get("blocks") or []
    if blocks and blocks[0].get("type") == "markdown":
        return str(blocks[0]["text"])
    return str(message.get("text", ""))


async def wait_until(predicate: Any, *, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it is true; fail the test at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def message_event(
    *,
    channel: str,
    user: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    **extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    return event


async def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90.0
) -> tuple[int, str, str]:
    """Run ``python -m bot ARGS`` as a real process; return (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def slash_command(
    bot: BotUnderTest,
    text: str,
    *,
    user: str,
    channel: str = "C1",
    name: str = "/ai",
    timeout: float = 10.0,
) -> tuple[int, str, str]:
    """Send ``name text`` signed as Slack does, with a ``response_url`` on the fake Slack.

    Returns (HTTP status, the acknowledgement's body, the answer: what was posted to
    ``response_url``, else the text of the acknowledgement itself, else '' when the command
    opened the modal instead). Waits for one of them.
    """
    url = bot.slack.response_url()
    body = urlencode(
        {
            "token": "legacy",
            "team_id": bot.team_id,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": name,
            "text": text,
            "api_app_id": "A1",
            "response_url": url,
            "trigger_id": f"trigger-{user}",
        }
    ).encode()
    opened = len(bot.slack.calls_to("views.open"))
    status, ack = await bot.post_raw(
        body, {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    )
    if status != 200:
        return status, ack, ""
    if ack:
        return status, ack, str(json.loads(ack).get("text", ""))
    await bot.slack.wait_for(
        lambda: bot.slack.responses_to(url) or len(bot.slack.calls_to("views.open")) > opened,
        timeout=timeout,
    )
    answers = bot.slack.responses_to(url)
    if not answers:
        return status, ack, ""
    assert answers[0].get("response_type") == "ephemeral", answers[0]
    return status, ack, str(answers[0]["text"])
