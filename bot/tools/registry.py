"""``McpToolRegistry``: the MCP servers the operator declared, as function tools for the model.

Guarantees, each relied on by the tool loop:

- Connections open lazily, on the first listing or call, one per server, shared by all turns
  (see ``bot.tools.connection``); ``aclose()`` / ``async with`` ends them all.
- ``list_tools`` serves each server's listing from a cache for ``list_ttl`` seconds, filtered
  by ``allowed_tools``; a server that cannot be listed is reported in ``unavailable`` (and not
  asked again for ``failure_ttl`` seconds) while the others' tools are still offered.
- Each tool gets a stable function name valid for the Responses API (``bot.tools.naming``),
  mapped back to (server, tool) here and only here.
- ``call`` never raises for a failed call, only on cancellation: every outcome (timeout, MCP
  error, ``isError`` result, unknown or not-enabled tool, refused connection, missing approval)
  is a ``ToolCallResult`` whose ``output`` tells the model what happened. Outputs are capped at
  ``max_output_chars`` with a visible marker.
- Only the declared headers reach an MCP server; nothing of a call's arguments or output is
  logged unless ``log_content`` (LOG_MESSAGE_CONTENT) is on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from mcp import Client
from mcp.client.client import ConnectMode
from mcp_types import CallToolResult, Implementation, ListToolsResult, Tool

from bot.tools.config import McpServer
from bot.tools.connection import McpConnection, McpProtocolError, McpToolError
from bot.tools.naming import function_name
from bot.tools.results import (
    DEFAULT_MAX_OUTPUT_CHARS,
    ToolCallResult,
    ToolCallStatus,
    render_call_result,
    truncate_output,
)

__all__ = ["McpToolRegistry", "ToolCatalogue", "ToolSpec"]

log = logging.getLogger(__name__)

# A server's tool descriptions are sent with every model request and are not ours: cap them.
_MAX_DESCRIPTION_CHARS = 2_000
# A paginating server that never stops must not hang a turn.
_MAX_LIST_PAGES = 50


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One MCP tool as offered to the model."""

    function_name: str
    server: str
    tool: str
    description: str
    parameters: dict[str, Any]
    requires_approval: bool
    title: str | None = None
    """A human-readable name for the tool (MCP ``title``), for task cards."""

    def as_function_tool(self) -> dict[str, Any]:
        """The Responses API's flat function tool."""
        return {
            "type": "function",
            "name": self.function_name,
            "description": self.description,
            "parameters": self.parameters,
            # MCP schemas are not written for strict mode (optional fields, open objects).
            "strict": False,
        }


