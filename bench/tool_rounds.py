"""The bot's own time per tool round: from the moment a response asking for a function call
has arrived (its ``response.completed`` parsed) to the moment the next request is sent,
minus the time the tool itself took.

Real parts: the conversation service's turn and tool loop, the Responses client (SSE over
HTTP to the fake Responses server, which streams ``function_call`` items as OpenAI does), the
MCP registry (the official SDK's client, over streamable HTTP to the SDK's own server), and a
SQLite database (turns, transcripts, tool-call records). In memory: the Slack side (a
recording sink), which plays no part in a round.

    .venv/bin/python -m bench.tool_rounds [--rounds 200] [--per-turn 10]

Each turn asks for ``--per-turn`` calls of ``lookup_order`` in a row (one per response); the
turn's next request after the last is ``tool_choice: "none"`` and gets the text answer. Prints
p50/p95/max of the bot's time per round and of the tool's own time; exit status 1 when p95 is
over the 20 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator, Collection, Mapping
from pathlib import Path
from typing import Any

from bot.conversation import ConversationService, TurnOutcome
from bot.conversation.tool_ports import ToolOffer, ToolOutcome
from bot.model.client import ResponsesClient
from bot.model.types import Completed, ModelEvent, ResponseRequest
from bot.tool_runner import McpToolRunner
from bot.tools.config import parse_mcp_servers, resolve_mcp_servers
from bot.tools.registry import McpToolRegistry
from storage.conversation_state import ConversationStateStore
from storage.engine import create_engine, create_session_factory
from storage.intake import Intake
from storage.migrate import upgrade_to_head
from storage.repositories import Store
from tests.conversation.fakes import FakeContext, FakeSettings, RecordingSinks, message
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.responses_server import FakeResponsesServer

TARGET_P95_MS = 20.0


class Clock:
    """Marks of one turn's rounds: when a response with calls arrived, when the tool ran,
    when the next request left."""

    def __init__(self) -> None:
        self.arrived: float | None = None
        self.tool = 0.0
        self.bot_ms: list[float] = []
        self.tool_ms: list[float] = []

    def response(self, has_calls: bool) -> None:
        self.arrived = time.perf_counter() if has_calls else None
        self.tool = 0.0

    def request(self) -> None:
        if self.arrived is not None:
            total = time.perf_counter() - self.arrived
            self.bot_ms.append((total - self.tool) * 1000)
            self.tool_ms.append(self.tool * 1000)
            self.arrived = None


class TimedModel:
    def __init__(self, inner: ResponsesClient, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock

    async def stream(self, request: ResponseRequest) -> AsyncGenerator[ModelEvent, None]:
        self._clock.request()
        async for event in self._inner.stream(request):
            if isinstance(event, Completed):
                calls = any(i.get("type") == "function_call" for i in event.result.output)
                self._clock.response(calls)
            yield event


class TimedRunner:
    def __init__(self, inner: McpToolRunner, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock

    async def offer(self, servers: Collection[str]) -> ToolOffer:
        return await self._inner.offer(servers)

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        servers: Collection[str],
        approved: bool,
        timeout: float | None,
    ) -> ToolOutcome:
        started = time.perf_counter()
        try:
            return await self._inner.call(
                name, arguments, servers=servers, approved=approved, timeout=timeout
            )
        finally:
            self._clock.tool += time.perf_counter() - started


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def run(rounds: int, per_turn: int) -> int:
    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await upgrade_to_head(url)
        engine = create_engine(url)
        store = Store(create_session_factory(engine))
        async with FakeResponsesServer(api_key="k") as fake, FakeMcpServer() as mcp:
            configs = parse_mcp_servers(f'[{{"name": "orders", "url": "{mcp.url}"}}]')
            registry = McpToolRegistry(resolve_mcp_servers(configs, {}))
            client = ResponsesClient(base_url=fake.base_url, api_key="k")
            service = ConversationService(
                store=store,
                intake=Intake(store),
                model=TimedModel(client, clock),
                sinks=RecordingSinks(),
                context=FakeContext(),
                settings=FakeSettings(mcp_servers=("orders",)),
                transcripts=ConversationStateStore(store),
                tool_runner=TimedRunner(McpToolRunner(registry), clock),
                tool_calls=store.tool_calls,
                max_tool_rounds=per_turn,
            )
            fake.always_call("orders__lookup_order", {"order_id": "A1"})
            # One warm-up turn: connections opened, tools listed, code paths loaded.
            await service.handle(message("0.5", "warm up"))
            clock.bot_ms.clear()
            clock.tool_ms.clear()
            turns = -(-rounds // per_turn)
            started = time.perf_counter()
            for n in range(turns):
                outcome = await service.handle(message(f"{n + 1}.0", "where is A1?"))
                assert outcome is TurnOutcome.COMPLETED, outcome
            wall = time.perf_counter() - started
            await client.aclose()
            await registry.aclose()
        await engine.dispose()
    bot, tool = clock.bot_ms, clock.tool_ms
    p95 = _percentile(bot, 0.95)
    print(
        f"tool rounds measured: {len(bot)} ({turns} turns of {per_turn} calls, plus each "
        f"turn's limit round, answered without running the tool), wall {wall:.1f} s"
    )
    print(
        f"bot's own time per round: p50 {statistics.median(bot):.2f} ms, p95 {p95:.2f} ms, "
        f"max {max(bot):.2f} ms (target p95 <= {TARGET_P95_MS:.0f} ms)"
    )
    print(
        f"the tool's own time (MCP call over HTTP): p50 {statistics.median(tool):.2f} ms, "
        f"p95 {_percentile(tool, 0.95):.2f} ms"
    )
    return 0 if p95 <= TARGET_P95_MS else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--per-turn", type=int, default=10)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(run(args.rounds, args.per_turn)))


if __name__ == "__main__":
    main()
