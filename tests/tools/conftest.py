"""Fixtures for the tool tests: a real MCP server (the SDK's) on 127.0.0.1 and a registry
pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import pytest

from bot.conversation.tool_round import ToolRound
from bot.tools.config import McpServerConfig, resolve_mcp_servers
from bot.tools.registry import McpToolRegistry
from bot.tools.results import ToolCallResult
from tests.fakes.mcp_server import FakeMcpServer

MakeRegistry = Callable[..., Awaitable[McpToolRegistry]]


@pytest.fixture
async def fake_mcp() -> AsyncIterator[FakeMcpServer]:
    async with FakeMcpServer(slow_delay=5.0) as server:
        yield server


@pytest.fixture
async def make_registry(fake_mcp: FakeMcpServer) -> AsyncIterator[MakeRegistry]:
    """Build a registry for the fake (server name ``orders``); closed at the end of the test."""
    made: list[McpToolRegistry] = []

    async def make(
        *,
        environ: dict[str, str] | None = None,
        servers: list[dict[str, Any]] | None = None,
        **options: Any,
    ) -> McpToolRegistry:
        entries = servers if servers is not None else [{"name": "orders", "url": fake_mcp.url}]
        configs = [McpServerConfig.model_validate(entry) for entry in entries]
        registry = McpToolRegistry(resolve_mcp_servers(configs, environ or {}), **options)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.aclose()


async def run_calls(
    registry: McpToolRegistry, tool_round: ToolRound, *, approved: Collection[str] = ()
) -> dict[str, ToolCallResult]:
    """A round's runnable calls, all at once, straight on the registry (the turn's own runner,
    with approval and steps, is ``bot.conversation.tool_calls``; tested in
    tests/conversation/test_tool_loop.py)."""
    calls = tool_round.runnable
    results = await asyncio.gather(
        *(registry.call(c.name, c.arguments, approved=c.call_id in approved) for c in calls)
    )
    return {c.call_id: r for c, r in zip(calls, results, strict=True)}
