"""Process faults: SIGTERM with a turn in flight, a turn that outlasts the shutdown grace,
SIGKILL mid-turn and the restart that follows. The real service runs as ``python -m bot``
(a real process, real signals) against the fake Slack and model servers and a SQLite file;
the grace-period case runs in-process because the grace is not an environment setting.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.conversation import SHUTDOWN_NOTE
from bot.service import INTERRUPTED_NOTICE
from tests.conftest import StartBot
from tests.e2e.harness import MODEL_KEY, SIGNING_SECRET, shown, sign, wait_until
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import FakeSlack

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "incomplete", "stopped", "undelivered"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """One ``python -m bot`` process on a fixed port and a SQLite file."""

    def __init__(self, db: Path, slack: FakeSlack, model: FakeResponsesServer) -> None:
        self.db = db
        self.slack = slack
        self.model = model
        self.port = _free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.stderr = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "OPENAI_", "DEFAULT_", "DATABASE_", "BOT_", "LOG_"))
        }
        env.update(
            PYTHONPATH=str(REPO),
            SLACK_BOT_TOKEN=self.slack.bot_token,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=self.slack.api_url,
            OPENAI_BASE_URL=self.model.base_url,
            OPENAI_API_KEY=MODEL_KEY,
            DEFAULT_MODEL="test-model",
            DATABASE_URL=f"sqlite+aiosqlite:///{self.db}",
            MODEL_MAX_RETRIES="0",
            HOST="127.0.0.1",
            PORT=str(self.port),
            LOG_FORMAT="json",
            CONVERSATION_PROBE="false",  # no start-up probe among the counted model requests
        )
        return env

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            env=self._env(),
            cwd=self.db.parent,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                async with http.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert self.process.returncode is None, "the service exited during start-up"
            assert time.monotonic() < deadline, "the service never became ready"
            await asyncio.sleep(0.05)

    async def post_event(
        self, http: aiohttp.ClientSession, event: dict[str, Any], event_id: str
    ) -> int:
        body = json.dumps(
            {
                "team_id": "T1",
                "api_app_id": "A1",
                "type": "event_callback",
                "event_id": event_id,
                "event_time": int(time.time()),
                "event": event,
            }
        ).encode()
        headers = {"Content-Type": "application/json", **sign(body)}
        async with http.post(self.url + "/slack/events", data=body, headers=headers) as response:
            return response.status

    async def mention(
        self,
        http: aiohttp.ClientSession,
        text: str,
        event_id: str,
        *,
        thread_ts: str | None = None,
    ) -> tuple[str, int]:
        """Post ``@bot text`` in Slack and deliver its event; returns (ts, HTTP status)."""
        full = f"<@{self.slack.bot_user_id}> {text}"
        ts = self.slack.add_message("C1", user="U1", text=full, thread_ts=thread_ts)
        event: dict[str, Any] = {
            "type": "app_mention",
            "user": "U1",
            "text": full,
            "ts": ts,
            "channel": "C1",
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return ts, await self.post_event(http, event, event_id)

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        assert self.process.stderr is not None
        err = await asyncio.wait_for(self.process.stderr.read(), timeout=timeout)
        self.stderr = err.decode()
        code = await asyncio.wait_for(self.process.wait(), timeout=timeout)
        return code

    async def ensure_stopped(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def _wait_status(http: aiohttp.ClientSession, url: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        async with http.get(url) as response:
            if response.status == status:
                return
        assert time.monotonic() < deadline, f"{url} never answered {status}"
        await asyncio.sleep(0.01)


def _rows(db: Path, query: str, *args: Any) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return list(connection.execute(query, args))


def _turns(db: Path, thread_ts: str) -> list[sqlite3.Row]:
    return _rows(
        db,
        "SELECT turns.* FROM turns JOIN threads ON threads.id = turns.thread_id "
        "WHERE threads.thread_ts = ? ORDER BY turns.id",
        thread_ts,
    )


def _assert_consistent(db: Path) -> None:
    """Every turn is closed, and every thread's chain head is its latest completed answer."""
    statuses = {row["status"] for row in _rows(db, "SELECT status FROM turns")}
    assert statuses <= TERMINAL, statuses
    for thread in _rows(db, "SELECT id, head_response_id FROM threads"):
        latest = _rows(
            db,
            "SELECT response_id FROM turns WHERE thread_id = ? AND status = 'completed' "
            "ORDER BY id DESC LIMIT 1",
            thread["id"],
        )
        expected = latest[0]["response_id"] if latest else None
        assert thread["head_response_id"] == expected, dict(thread)


