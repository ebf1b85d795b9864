"""Benchmark of live answers inside Slack's real rate limits, driven as the e2e tests drive it.

Each scenario starts a fresh service on a fresh SQLite file with a fresh fake Slack that
ENFORCES Slack's per-method, per-workspace tiers (``FakeSlack.enforce_tiers``: 429 +
``Retry-After`` over a budget, bursts allowed) and a fresh fake model on 127.0.0.1, sends one
signed ``app_mention`` per thread all at once, waits until every turn is handled, and reports:

* answers exact and complete: the bot's messages in the thread, concatenated, equal the
  model's answer (must be all of them);
* 429s received from Slack;
* lag of the first visible text over the model's first delta (p50 / p95 / max): the first
  ``chat.startStream`` / ``chat.postMessage`` carrying text for the thread minus the moment
  the fake model sent that thread's first delta;
* Slack calls per answer (every Web API method);
* peak RSS of the process (each scenario runs in its own process, so this is per scenario);
* wall time from the first event sent to the last turn handled.

Scenarios (``--scenario``; default all, each in a child process):

* ``20x10s``: 20 threads, answers of ~4 kB streamed over 10 s;
* ``50x1s``: 50 threads, ~1.5 kB over 1 s;
* ``200x1s``: 200 threads over 10 channels, ~1.5 kB over 1 s;
* ``1x60s``: 1 thread, ~20 kB (two messages) over 60 s;
* ``50x1s-50ch`` (not run by default): 50 threads in 50 channels, ~1.5 kB over 1 s.

Run from the repo root: ``.venv/bin/python -m bench.live_answers [--scenario 50x1s]``
(``--native off`` for the ``chat.update`` fallback only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.service import Service
from tests.e2e.harness import MODEL_KEY, BotUnderTest, make_settings, shown
from tests.fakes.responses_server import FakeResponsesServer, last_user_text
from tests.fakes.slack_server import FakeSlack

_TAG = re.compile(rb"bench-q(\d+)")
_TAG_TEXT = re.compile(r"bench-q(\d+)")
_FIRST_METHODS = ("chat.startStream", "chat.postMessage")


@dataclass(frozen=True)
class Scenario:
    name: str
    threads: int
    seconds: float
    size: int
    """Characters per answer (about)."""
    deltas: int
    channels: int = 1


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("20x10s", threads=20, seconds=10, size=4_000, deltas=100),
        Scenario("50x1s", threads=50, seconds=1, size=1_500, deltas=20),
        Scenario("200x1s", threads=200, seconds=1, size=1_500, deltas=20, channels=10),
        Scenario("1x60s", threads=1, seconds=60, size=20_000, deltas=300),
        # Not one of the four: 50 threads each in its own channel, where Slack's
        # per-channel chat.postMessage pace does not bind (the first-text target).
        Scenario("50x1s-50ch", threads=50, seconds=1, size=1_500, deltas=20, channels=50),
    )
}


def expected_answer(thread: int, size: int) -> str:
    """A deterministic, distinct, multi-paragraph answer of about ``size`` characters."""
    lines = [f"Answer for thread {thread}:", ""]
    i = 0
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(
            f"- point {i} of thread {thread}: the quick brown fox jumps over "
            f"the lazy dog {thread * 31 + i} times."
        )
        if i % 10 == 9:
            lines.append("")
        i += 1
    lines += ["", f"That is all for thread {thread}."]
    return "\n".join(lines)


class TimedModel(FakeResponsesServer):
    """The fake model, also recording when it produced each thread's answer (its first
    delta follows at once)."""

    def __init__(self, size: int) -> None:
        super().__init__(api_key=MODEL_KEY, answerer=self._answer_for)
        self.size = size
        self.first_delta: dict[int, float] = {}

    def _answer_for(self, body: dict[str, Any], n: int) -> str:
        match = _TAG_TEXT.search(last_user_text(body))
        thread = int(match.group(1)) if match else -n
        self.first_delta.setdefault(thread, time.monotonic())
        return expected_answer(thread, self.size)

    async def _handle_responses(self, request: web.Request) -> web.StreamResponse:
        await request.read()  # aiohttp caches the body for the handler
        return await super()._handle_responses(request)


@dataclass
class Result:
    scenario: str
    native: bool
    threads: int
    wall: float = 0.0
    exact: int = 0
    rate_limited: int = 0
    lags: list[float] = field(default_factory=list)
    calls: int = 0
    calls_by_method: dict[str, int] = field(default_factory=dict)
    native_streams: int = 0
    peak_rss_mb: float = 0.0
    finished: bool = True
    errors: list[str] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def run_scenario(scenario: Scenario, *, native: bool, timeout: float) -> Result:
    delay = scenario.seconds / max(1, scenario.deltas - 1)
    result = Result(scenario=scenario.name, native=native, threads=scenario.threads)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        async with FakeSlack() as slack, TimedModel(scenario.size) as model:
            slack.enforce_tiers()
            for i in range(scenario.threads):
                slack.add_user(f"U{i + 1}", name=f"person{i + 1}")
                model.script_reply(None, delta_count=scenario.deltas, delay_between_deltas=delay)
            settings = make_settings(
                Path(tmp), slack, model, log_level="ERROR", slack_native_streaming=native
            )
            service = Service(settings, shutdown_grace=5)
            await service.start()
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            try:
                bot = BotUnderTest(service=service, slack=slack, model=model, http=session)
                roots: dict[int, tuple[str, str]] = {}

                async def ask(i: int) -> None:
                    channel = f"C{i % scenario.channels + 1}"
                    ts, _ = await bot.mention(
                        f"bench-q{i} please answer", user=f"U{i + 1}", channel=channel
                    )
                    roots[i] = (channel, ts)

                start = time.monotonic()
                await asyncio.gather(*(ask(i) for i in range(scenario.threads)))
                try:
                    await bot.wait_idle(timeout=timeout)
                except AssertionError:
                    result.finished = False
                result.wall = time.monotonic() - start
                analyse(result, scenario, slack, model, roots)
            finally:
                await service.stop()
                await session.close()
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def analyse(
    result: Result,
    scenario: Scenario,
    slack: FakeSlack,
    model: TimedModel,
    roots: dict[int, tuple[str, str]],
) -> None:
    thread_of_root = {root: i for i, root in roots.items()}
    first_visible: dict[int, float] = {}
    for call in slack.calls:
        result.calls += 1
        result.calls_by_method[call.method] = result.calls_by_method.get(call.method, 0) + 1
        if call.status == 429:
            result.rate_limited += 1
        if not call.ok or call.method not in _FIRST_METHODS:
            continue
        key = (str(call.params.get("channel")), str(call.params.get("thread_ts")))
        thread = thread_of_root.get(key)
        text = call.params.get("markdown_text") or call.params.get("text")
        if thread is not None and text:
            first_visible.setdefault(thread, call.time)
    result.native_streams = sum(
        1 for c in slack.calls_to("chat.startStream") if c.ok and c.status == 200
    )
    for i, (channel, ts) in roots.items():
        replies = slack.bot_replies(channel, ts)
        if "".join(shown(m) for m in replies) == expected_answer(i, scenario.size):
            result.exact += 1
        else:
            got = sum(len(shown(m)) for m in replies)
            result.errors.append(f"thread {i}: not exact ({len(replies)} message(s), {got} chars)")
        if i in first_visible and i in model.first_delta:
            result.lags.append(first_visible[i] - model.first_delta[i])
        else:
            result.errors.append(f"thread {i}: no visible text")


def print_table(results: list[Result]) -> None:
    ms = 1000.0
    rows: list[tuple[str, list[str]]] = [
        ("native streaming", ["on" if r.native else "off" for r in results]),
        ("answers exact and complete", [f"{r.exact}/{r.threads}" for r in results]),
        ("429s received", [str(r.rate_limited) for r in results]),
        (
            "first text lag p50/p95/max (ms)",
            [
                f"{pct(r.lags, 0.5) * ms:.0f}/{pct(r.lags, 0.95) * ms:.0f}/"
                f"{(max(r.lags) if r.lags else float('nan')) * ms:.0f}"
                for r in results
            ],
        ),
        ("Slack calls per answer", [f"{r.calls / r.threads:.1f}" for r in results]),
        ("native streams", [str(r.native_streams) for r in results]),
        ("peak RSS (MB)", [f"{r.peak_rss_mb:.0f}" for r in results]),
        ("wall time (s)", [f"{r.wall:.1f}" + ("" if r.finished else "+") for r in results]),
    ]
    headers = [r.scenario for r in results]
    width = max(len(name) for name, _ in rows)
    cols = [max(len(h), *(len(v[k]) for _, v in rows)) for k, h in enumerate(headers)]
    print()
    print(" " * width + "  " + "  ".join(h.rjust(c) for h, c in zip(headers, cols, strict=True)))
    for name, values in rows:
        cells = "  ".join(v.rjust(c) for v, c in zip(values, cols, strict=True))
        print(f"{name.ljust(width)}  {cells}")
    print("\nSlack calls by method:")
    for r in results:
        parts = ", ".join(f"{m}={n}" for m, n in sorted(r.calls_by_method.items()))
        print(f"  {r.scenario}: {parts}")
    for r in results:
        for error in r.errors[:5]:
            print(f"  ! {r.scenario}: {error}")
        if len(r.errors) > 5:
            print(f"  ! {r.scenario}: … {len(r.errors) - 5} more")


def run_child(name: str, native: bool, timeout: float) -> Result:
    """One scenario in its own process, so peak RSS is that scenario's."""
    command = [sys.executable, "-m", "bench.live_answers", "--child", name, "--timeout"]
    command += [str(timeout), "--native", "on" if native else "off"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return Result(**json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS)[:4]
    )
    parser.add_argument("--native", choices=["on", "off"], default="on")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per scenario")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    native = args.native == "on"
    if args.child:
        result = asyncio.run(
            run_scenario(SCENARIOS[args.child], native=native, timeout=args.timeout)
        )
        print(json.dumps(asdict(result)))
        return
    results = []
    for name in args.scenario:
        print(f"running {name}…", flush=True)
        results.append(run_child(name, native, args.timeout))
    print_table(results)
    raise SystemExit(0 if all(r.exact == r.threads for r in results) else 1)


if __name__ == "__main__":
    main()
