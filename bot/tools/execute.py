"""Running one round's calls: concurrently, each bounded, every call answered.

The model may ask for several calls in one response (parallel tool calls); they run at the
same time, at most ``max_parallel`` at once, so a round takes about as long as its slowest call.
Cancelling the round (a user stop) cancels every call still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from bot.tools.results import ToolCallResult
from bot.tools.rounds import FunctionCall, ToolRound

__all__ = ["ToolCaller", "run_round"]

log = logging.getLogger(__name__)


class ToolCaller(Protocol):
    """What runs one call (``McpToolRegistry`` is one); must not raise for a failed call."""

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        servers: Collection[str] | None = None,
        approved: bool = False,
        timeout: float | None = None,
    ) -> ToolCallResult: ...


async def run_round(
    caller: ToolCaller,
    tool_round: ToolRound,
    *,
    servers: Collection[str] | None = None,
    approved: Collection[str] = (),
    timeout: float | None = None,
    max_parallel: int = 8,
) -> dict[str, ToolCallResult]:
    """Run the round's runnable calls; returns ``call_id -> result``.

    ``approved`` holds the call ids the asker approved; ``timeout`` caps each call (the
    turn's remaining time). Feed ``{id: r.output}`` to ``ToolRound.input_items``.
    """
    if max_parallel < 1:
        raise ValueError("max_parallel must be at least 1")
    gate = asyncio.Semaphore(max_parallel)
    results: dict[str, ToolCallResult] = {}

    async def one(call: FunctionCall) -> None:
        async with gate:
            try:
                results[call.call_id] = await caller.call(
                    call.name,
                    call.arguments,
                    servers=servers,
                    approved=call.call_id in approved,
                    timeout=timeout,
                )
            except Exception:
                # A bug in a caller must not lose the other calls' results or the turn.
                log.exception("tool call crashed", extra={"tool": call.name})
                results[call.call_id] = ToolCallResult(
                    function_name=call.name,
                    server=None,
                    tool=None,
                    status="protocol_error",
                    output="Error: the tool call failed inside the bot; it may not have run.",
                )

    async with asyncio.TaskGroup() as group:
        for call in tool_round.runnable:
            group.create_task(one(call))
    return results
