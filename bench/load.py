"""Load benchmark: the service as real subprocesses, on SQLite or PostgreSQL, 1 or 2 replicas.

Per scenario (backend x replicas x N) this creates a fresh database, starts ``python -m bot``
as one or two subprocesses (as ``tests/replicas/test_two_replicas.py`` does), keeps the fake
Slack and a fake model (every answer takes ``--latency`` seconds before it streams) in this
process, and then:

* sends N signed ``app_mention`` events (N distinct threads) concurrently, round-robin over the
  replicas (at most ``--concurrency`` requests in flight);
* once a thread's first answer is complete, sends one follow-up in that thread to the next
  replica;
* for 10% of all events, sends Slack's retry (same ``event_id``, ``X-Slack-Retry-Num: 1``) to the
  *other* replica right after the original was acknowledged.

It waits until every answer is exact and every delivery is handled (``slackbot_turns_total`` on
each replica's ``/metrics``), reads each process's peak RSS (``VmHWM``), stops them with SIGTERM
and prints one table: events accepted per second (initial burst), overhead (a) event sent ->
model request arrival and (b) model's last byte -> last Slack ``chat.postMessage``/``chat.update``
of that answer (p50/p95/p99), peak RSS, and lost / duplicated / forked turns (all must be 0).

Run from the repo root:
``.venv/bin/python -m bench.load [--n 10 100 1000] [--latency 1.0]
[--backends sqlite postgresql] [--replicas 1 2]``.
PostgreSQL scenarios use ``TEST_DATABASE_URL`` (see ``tests/storage``) and are skipped, with a
note, when that server cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench.live_answers import _TAG_TEXT, TimedModel, expected_answer, pct
from tests.e2e.harness import MODEL_KEY, SIGNING_SECRET, shown, sign
from tests.fakes.slack_server import FakeSlack
from tests.replicas.test_two_replicas import _free_port
from tests.storage import temporary_database

REPO = Path(__file__).resolve().parents[1]
FOLLOW = 1_000_000  # the follow-up of thread i is tagged bench-q{FOLLOW + i}
CHANNELS = 20  # threads spread over C1..C20 (keeps the fake's per-channel scans short)
_ANSWER_METHODS = ("chat.postMessage", "chat.update")


def channel_of(thread: int) -> str:
    return f"C{1 + thread % CHANNELS}"


class LoadModel(TimedModel):
    """``TimedModel`` whose every answer waits ``latency`` s before its first byte, and which
    also records when it sent its last byte and which response id answered which tag."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self.completed: dict[int, float] = {}
        self.response_of: dict[int, list[str]] = {}
        self.requests_of: Counter[int] = Counter()

    async def _handle_responses(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        raw = await request.read()
        tag = None
        try:
            match = _TAG_TEXT.search(_last_user(json.loads(raw)))
            tag = int(match.group(1)) if match else None
        except ValueError:
            pass
        if tag is not None:
            self.arrived.setdefault(tag, arrived)
            self.requests_of[tag] += 1
        await asyncio.sleep(self.latency)  # a slow model, not synchronisation
        response = await super(TimedModel, self)._handle_responses(request)
        if tag is not None:
            self.completed.setdefault(tag, time.monotonic())
        return response

    def _issue(self, answer: Any) -> None:
        super()._issue(answer)
        match = _TAG_TEXT.search(_last_user(answer.request))
        if match:
            self.response_of.setdefault(int(match.group(1)), []).append(answer.response_id)


def _last_user(body: Any) -> str:
    from tests.fakes.responses_server import last_user_text

    return last_user_text(body) if isinstance(body, dict) else ""


@dataclass
class Replica:
    process: asyncio.subprocess.Process
    url: str
    stderr: Path
    peak_rss_kb: int = 0


@dataclass
class Result:
    backend: str
    replicas: int
    n: int
    note: str = ""
    wall: float = 0.0
    accepted: int = 0
    burst_seconds: float = 0.0
    to_model: list[float] = field(default_factory=list)
    to_slack: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    forked: int = 0
    model_requests: int = 0
    deliveries: int = 0
    handled: int = 0
    errors: list[str] = field(default_factory=list)
    roots: dict[int, str] = field(default_factory=dict)
    followed: set[int] = field(default_factory=set)


async def start_replica(env: dict[str, str], tmp: Path, index: int) -> Replica:
    port = _free_port()
    stderr = tmp / f"replica{index}.stderr"
    with stderr.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            env={**env, "PORT": str(port)},
            cwd=tmp,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )
    replica = Replica(process, f"http://127.0.0.1:{port}", stderr)
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(replica.url + "/readyz") as response:
                    if response.status == 200:
                        return replica
            except aiohttp.ClientConnectionError:
                pass
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica {index} never became ready: {tail(stderr)}")
            await asyncio.sleep(0.05)


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def handled(http: aiohttp.ClientSession, replicas: list[Replica]) -> int:
    total = 0.0
    for replica in replicas:
        async with http.get(replica.url + "/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith("slackbot_turns_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def run_scenario(
    backend: str, n_replicas: int, n: int, latency: float, concurrency: int
) -> Result:
    result = Result(backend, n_replicas, n)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            async with temporary_database(backend, tmp) as url:
                await drive(result, url, tmp, latency, concurrency)
        except pytest.skip.Exception as exc:
            result.note = f"skipped: {exc}"
    return result


async def drive(result: Result, url: str, tmp: Path, latency: float, concurrency: int) -> None:
    async with FakeSlack() as slack, LoadModel(latency) as model:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))},
            "PYTHONPATH": str(REPO),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": MODEL_KEY,
            "DEFAULT_MODEL": "test-model",
            "DATABASE_URL": url,
            "HOST": "127.0.0.1",
            "SLACK_NATIVE_STREAMING": "false",
            "LOG_LEVEL": "WARNING",
            "CONVERSATION_PROBE": "false",  # measure the turns, not a start-up probe
        }
        replicas: list[Replica] = []
        try:
            for k in range(result.replicas):  # one at a time: the first migrates
                replicas.append(await start_replica(env, tmp, k))
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                await load(result, slack, model, replicas, http, latency, concurrency)
                result.handled = await handled(http, replicas)
            for replica in replicas:
                replica.peak_rss_kb = peak_rss_kb(replica.process.pid)
        finally:
            for replica in replicas:
                if replica.process.returncode is None:
                    replica.process.send_signal(signal.SIGTERM)
            for replica in replicas:
                try:
                    await asyncio.wait_for(replica.process.wait(), timeout=30)
                except TimeoutError:
                    replica.process.kill()
                    await replica.process.wait()
                if replica.process.returncode != 0:
                    result.errors.append(
                        f"replica exit {replica.process.returncode}: {tail(replica.stderr)}"
                    )
        result.rss_mb = [r.peak_rss_kb / 1024 for r in replicas]
        analyse(result, slack, model)
        for replica in replicas:
            text = replica.stderr.read_text(errors="replace")
            warnings = [line for line in text.splitlines() if "error" in line.lower()]
            if warnings:
                result.errors.append(f"{len(warnings)} error line(s), e.g. {warnings[0][:300]}")


