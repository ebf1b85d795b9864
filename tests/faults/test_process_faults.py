"""Process faults: SIGTERM with a turn in flight, a turn that outlasts the shutdown grace,
SIGKILL mid-turn and the restart that follows, messages waiting behind a running turn when the
process dies, and a restart with hundreds of interrupted turns to report. The real service runs
as ``python -m bot`` (a real process, real signals) against the fake Slack and model servers and
a SQLite file; one grace-period case also runs in-process.
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
    """One ``python -m bot`` process on a fixed port and a SQLite file (or ``database_url``),
    with ``env`` added to its environment."""

    def __init__(
        self,
        db: Path,
        slack: FakeSlack,
        model: FakeResponsesServer,
        *,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.db = db
        self.slack = slack
        self.model = model
        self.database_url = database_url or f"sqlite+aiosqlite:///{db}"
        self.extra_env = env or {}
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
            DATABASE_URL=self.database_url,
            MODEL_MAX_RETRIES="0",
            HOST="127.0.0.1",
            PORT=str(self.port),
            LOG_FORMAT="json",
            CONVERSATION_PROBE="false",  # no start-up probe among the counted model requests
        )
        env.update(self.extra_env)
        return env

    async def start(self, http: aiohttp.ClientSession, path: str = "/readyz") -> float:
        """Start the process and wait until ``path`` answers 200; returns the seconds that
        took from the spawn."""
        spawned = time.monotonic()
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
                async with http.get(self.url + path) as response:
                    if response.status == 200:
                        return time.monotonic() - spawned
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
        channel: str = "C1",
    ) -> tuple[str, int]:
        """Post ``@bot text`` in Slack and deliver its event; returns (ts, HTTP status)."""
        full = f"<@{self.slack.bot_user_id}> {text}"
        ts = self.slack.add_message(channel, user="U1", text=full, thread_ts=thread_ts)
        event: dict[str, Any] = {
            "type": "app_mention",
            "user": "U1",
            "text": full,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return ts, await self.post_event(http, event, event_id)

    async def follow_up(
        self, http: aiohttp.ClientSession, text: str, event_id: str, *, thread_ts: str
    ) -> tuple[str, int]:
        """Post a plain reply in a bot thread (no mention) and deliver its event."""
        ts = self.slack.add_message("C1", user="U1", text=text, thread_ts=thread_ts)
        event = {
            "type": "message",
            "user": "U1",
            "text": text,
            "ts": ts,
            "thread_ts": thread_ts,
            "channel": "C1",
            "event_ts": ts,
            "channel_type": "channel",
        }
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
            # Start-up closes the turn the crash left pending and tells the thread (in the
            # background, once it listens).
            await wait_until(lambda: INTERRUPTED_NOTICE in fake_slack_texts(fake_slack, root))
            assert _statuses(db, root) == ["completed", "failed"]
            interrupted = _turns(db, root)[1]
            assert interrupted["error_code"] == "interrupted"
            assert interrupted["response_id"] is None
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


def _waiting(db: Path) -> list[sqlite3.Row]:
    """Messages accepted and not yet turned into turns (none where nothing keeps them)."""
    try:
        return _rows(db, "SELECT * FROM accepted_messages ORDER BY ts")
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return []


async def _hold_a_thread_with_two_messages_waiting(
    bot: BotProcess, http: aiohttp.ClientSession, db: Path, model: FakeResponsesServer
) -> tuple[str, str]:
    """A finished first answer, a second turn stuck mid-answer, and two more messages that
    Slack got its 200 for while they wait behind it. Returns (thread, first response id)."""
    root, _ = await bot.mention(http, "first question", "EvQ1")
    await wait_until(lambda: _statuses(db, root) == ["completed"])
    model.stall_after(1, text="this answer never ends")
    await bot.follow_up(http, "second question", "EvQ2", thread_ts=root)
    await model.wait_for_requests(2, timeout=10)
    await wait_until(lambda: _statuses(db, root) == ["completed", "pending"])
    for text, event_id in (("third question", "EvQ3"), ("fourth question", "EvQ4")):
        _, status = await bot.follow_up(http, text, event_id, thread_ts=root)
        assert status == 200
    # Stored before Slack had its 200.
    assert [row["event_id"] for row in _waiting(db)] == ["EvQ3", "EvQ4"]
    return root, model.response_ids[0]


def _assert_answered_in_order(
    slack: FakeSlack, model: FakeResponsesServer, root: str, good: str
) -> None:
    texts = fake_slack_texts(slack, root)
    assert texts[0].endswith("to: U1: first question")
    rest = [t for t in texts[1:] if t.endswith(("third question", "fourth question"))]
    assert [t.rsplit(": ", 1)[1] for t in rest] == ["third question", "fourth question"]
    bodies = [r.body for r in model.requests if r.path.endswith("/responses")]
    third, fourth = bodies[2], bodies[3]
    assert third["input"][-1]["content"].endswith("third question")
    assert fourth["input"][-1]["content"].endswith("fourth question")
    # One unforked chain: the interrupted turn left the head at the first answer.
    assert third["previous_response_id"] == good
    assert fourth["previous_response_id"] == model.response_ids[1]


async def test_messages_waiting_behind_a_turn_survive_sigkill_and_are_answered_in_order(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    db = tmp_path / "bot.db"
    first = BotProcess(db, fake_slack, fake_model)
    second = BotProcess(db, fake_slack, fake_model)
    async with aiohttp.ClientSession() as http:
        try:
            await first.start(http)
            root, good = await _hold_a_thread_with_two_messages_waiting(first, http, db, fake_model)
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

            await second.start(http)
            await wait_until(
                lambda: _statuses(db, root) == ["completed", "failed", "completed", "completed"],
                timeout=20,
            )
            assert _waiting(db) == []
            assert await second.stop() == 0, second.stderr
        finally:
            await first.ensure_stopped()
            await second.ensure_stopped()
    texts = fake_slack_texts(fake_slack, root)
    # The killed turn's partial text stays; its note comes before the waiting messages' answers.
    assert texts[1] == "this ans"
    assert texts[2] == INTERRUPTED_NOTICE
    _assert_answered_in_order(fake_slack, fake_model, root, good)
    _assert_consistent(db)


async def test_messages_waiting_when_shutdown_outlasts_its_grace_are_answered_after_restart(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    db = tmp_path / "bot.db"
    first = BotProcess(db, fake_slack, fake_model, env={"SHUTDOWN_GRACE": "1"})
    second = BotProcess(db, fake_slack, fake_model)
    async with aiohttp.ClientSession() as http:
        try:
            await first.start(http)
            root, good = await _hold_a_thread_with_two_messages_waiting(first, http, db, fake_model)
            # SIGTERM: the stuck turn outlasts the one-second grace and is cancelled with a
            # note; the two waiting messages stay stored.
            assert await first.stop(signal.SIGTERM) == 0, first.stderr
            assert "shutdown grace period ended" in first.stderr
            assert _statuses(db, root) == ["completed", "failed"]
            assert [row["event_id"] for row in _waiting(db)] == ["EvQ3", "EvQ4"]
            assert SHUTDOWN_NOTE in fake_slack_texts(fake_slack, root)[1]

            await second.start(http)
            await wait_until(
                lambda: _statuses(db, root) == ["completed", "failed", "completed", "completed"],
                timeout=20,
            )
            assert _waiting(db) == []
            assert await second.stop() == 0, second.stderr
        finally:
            await first.ensure_stopped()
            await second.ensure_stopped()
    _assert_answered_in_order(fake_slack, fake_model, root, good)
    # The shutdown note was the only note: nothing was "interrupted" at the restart.
    assert INTERRUPTED_NOTICE not in fake_slack_texts(fake_slack, root)
    _assert_consistent(db)


def _seed_pending_turns(db: Path, count: int, *, channels: int = 50) -> list[str]:
    """``count`` threads, spread over ``channels`` channels (Slack lets a bot post about once a
    second per channel, so 500 notes in one channel would take 500 s however they are sent),
    whose last turn a crash left pending (as a killed process leaves them); returns their
    thread ts."""
    now = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
    threads = [f"1600000000.{i:06d}" for i in range(count)]
    with sqlite3.connect(db) as connection:
        for i, ts in enumerate(threads):
            channel = f"C9{i % channels:03d}"
            thread_id = connection.execute(
                "INSERT INTO threads (team_id, channel_id, thread_ts, created_at, updated_at) "
                "VALUES ('T1', ?, ?, ?, ?)",
                (channel, ts, now, now),
            ).lastrowid
            connection.execute(
                "INSERT INTO turns (thread_id, team_id, channel_id, user_id, user_ts, status, "
                "model, input_tokens, cached_tokens, output_tokens, reasoning_tokens, "
                "created_at, started_at) VALUES "
                "(?, 'T1', ?, 'U1', ?, 'pending', 'test-model', 0, 0, 0, 0, ?, ?)",
                (thread_id, channel, ts, now, now),
            )
    return threads


async def test_start_up_listens_first_and_reports_500_interrupted_turns_in_the_background(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    db = tmp_path / "bot.db"
    baseline = BotProcess(db, fake_slack, fake_model)
    restarted = BotProcess(db, fake_slack, fake_model)
    async with aiohttp.ClientSession() as http:
        try:
            # How long this machine takes to start the service with nothing to recover.
            quiet_start = await baseline.start(http, path="/healthz")
            assert await baseline.stop() == 0, baseline.stderr
            threads = _seed_pending_turns(db, 500)
            # Slack rate-limits the notes: every note worker first waits out 3 s.
            fake_slack.fail_next("chat.postMessage", status=429, retry_after=3, times=8)

            busy_start = await restarted.start(http, path="/healthz")
            # Listening did not wait for the notes.
            assert busy_start - quiet_start < 2.0, (quiet_start, busy_start)
            asked = time.monotonic()
            ts, status = await restarted.mention(http, "are you there?", "EvNew1", channel="C1")
            assert status == 200
            await fake_slack.wait_for(lambda: fake_slack.bot_replies("C1", ts), timeout=10)
            answered_after = time.monotonic() - asked
            notes_when_answered = _count_notes(fake_slack)

            await fake_slack.wait_for(lambda: _count_notes(fake_slack) == 500, timeout=60)
            assert await restarted.stop() == 0, restarted.stderr
        finally:
            await baseline.ensure_stopped()
            await restarted.ensure_stopped()
    # Neither did the new question.
    assert answered_after < 2.0
    assert notes_when_answered < 500
    # Every interrupted turn was closed and its own thread told, once.
    assert _rows(db, "SELECT id FROM turns WHERE status = 'pending'") == []
    noted = sorted(
        c.params["thread_ts"]
        for c in fake_slack.calls_to("chat.postMessage")
        if c.ok and c.params.get("text") == INTERRUPTED_NOTICE
    )
    assert noted == threads
    _assert_consistent(db)


def _count_notes(slack: FakeSlack) -> int:
    return sum(
        1
        for c in slack.calls_to("chat.postMessage")
        if c.ok and c.params.get("text") == INTERRUPTED_NOTICE
    )