async def test_sigterm_finishes_the_turn_in_flight_and_refuses_new_events(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    db = tmp_path / "bot.db"
    bot = BotProcess(db, fake_slack, fake_model)
    # About 2 s of answer: four deltas half a second apart.
    fake_model.reply("slow and complete answer", delta_count=4, delay_between_deltas=0.5)
    async with aiohttp.ClientSession() as http:
        try:
            await bot.start(http)
            ts, status = await bot.mention(http, "take your time", "EvSlow1")
            assert status == 200
            await fake_model.wait_for_requests(1, timeout=10)
            bot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

            # Once the signal is handled (readiness says so), new events get 503: Slack retries
            # them later, when this replica (restarted) or another one takes them.
            await _wait_status(http, bot.url + "/readyz", 503)
            refused, status = await bot.mention(http, "too late", "EvLate1")
            assert status == 503
            # ...while the turn in flight was still streaming.
            assert _statuses(db, ts) == ["pending"]
            assert len(fake_model.requests) == 1
            code = await bot.stop()
        finally:
            await bot.ensure_stopped()
    assert code == 0, bot.stderr
    [reply] = fake_slack.bot_replies("C1", ts)
    assert shown(reply) == "slow and complete answer"
    [turn] = _turns(db, ts)
    assert turn["status"] == "completed"
    assert turn["response_id"] == fake_model.response_ids[0]
    assert _turns(db, refused) == []  # the refused event left no trace
    assert fake_slack.bot_replies("C1", refused) == []
    _assert_consistent(db)
    assert "shutdown grace period ended" not in bot.stderr
    assert "service stopped" in bot.stderr


async def test_a_turn_that_outlasts_the_grace_period_is_closed_with_a_note(
    start_bot: StartBot, fake_model: FakeResponsesServer, tmp_path: Path
) -> None:
    # The grace is Service(shutdown_grace=...) only (no environment setting), so in-process.
    bot = await start_bot(slack_native_streaming=False)
    bot.service.shutdown_grace = 0.5
    fake_model.stall_after(1, text="never finished")
    ts, _ = await bot.mention("a very long answer please")
    await fake_model.wait_for_requests(1)

    await bot.service.stop()

    # Right after stop() returns the process exits, so whatever stop() leaves is final.
    [turn] = _turns(tmp_path / "bot.db", ts)
    assert turn["status"] == "failed", "stop() left the turn pending"
    assert turn["error_code"] == "shutdown"
    assert turn["response_id"] is None
    [reply] = bot.slack.bot_replies("C1", ts)
    assert shown(reply).startswith("never")  # the partial text stays, the note under it
    assert SHUTDOWN_NOTE in shown(reply)
    [thread] = _rows(tmp_path / "bot.db", "SELECT head_response_id FROM threads")
    assert thread["head_response_id"] is None


def fake_slack_texts(slack: FakeSlack, ts: str) -> list[str]:
    return [shown(m) for m in slack.bot_replies("C1", ts)]


async def test_sigkill_mid_turn_then_restart_closes_it_and_the_chain_continues(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    db = tmp_path / "bot.db"
    first = BotProcess(db, fake_slack, fake_model)
    second = BotProcess(db, fake_slack, fake_model)
    async with aiohttp.ClientSession() as http:
        try:
            await first.start(http)
            root, _ = await first.mention(http, "first question", "EvK1")
            await fake_slack.wait_for(lambda: fake_slack.bot_replies("C1", root), timeout=10)
            await wait_until(lambda: _statuses(db, root) == ["completed"])
            good = fake_model.response_ids[0]

            fake_model.stall_after(1, text="this answer never ends")
            await first.mention(http, "second question", "EvK2", thread_ts=root)
            await fake_model.wait_for_requests(2, timeout=10)
            await wait_until(lambda: _statuses(db, root) == ["completed", "pending"])
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

            await second.start(http)
            # Start-up closed the turn the crash left pending and told the thread.
            assert _statuses(db, root) == ["completed", "failed"]
            interrupted = _turns(db, root)[1]
            assert interrupted["error_code"] == "interrupted"
            assert interrupted["response_id"] is None
            assert INTERRUPTED_NOTICE in fake_slack_texts(fake_slack, root)
            assert _rows(db, "SELECT id FROM turns WHERE status = 'pending'") == []

            # The next message in the thread continues from the last good answer.
            _, status = await second.mention(http, "third question", "EvK3", thread_ts=root)
            assert status == 200
            requests = await fake_model.wait_for_requests(3, timeout=10)
            assert requests[2].body["previous_response_id"] == good
            await wait_until(lambda: _statuses(db, root) == ["completed", "failed", "completed"])
            assert await second.stop() == 0, second.stderr
        finally:
            await first.ensure_stopped()
            await second.ensure_stopped()
    texts = fake_slack_texts(fake_slack, root)
    assert texts[-1].endswith(" to: U1: third question")
    turns = _turns(db, root)
    assert turns[2]["previous_response_id"] == good
    _assert_consistent(db)
    assert "closed a turn left pending by a previous run" in second.stderr


def _statuses(db: Path, thread_ts: str) -> list[str]:
    return [row["status"] for row in _turns(db, thread_ts)]


async def test_sigkill_never_leaves_the_database_inconsistent(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    """Three threads at the moment of the kill: one finished, one with a finished turn and one
    in flight, one whose first turn is in flight."""
    db = tmp_path / "bot.db"
    first = BotProcess(db, fake_slack, fake_model)
    second = BotProcess(db, fake_slack, fake_model)
    async with aiohttp.ClientSession() as http:
        try:
            await first.start(http)
            done, _ = await first.mention(http, "a", "EvC1")
            busy, _ = await first.mention(http, "b", "EvC2")
            await wait_until(
                lambda: (
                    _statuses(db, done) == ["completed"] and _statuses(db, busy) == ["completed"]
                )
            )
            fake_model.stall_after(1)
            fake_model.stall_after(0)
            await first.mention(http, "b again", "EvC3", thread_ts=busy)
            await fake_model.wait_for_requests(3, timeout=10)
            fresh, _ = await first.mention(http, "c", "EvC4")
            await fake_model.wait_for_requests(4, timeout=10)
            await wait_until(
                lambda: len(_rows(db, "SELECT id FROM turns WHERE status = 'pending'")) == 2
            )
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

            await second.start(http)
            assert await second.stop() == 0, second.stderr
        finally:
            await first.ensure_stopped()
            await second.ensure_stopped()
    _assert_consistent(db)
    assert _statuses(db, done) == ["completed"]
    assert _statuses(db, busy) == ["completed", "failed"]
    assert _statuses(db, fresh) == ["failed"]
    [head] = _rows(db, "SELECT head_response_id FROM threads WHERE thread_ts = ?", fresh)
    assert head["head_response_id"] is None
    for thread in (busy, fresh):
        assert fake_slack_texts(fake_slack, thread)[-1] == INTERRUPTED_NOTICE
    assert INTERRUPTED_NOTICE not in fake_slack_texts(fake_slack, done)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