async def load(
    result: Result,
    slack: FakeSlack,
    model: LoadModel,
    replicas: list[Replica],
    http: aiohttp.ClientSession,
    latency: float,
    concurrency: int,
) -> None:
    n = result.n
    gate = asyncio.Semaphore(concurrency)
    sent: dict[int, float] = {}
    roots = result.roots
    thread_of_root: dict[str, int] = {}
    deliveries = 0
    accepted = 0
    retry_every = 10  # 10% of events are retried at the other replica
    event_number = 0

    async def deliver(
        replica: Replica, event: dict[str, Any], event_id: str, retry: int | None = None
    ) -> float:
        nonlocal deliveries, accepted
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
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        async with gate:
            started = time.monotonic()
            deliveries += 1
            async with http.post(replica.url + "/slack/events", data=body, headers=headers) as r:
                await r.read()
                if r.status == 200:
                    accepted += 1
                else:
                    result.errors.append(f"{event_id}: HTTP {r.status}")
        return started

    async def send(tag: int, event: dict[str, Any], event_id: str, k: int) -> None:
        nonlocal event_number
        event_number += 1
        retried = event_number % retry_every == 0
        sent[tag] = await deliver(replicas[k % len(replicas)], event, event_id)
        if retried:
            await deliver(replicas[(k + 1) % len(replicas)], event, event_id, retry=1)

    async def mention(i: int) -> None:
        text = f"<@{slack.bot_user_id}> bench-q{i} please answer"
        channel = channel_of(i)
        ts = slack.add_message(channel, user=f"U{i + 1}", text=text)
        roots[i] = ts
        thread_of_root[ts] = i
        event = {
            "type": "app_mention",
            "user": f"U{i + 1}",
            "text": text,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
        }
        await send(i, event, f"EvR{i}", i)

    async def follow_up(i: int) -> None:
        text = f"bench-q{FOLLOW + i} and a follow-up"
        channel = channel_of(i)
        ts = slack.add_message(channel, user=f"U{i + 1}", text=text, thread_ts=roots[i])
        event = {
            "type": "message",
            "user": f"U{i + 1}",
            "text": text,
            "ts": ts,
            "thread_ts": roots[i],
            "channel": channel,
            "event_ts": ts,
            "channel_type": "channel",
        }
        await send(FOLLOW + i, event, f"EvF{i}", i + 1)

    # Watch Slack: when a thread's first answer is exact, send its follow-up.
    done: set[int] = set()
    thread_of_ts: dict[str, int] = {}
    follow_ups: list[asyncio.Task[None]] = []
    seen = 0

    def scan() -> None:
        nonlocal seen
        calls = slack.calls
        while seen < len(calls):
            call = calls[seen]
            seen += 1
            if call.method not in _ANSWER_METHODS or not call.ok:
                continue
            if call.method == "chat.postMessage":
                ts = str(call.response.get("ts"))
                root = str(call.params.get("thread_ts"))
                thread = thread_of_root.get(root)
                if thread is None:
                    continue
                thread_of_ts[ts] = thread
            else:
                ts = str(call.params.get("ts"))
                if ts not in thread_of_ts:
                    continue
                thread = thread_of_ts[ts]
            message = slack.message(channel_of(thread), ts)
            if message is None:
                continue
            text = shown(message)
            for tag in (thread, FOLLOW + thread):
                if tag not in done and text == expected_answer(tag):
                    done.add(tag)
                    if tag == thread:
                        follow_ups.append(asyncio.create_task(follow_up(thread)))

    start = time.monotonic()
    await asyncio.gather(*(mention(i) for i in range(n)))
    result.burst_seconds = time.monotonic() - start
    result.accepted = accepted
    deadline = start + 60 + n * 0.3 + 4 * latency
    last_progress, progress, next_check, all_handled = time.monotonic(), 0, 0.0, False
    while len(done) < 2 * n and time.monotonic() < deadline:
        scan()
        now = time.monotonic()
        if len(done) != progress:
            progress, last_progress = len(done), now
        if now >= next_check:  # every delivery handled and nothing new for 2 s: settled
            next_check = now + 0.25
            pending = any(not task.done() for task in follow_ups)
            all_handled = not pending and await handled(http, replicas) >= deliveries
            if all_handled and now - last_progress > 2.0:
                break
        await asyncio.sleep(0.02)
    await asyncio.gather(*follow_ups)
    while time.monotonic() < deadline:
        if await handled(http, replicas) >= deliveries:
            break
        await asyncio.sleep(0.1)
    scan()
    result.wall = time.monotonic() - start
    result.deliveries = deliveries
    result.followed = {tag - FOLLOW for tag in sent if tag >= FOLLOW}
    if time.monotonic() >= deadline:
        result.errors.append(f"timed out: {len(done)}/{2 * n} answers exact")
    elif len(done) < 2 * n:
        result.errors.append(f"settled with {len(done)}/{2 * n} answers exact")
    result.to_model = [model.arrived[t] - s for t, s in sent.items() if t in model.arrived]


