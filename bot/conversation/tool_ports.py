"""The ports of the tool loop (``bot.conversation.tools``): what it needs from the tools'
edge (``bot.tools.adapter`` over the MCP registry) and from accounting (``storage.tool_calls``),
as plain types, so the core never sees an MCP type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from storage.records import ToolCallRecord

__all__ = [
    "OfferedTool",
    "StopSignal",
    "ToolCallStore",
    "ToolOffer",
    "ToolOutcome",
    "ToolRunner",
    "TurnTools",
]


@runtime_checkable
class StopSignal(Protocol):
    """A reply sink that can say when the user stopped the answer while nothing is being sent
    (a slow tool call): ``wait_stopped`` returns then. The tool loop races running calls
    against it and cancels them; sinks without it are asked on their next call as before."""

    async def wait_stopped(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """A tool the model may call this turn, as the core needs to know it."""

    name: str
    """The function name the model calls it by."""
    server: str
    tool: str
    requires_approval: bool = False
    title: str | None = None
    """A human-readable name (MCP ``title``), for step titles."""


@dataclass(frozen=True, slots=True)
class ToolOffer:
    """The tools of the servers enabled for a turn: their function-tool definitions for the
    request, each tool by function name, and the servers that could not be listed."""

    definitions: tuple[Mapping[str, Any], ...] = ()
    tools: Mapping[str, OfferedTool] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """How one call ended. ``output`` goes to the model as data, nothing else sees it."""

    server: str | None
    tool: str | None
    status: str
    """``ok``, ``tool_error``, ``timeout``, ``unavailable``, ``protocol_error``, ``rejected``;
    the core adds ``denied`` and ``cancelled``."""
    output: str
    duration: float = 0.0
    output_chars: int = 0
    truncated: bool = False


class ToolRunner(Protocol):
    """Lists and runs the tools the operator declared (``bot.tools.adapter`` over the MCP
    registry). ``call`` never raises for a failed call, only on cancellation."""

    async def offer(self, servers: Collection[str]) -> ToolOffer: ...

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        servers: Collection[str],
        approved: bool,
        timeout: float | None,
    ) -> ToolOutcome: ...


class ToolCallStore(Protocol):
    """Accounting of tool calls (``storage.tool_calls``)."""

    async def record_tool_calls(self, records: Sequence[ToolCallRecord]) -> None: ...


@dataclass(frozen=True, slots=True)
class TurnTools:
    """What a turn offers the model: MCP tools (``offer``) and hosted tools."""

    servers: tuple[str, ...] = ()
    offer: ToolOffer = field(default_factory=ToolOffer)
    hosted: tuple[dict[str, Any], ...] = ()

    @property
    def definitions(self) -> list[dict[str, Any]] | None:
        tools = [dict(d) for d in self.offer.definitions] + [dict(h) for h in self.hosted]
        return tools or None