@dataclass(frozen=True, slots=True)
class ToolCatalogue:
    """The tools of the asked-for servers, and the servers that could not be listed."""

    tools: tuple[ToolSpec, ...] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Server name -> a short reason, safe to log and to show."""

    def function_tools(self) -> list[dict[str, Any]]:
        return [spec.as_function_tool() for spec in self.tools]

    def get(self, name: str) -> ToolSpec | None:
        return next((spec for spec in self.tools if spec.function_name == name), None)


@dataclass(slots=True)
class _Listing:
    fetched_at: float
    specs: tuple[ToolSpec, ...] = ()
    error: str | None = None


class McpToolRegistry:
    """The declared MCP servers' tools: list them for the model, call them for it.

    Construct once at start-up with the resolved servers and close with ``aclose()``.
    """

    def __init__(
        self,
        servers: Sequence[McpServer],
        *,
        list_ttl: float = 60.0,
        failure_ttl: float = 10.0,
        list_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        log_content: bool = False,
        client_info: Implementation | None = None,
        protocol: ConnectMode = "auto",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_output_chars < 200:
            raise ValueError("max_output_chars must leave room for the truncation marker")
        self._servers = {server.name: server for server in servers}
        self._connections = {
            server.name: McpConnection(
                server, connect_timeout=connect_timeout, client_info=client_info, mode=protocol
            )
            for server in servers
        }
        self._list_ttl = list_ttl
        self._failure_ttl = failure_ttl
        self._list_timeout = list_timeout
        self._max_output_chars = max_output_chars
        self._log_content = log_content
        self._clock = clock
        self._listings: dict[str, _Listing] = {}
        self._list_locks = {name: asyncio.Lock() for name in self._servers}
        self._closed = False

    @property
    def server_names(self) -> tuple[str, ...]:
        return tuple(self._servers)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.gather(*(conn.aclose() for conn in self._connections.values()))

    # -- listing -------------------------------------------------------------------------

    async def list_tools(self, servers: Collection[str] | None = None) -> ToolCatalogue:
        """The tools of ``servers`` (default: all declared) for the next model request.

        Unknown server names are ignored: a channel may still name a server the operator has
        since removed.
        """
        names = [n for n in self._servers if servers is None or n in servers]
        listings = await asyncio.gather(*(self._listing(name) for name in names))
        tools: list[ToolSpec] = []
        unavailable: dict[str, str] = {}
        seen: set[str] = set()
        for name, listing in zip(names, listings, strict=True):
            if listing.error is not None:
                unavailable[name] = listing.error
            for spec in listing.specs:
                if spec.function_name in seen:
                    continue
                seen.add(spec.function_name)
                tools.append(spec)
        return ToolCatalogue(tools=tuple(tools), unavailable=unavailable)

    async def _listing(self, server: str) -> _Listing:
        async with self._list_locks[server]:
            cached = self._listings.get(server)
            if cached is not None and not self._expired(cached):
                return cached
            try:
                async with asyncio.timeout(self._list_timeout):
                    raw = await self._connections[server].run(_list_all_tools)
            except TimeoutError:
                listing = _Listing(self._clock(), error="the server did not list its tools in time")
            except McpToolError as exc:
                listing = _Listing(self._clock(), error=exc.reason)
            else:
                listing = _Listing(self._clock(), specs=self._specs(server, raw))
            if listing.error is not None:
                log.warning(
                    "mcp tools not listed", extra={"mcp_server": server, "reason": listing.error}
                )
                # Keep offering what the server listed last time, if anything: a blip should
                # not make tools vanish from the middle of a conversation.
                if cached is not None and cached.specs:
                    listing.specs = cached.specs
            self._listings[server] = listing
            return listing

    def _expired(self, listing: _Listing) -> bool:
        ttl = self._failure_ttl if listing.error is not None else self._list_ttl
        return self._clock() - listing.fetched_at >= ttl

    def _specs(self, server: str, tools: Sequence[Tool]) -> tuple[ToolSpec, ...]:
        config = self._servers[server].config
        specs: list[ToolSpec] = []
        names: set[str] = set()
        for tool in tools:
            if not tool.name or not config.allows(tool.name):
                continue
            fn = function_name(server, tool.name)
            if fn in names:
                log.warning("mcp tool listed twice", extra={"mcp_server": server})
                continue
            names.add(fn)
            title = tool.title or (tool.annotations.title if tool.annotations else None)
            specs.append(
                ToolSpec(
                    function_name=fn,
                    server=server,
                    tool=tool.name,
                    description=_description(tool, title),
                    parameters=_parameters(tool.input_schema),
                    requires_approval=config.needs_approval(tool.name),
                    title=title,
                )
            )
        if config.allowed_tools is not None:
            listed = {tool.name for tool in tools}
            missing = [t for t in config.allowed_tools if t not in listed]
            if missing:
                log.warning(
                    "mcp allowed_tools not offered by the server",
                    extra={"mcp_server": server, "tools": ", ".join(missing)},
                )
        return tuple(specs)

    # -- calling -------------------------------------------------------------------------

    def resolve(self, name: str) -> ToolSpec | None:
        """The tool behind a function name, from the latest listings."""
        for listing in self._listings.values():
            for spec in listing.specs:
                if spec.function_name == name:
                    return spec
        return None

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        servers: Collection[str] | None = None,
        approved: bool = False,
        timeout: float | None = None,
    ) -> ToolCallResult:
        """Run the function call ``name(arguments)`` on its MCP server.

        ``servers`` limits the call to the servers enabled where the turn happens; ``approved``
        must be true for a tool that requires approval (the bot asked and the person agreed);
        ``timeout`` can only shorten the server's own per-call timeout (for the turn's budget).
        Never raises except ``CancelledError`` (a user stop cancels the running call).
        """
        started = self._clock()
        spec = self.resolve(name)
        if spec is None and not self._closed:
            # Not listed yet (or since expired): list the servers the call may use, once.
            await self.list_tools(servers)
            spec = self.resolve(name)
        if spec is None or (servers is not None and spec.server not in servers):
            return self._finish(
                name, None, "rejected", f"Error: there is no tool named {name!r}.", started
            )
        if spec.requires_approval and not approved:
            return self._finish(
                name,
                spec,
                "rejected",
                "Error: this tool needs the approval of the person who asked, and it was not "
                "given; the tool was not run.",
                started,
            )
        limit = self._servers[spec.server].config.timeout
        if timeout is not None:
            limit = max(0.0, min(limit, timeout))
        args = dict(arguments or {})
        try:
            async with asyncio.timeout(limit):
                result = await self._connections[spec.server].run(
                    lambda client: client.call_tool(spec.tool, args)
                )
        except TimeoutError:
            return self._finish(
                name,
                spec,
                "timeout",
                f"Error: the tool did not answer within {limit:g} seconds and the call was "
                "abandoned; whether it took effect is unknown.",
                started,
                arguments=args,
            )
        except McpToolError as exc:
            status: ToolCallStatus = (
                "protocol_error" if isinstance(exc, McpProtocolError) else "unavailable"
            )
            return self._finish(
                name,
                spec,
                status,
                f"Error: the tool could not be run: MCP server {spec.server}: {exc.reason}.",
                started,
                arguments=args,
            )
        return self._finish_result(name, spec, result, started, args)

    def _finish_result(
        self,
        name: str,
        spec: ToolSpec,
        result: CallToolResult,
        started: float,
        arguments: dict[str, Any],
    ) -> ToolCallResult:
        text = render_call_result(result)
        status: ToolCallStatus = "tool_error" if result.is_error else "ok"
        return self._finish(name, spec, status, text, started, arguments=arguments)

    def _finish(
        self,
        name: str,
        spec: ToolSpec | None,
        status: ToolCallStatus,
        text: str,
        started: float,
        *,
        arguments: dict[str, Any] | None = None,
    ) -> ToolCallResult:
        answered = status in ("ok", "tool_error")
        output, truncated = truncate_output(text, self._max_output_chars)
        outcome = ToolCallResult(
            function_name=name,
            server=spec.server if spec else None,
            tool=spec.tool if spec else None,
            status=status,
            output=output,
            duration=max(0.0, self._clock() - started),
            output_chars=len(text) if answered else 0,
            truncated=truncated,
        )
        extra: dict[str, Any] = {
            "mcp_server": outcome.server,
            "tool": outcome.tool or name,
            "status": status,
            "duration_ms": round(outcome.duration * 1000),
            "output_chars": outcome.output_chars,
            "truncated": truncated,
        }
        if self._log_content:
            extra["tool_arguments"] = arguments
            extra["tool_output"] = output
        log.info("tool call", extra=extra)
        return outcome


async def _list_all_tools(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        page: ListToolsResult = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _description(tool: Tool, title: str | None) -> str:
    text = (tool.description or title or tool.name).strip()
    if len(text) > _MAX_DESCRIPTION_CHARS:
        text = text[: _MAX_DESCRIPTION_CHARS - 1] + "…"
    return text


def _parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The tool's input schema as function ``parameters``: always an object schema."""
    parameters = {k: v for k, v in schema.items() if k != "$schema"}
    if parameters.get("type") != "object":
        # MCP requires an object root; a server that sends anything else gets an empty one
        # rather than a request the model endpoint would refuse.
        return {"type": "object", "properties": {}}
    parameters.setdefault("properties", {})
    return parameters
