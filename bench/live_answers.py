"""Benchmark of live answers: the real service, driven as the end-to-end tests drive it.

Per scenario (by default 1 thread, then 50 concurrent threads) this starts a fresh service on a
fresh SQLite file, with a fresh fake Slack and a fresh fake model on 127.0.0.1, sends one
signed ``app_mention`` per thread all at once, waits until every answer is complete and
reports, from the fakes' logs:

* overhead to first visible text: (event sent -> first ``chat.startStream`` /
  ``chat.postMessage`` with text for that thread) minus the model's own time to first delta
  (first delta written - request arrival, both recorded on the fake model);
* Slack calls per answer (``chat.*`` and ``assistant.*``);
* edits per second per message (``chat.update`` / ``chat.appendStream`` calls divided by the
  message's life, max over messages; also the most edits seen in any 1-second window);
* whether every final text is exact, and how many answers streamed natively vs fell back.

Run from the repo root: ``.venv/bin/python -m bench.live_answers [--threads 1 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.service import Service
from tests.e2e.harness import MODEL_KEY, BotUnderTest, make_settings, shown
from tests.fakes.responses_server import FakeResponsesServer, last_user_text
from tests.fakes.slack_server import FakeSlack, SlackCall

CHANNEL = "C1"
_TAG = re.compile(rb"bench-q(\d+)")
_TAG_TEXT = re.compile(r"bench-q(\d+)")
_EDIT_METHODS = ("chat.update", "chat.appendStream")
_FIRST_METHODS = ("chat.startStream", "chat.postMessage")


def expected_answer(thread: int) -> str:
    """A deterministic, distinct, multi-paragraph answer (~1.5 kB) for thread ``thread``."""
    lines = [f"Answer for thread {thread}:", ""]
    for i in range(12):
        lines.append(
            f"- point {i} of thread {thread}: the quick brown fox jumps over "
            f"the lazy dog {thread * 31 + i} times."
        )
    lines += ["", f"That is all for thread {thread}."]
    return "\n".join(lines)


class TimedModel(FakeResponsesServer):
    """The fake model, also recording when each request arrived and when the answer text
    (and so the first delta, sent right after the opening frames) was produced."""

    def __init__(self) -> None:
        super().__init__(api_key=MODEL_KEY, answerer=self._answer_for)
        self.arrived: dict[int, float] = {}
        self.first_delta: dict[int, float] = {}

    def _answer_for(self, body: dict[str, Any], n: int) -> str:
        match = _TAG_TEXT.search(last_user_text(body))
        thread = int(match.group(1)) if match else -n
        self.first_delta.setdefault(thread, time.monotonic())
        return expected_answer(thread)

    async def _handle_responses(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        match = _TAG.search(await request.read())  # aiohttp caches the body for the handler
        if match:
            self.arrived.setdefault(int(match.group(1)), arrived)
        return await super()._handle_responses(request)


@dataclass
class Result:
    threads: int
    wall: float
    overheads: list[float] = field(default_factory=list)
    to_first_text: list[float] = field(default_factory=list)
    to_model_request: list[float] = field(default_factory=list)
    calls_by_method: dict[str, int] = field(default_factory=dict)
    calls_per_answer: float = 0.0
    max_edits_per_s: float = 0.0
    max_edits_in_1s: int = 0
    exact: int = 0
    native: int = 0
    fallback: int = 0
    errors: list[str] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def run_scenario(threads: int, deltas: int, seconds: float) -> Result:
    delay = seconds / max(1, deltas - 1)  # first delta at once, then one every `delay` s
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        async with FakeSlack() as slack, TimedModel() as model:
            for _ in range(threads):
                model.script_reply(None, delta_count=deltas, delay_between_deltas=delay)
            service = Service(
                make_settings(Path(tmp), slack, model, log_level="WARNING"), shutdown_grace=5
            )
            await service.start()
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            try:
                bot = BotUnderTest(service=service, slack=slack, model=model, http=session)
                sent: dict[int, float] = {}
                roots: dict[int, str] = {}

                async def ask(i: int) -> None:
                    sent[i] = time.monotonic()
                    ts, _ = await bot.mention(f"bench-q{i} please answer", user=f"U{i + 1}")
                    roots[i] = ts

                start = time.monotonic()
                await asyncio.gather(*(ask(i) for i in range(threads)))
                timeout = seconds + 30 + threads * 0.5
                await slack.wait_for(
                    lambda: all(slack.bot_replies(CHANNEL, ts) for ts in roots.values()),
                    timeout=timeout,
                )
                await bot.wait_idle(timeout=timeout)
                wall = time.monotonic() - start
                return analyse(threads, wall, slack, model, sent, roots)
            finally:
                await service.stop()
                await session.close()


def analyse(
    threads: int,
    wall: float,
    slack: FakeSlack,
    model: TimedModel,
    sent: dict[int, float],
    roots: dict[int, str],
) -> Result:
    result = Result(threads=threads, wall=wall)
    thread_of_root = {ts: i for i, ts in roots.items()}
    first_visible: dict[int, float] = {}
    message_calls: dict[str, list[SlackCall]] = {}
    for call in slack.calls:
        if call.method.startswith(("chat.", "assistant.")):
            result.calls_by_method[call.method] = result.calls_by_method.get(call.method, 0) + 1
        if not call.ok:
            continue
        if call.method in _FIRST_METHODS:
            thread = thread_of_root.get(str(call.params.get("thread_ts")))
            text = call.params.get("markdown_text") or call.params.get("text")
            if thread is not None and text:
                first_visible.setdefault(thread, call.time)
            message_calls.setdefault(str(call.response.get("ts")), []).append(call)
        elif call.method.startswith("chat.") and "ts" in call.params:
            message_calls.setdefault(str(call.params["ts"]), []).append(call)

    for i in range(threads):
        if i not in first_visible or i not in model.arrived or i not in model.first_delta:
            result.errors.append(f"thread {i}: missing timing")
            continue
        model_ttfd = model.first_delta[i] - model.arrived[i]
        result.to_first_text.append(first_visible[i] - sent[i])
        result.to_model_request.append(model.arrived[i] - sent[i])
        result.overheads.append(first_visible[i] - sent[i] - model_ttfd)
        replies = slack.bot_replies(CHANNEL, roots[i])
        if "".join(shown(m) for m in replies) == expected_answer(i):
            result.exact += 1
        else:
            result.errors.append(f"thread {i}: final text differs ({len(replies)} message(s))")

    for calls in message_calls.values():
        edits = [c.time for c in calls if c.method in _EDIT_METHODS]
        life = calls[-1].time - calls[0].time
        if edits and life > 0:
            result.max_edits_per_s = max(result.max_edits_per_s, len(edits) / life)
        for k, t in enumerate(edits):
            window = sum(1 for u in edits[k:] if u - t < 1.0)
            result.max_edits_in_1s = max(result.max_edits_in_1s, window)

    result.native = result.calls_by_method.get("chat.startStream", 0)
    result.fallback = threads - result.native
    result.calls_per_answer = sum(result.calls_by_method.values()) / threads
    return result


def print_table(results: list[Result], deltas: int, seconds: float) -> None:
    ms = 1000.0
    rows: list[tuple[str, list[str]]] = [
        ("answers complete in (s)", [f"{r.wall:.2f}" for r in results]),
        (
            "overhead to first text p50 (ms)",
            [f"{pct(r.overheads, 0.5) * ms:.0f}" for r in results],
        ),
        (
            "overhead to first text p95 (ms)",
            [f"{pct(r.overheads, 0.95) * ms:.0f}" for r in results],
        ),
        (
            "  event -> model request p50/p95 (ms)",
            [
                f"{pct(r.to_model_request, 0.5) * ms:.0f}/{pct(r.to_model_request, 0.95) * ms:.0f}"
                for r in results
            ],
        ),
        (
            "  event -> first text p50/p95 (ms)",
            [
                f"{pct(r.to_first_text, 0.5) * ms:.0f}/{pct(r.to_first_text, 0.95) * ms:.0f}"
                for r in results
            ],
        ),
        ("Slack calls per answer", [f"{r.calls_per_answer:.1f}" for r in results]),
        ("max edits/s per message (life)", [f"{r.max_edits_per_s:.2f}" for r in results]),
        ("max edits in any 1 s window", [str(r.max_edits_in_1s) for r in results]),
        ("final text exact", [f"{r.exact}/{r.threads}" for r in results]),
        ("native streams (startStream)", [str(r.native) for r in results]),
        ("chat.update fallback", [str(r.fallback) for r in results]),
    ]
    headers = [f"{r.threads} thread(s)" for r in results]
    width = max(len(name) for name, _ in rows)
    cols = [max(len(h), *(len(v[k]) for _, v in rows)) for k, h in enumerate(headers)]
    print(f"\nLive answers: model streams {deltas} deltas over {seconds:g} s per answer\n")
    print(" " * width + "  " + "  ".join(h.rjust(c) for h, c in zip(headers, cols, strict=True)))
    for name, values in rows:
        cells = "  ".join(v.rjust(c) for v, c in zip(values, cols, strict=True))
        print(f"{name.ljust(width)}  {cells}")
    print("\nSlack calls by method (chat.* / assistant.*):")
    for r in results:
        parts = ", ".join(f"{m}={n}" for m, n in sorted(r.calls_by_method.items()))
        print(f"  {r.threads} thread(s): {parts}")
    for r in results:
        for error in r.errors[:10]:
            print(f"  ! {r.threads} thread(s): {error}")


async def main_async(threads: list[int], deltas: int, seconds: float) -> int:
    results = []
    for n in threads:
        print(f"running {n} thread(s)…", flush=True)
        results.append(await run_scenario(n, deltas, seconds))
    print_table(results, deltas, seconds)
    return 0 if all(not r.errors and r.exact == r.threads for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--deltas", type=int, default=20, help="model deltas per answer")
    parser.add_argument("--seconds", type=float, default=4.0, help="model streaming time")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main_async(args.threads, args.deltas, args.seconds)))


if __name__ == "__main__":
    main()
