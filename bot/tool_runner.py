"""``McpToolRunner``: the MCP registry as the tool loop's ``ToolRunner`` port (wiring: the
outer layer, because ``bot.tools`` stays free of the core and the core free of MCP).

The core (``bot.conversation.tools``) sees plain ``ToolOffer`` / ``ToolOutcome`` records; this
is the one place that turns the registry's ``ToolCatalogue`` and ``ToolCallResult`` into them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from bot.conversation.tool_ports import OfferedTool, ToolOffer, ToolOutcome
from bot.tools.registry import McpToolRegistry

__all__ = ["McpToolRunner"]


class McpToolRunner:
    """Satisfies ``bot.conversation.tool_ports.ToolRunner``."""

    def __init__(self, registry: McpToolRegistry) -> None:
        self._registry = registry

    async def offer(self, servers: Collection[str]) -> ToolOffer:
        catalogue = await self._registry.list_tools(servers)
        return ToolOffer(
            definitions=tuple(catalogue.function_tools()),
            tools={
                spec.function_name: OfferedTool(
                    name=spec.function_name,
                    server=spec.server,
                    tool=spec.tool,
                    requires_approval=spec.requires_approval,
                    title=spec.title,
                )
                for spec in catalogue.tools
            },
            unavailable=dict(catalogue.unavailable),
        )

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        servers: Collection[str],
        approved: bool,
        timeout: float | None,
    ) -> ToolOutcome:
        result = await self._registry.call(
            name, arguments, servers=servers, approved=approved, timeout=timeout
        )
        return ToolOutcome(
            server=result.server,
            tool=result.tool,
            status=result.status,
            output=result.output,
            duration=result.duration,
            output_chars=result.output_chars,
            truncated=result.truncated,
        )