def analyse(result: Result, slack: FakeSlack, model: LoadModel) -> None:
    roots = result.roots
    # Bot messages per thread, and the last answer call (post or update) touching each.
    last_call: dict[str, float] = {}
    for call in slack.calls:
        if call.method in _ANSWER_METHODS and call.ok:
            ts = str(call.response.get("ts") or call.params.get("ts"))
            last_call[ts] = max(last_call.get(ts, 0.0), call.time)
    for i, root in roots.items():
        replies = slack.bot_replies(channel_of(i), root)
        events = 2 if i in result.followed else 1  # a lost first answer: no follow-up
        result.duplicated += max(0, len(replies) - events)
        texts = {shown(m): str(m["ts"]) for m in replies}
        for tag in (i, FOLLOW + i):
            ts = texts.get(expected_answer(tag))
            if ts is None:
                result.lost += 1
                continue
            if tag in model.completed and ts in last_call:
                result.to_slack.append(last_call[ts] - model.completed[tag])
        first = model.response_of.get(i, [])
        follow_requests = [
            r.body
            for r in model.requests
            if isinstance(r.body, dict) and _tag_of(r.body) == FOLLOW + i
        ]
        for body in follow_requests:
            if not first or body.get("previous_response_id") != first[0]:
                result.forked += 1
    result.model_requests = sum(model.requests_of.values())


