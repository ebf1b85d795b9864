"""``python -m bot doctor``'s checks of tools: each declared MCP server lists its tools (with its
headers, read as the service reads them), and each hosted tool some channel enabled is accepted
by the endpoint for ``DEFAULT_MODEL`` (one small request each, as ``bot.model.probe`` makes)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from bot.doctor_report import CheckFailed, CheckWarning
from bot.errors import ConfigError
from bot.settings import Settings, tool_environment

__all__ = ["ToolChecks"]


class ToolChecks:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def mcp_checks(self) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
        """One check per declared server: ``(name, check)``."""
        return [
            (f"mcp server {config.name}", functools.partial(self._server, config.name))
            for config in self.settings.mcp_server_configs
        ]

    async def _server(self, name: str) -> str:
        from bot.tools.config import resolve_mcp_servers
        from bot.tools.registry import McpToolRegistry

        configs = [c for c in self.settings.mcp_server_configs if c.name == name]
        try:
            servers = resolve_mcp_servers(configs, tool_environment())
        except ConfigError as exc:
            raise CheckFailed(str(exc), "set the variable its headers_from_env names") from None
        async with McpToolRegistry(servers) as registry:
            catalogue = await registry.list_tools([name])
        if name in catalogue.unavailable:
            raise CheckFailed(
                f"could not list its tools: {catalogue.unavailable[name]}",
                "check its url, that it speaks MCP over streamable HTTP, and its key",
            )
        tools = [spec.tool for spec in catalogue.tools]
        if not tools:
            raise CheckWarning("it lists no tool the bot may offer (check allowed_tools)")
        shown = ", ".join(tools[:10]) + (" …" if len(tools) > 10 else "")
        return f"{len(tools)} tools: {shown}"

    async def enabled_hosted_tools(self) -> dict[str, list[str]]:
        """Hosted tool → vector store ids, for the tools any channel or workspace enabled."""
        from sqlalchemy import select

        from storage.engine import create_engine
        from storage.models import ChannelSettings

        engine = create_engine(self.settings.database_url)
        enabled: dict[str, list[str]] = {}
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    select(ChannelSettings.hosted_tools, ChannelSettings.vector_store_ids)
                )
                for tools, stores in rows:
                    for tool in tools or ():
                        enabled.setdefault(str(tool), [])
                        if tool == "file_search":
                            enabled[tool] += [
                                str(s) for s in stores or () if s not in enabled[tool]
                            ]
        finally:
            await engine.dispose()
        return enabled

    async def hosted(self, client: Any, tool: str, stores: list[str]) -> str:
        from bot.conversation.tools import hosted_tool_definitions
        from bot.model.probe import check_tools

        model = self.settings.default_model
        definitions = list(hosted_tool_definitions([tool], stores))
        if not definitions:
            raise CheckWarning(
                "enabled without vector_store_ids, so it is not offered: set vector_store_ids"
            )
        accepted = await check_tools(client, model, definitions)
        if accepted is False:
            raise CheckFailed(
                f"the endpoint refuses {tool} for DEFAULT_MODEL={model}",
                f"turn it off where it is enabled (`/ai reset hosted_tools`) or use a model "
                f"and endpoint that support {tool}",
            )
        if accepted is None:
            raise CheckWarning(f"could not tell whether the endpoint accepts {tool} (it failed)")
        return f"the endpoint accepts {tool} for DEFAULT_MODEL={model}"
