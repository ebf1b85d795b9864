"""Fixtures for the tool tests: a real MCP server (the SDK's) on 127.0.0.1 and a registry
pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.tools.config import McpServerConfig, resolve_mcp_servers
from bot.tools.registry import McpToolRegistry
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