def _tag_of(body: dict[str, Any]) -> int | None:
    match = _TAG_TEXT.search(_last_user(body))
    return int(match.group(1)) if match else None


def print_table(results: list[Result], latency: float, concurrency: int) -> None:
    ms = 1000.0

    def trio(values: list[float]) -> str:
        if not values:
            return "-"
        return "/".join(f"{pct(values, q) * ms:.0f}" for q in (0.5, 0.95, 0.99))

    headers = [
        "backend",
        "replicas",
        "N",
        "wall s",
        "events/s",
        "(a) event->model p50/95/99 ms",
        "(b) model done->Slack p50/95/99 ms",
        "peak RSS MB",
        "lost",
        "dup",
        "forked",
    ]
    rows: list[list[str]] = []
    for r in results:
        if r.note:
            rows.append([r.backend, str(r.replicas), str(r.n), r.note] + [""] * 7)
            continue
        rate = r.accepted / r.burst_seconds if r.burst_seconds else float("nan")
        rows.append(
            [
                r.backend,
                str(r.replicas),
                str(r.n),
                f"{r.wall:.1f}",
                f"{rate:.0f}",
                trio(r.to_model),
                trio(r.to_slack),
                "/".join(f"{m:.0f}" for m in r.rss_mb),
                str(r.lost),
                str(r.duplicated),
                str(r.forked),
            ]
        )
    print(
        f"\nLoad: model latency {latency:g} s per answer, N threads x (mention + follow-up), "
        f"10% of events retried at the other replica, <= {concurrency} requests in flight\n"
    )
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if k < 2 else "---:" for k in range(len(headers))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for r in results:
        if r.note:
            continue
        print(
            f"  {r.backend} x{r.replicas} N={r.n}: {r.accepted} events accepted in "
            f"{r.burst_seconds:.2f} s (burst), {r.deliveries} deliveries, {r.handled} handled, "
            f"{r.model_requests} model requests"
        )
        for error in r.errors[:5]:
            print(f"    ! {error}")


async def main_async(
    ns: list[int], latency: float, backends: list[str], replicas: list[int], concurrency: int
) -> int:
    results: list[Result] = []
    started = time.monotonic()
    for backend in backends:
        for count in replicas:
            for n in ns:
                if backend == "sqlite" and count > 1:
                    results.append(Result(backend, count, n, note="n/a (SQLite is single-process)"))
                    continue
                t0 = time.monotonic()
                print(f"running {backend} x{count} N={n}…", flush=True)
                result = await run_scenario(backend, count, n, latency, concurrency)
                print(f"  done in {time.monotonic() - t0:.1f} s {result.note}", flush=True)
                results.append(result)
                if result.note.startswith("skipped"):
                    print(f"  note: PostgreSQL scenarios {result.note}", flush=True)
    print_table(results, latency, concurrency)
    print(f"\ntotal run time {time.monotonic() - started:.0f} s")
    bad = [r for r in results if not r.note and (r.lost or r.duplicated or r.forked or r.errors)]
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--latency", type=float, default=1.0, help="model seconds per answer")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    args = parser.parse_args()
    raise SystemExit(
        asyncio.run(
            main_async(args.n, args.latency, args.backends, args.replicas, args.concurrency)
        )
    )


if __name__ == "__main__":
    main()
