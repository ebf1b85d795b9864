"""A real MCP server for tests: the ``mcp`` SDK's ``MCPServer`` over streamable HTTP, served by
uvicorn on 127.0.0.1, port 0, inside the test's event loop.

Nothing is mocked: the bot's client speaks the real protocol (discovery or the initialize
handshake, ``tools/list``, ``tools/call``) to the SDK's own server. The fake records every HTTP
request it received (method, path, lower-cased headers) and every tool call (tool, arguments,
monotonic start and end times, so tests can prove calls overlapped), and can insist on a header.

Tools (``TOOL_NAMES``):

- ``lookup_order(order_id)``: answers at once.
- ``slow_report(topic)``: waits ``slow_delay`` seconds (settable) before answering.
- ``flaky_inventory(sku)``: always fails; the SDK answers ``isError: true`` with the message.
- ``export_orders()``: returns ``huge_chars`` characters.
- ``refund_order(order_id, amount)``: a side effect; tests declare it ``require_approval``.
- ``inventory.search(query)``: a dotted name, valid in MCP but not as a model function name.

Typical use::

    async with FakeMcpServer(required_headers={"X-Api-Key": "k"}) as fake:
        ...  # point an McpServerConfig at fake.url
        await fake.wait_for_calls(1)
        assert fake.calls[0].tool == "lookup_order"

Wait on conditions with ``wait_for_calls``; never sleep. ``stop()`` / ``start()`` restart it
on the same port (a new SDK app each time: a session manager runs once).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import Receive, Scope, Send

__all__ = ["TOOL_NAMES", "FakeMcpServer", "RecordedCall", "RecordedHttpRequest"]

TOOL_NAMES = (
    "lookup_order",
    "slow_report",
    "flaky_inventory",
    "export_orders",
    "refund_order",
    "inventory.search",
)


@dataclass(frozen=True, slots=True)
class RecordedHttpRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass(slots=True)
class RecordedCall:
    tool: str
    arguments: dict[str, Any]
    started: float
    finished: float | None = None
    """Monotonic time the tool returned or raised; ``None`` while running (or if cancelled)."""


class _QuietServer(uvicorn.Server):
    # uvicorn would take over SIGINT/SIGTERM for the whole test process.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class FakeMcpServer:
    """See the module docstring."""

    name: str = "fake-orders"
    slow_delay: float = 2.0
    huge_chars: int = 200_000
    required_headers: Mapping[str, str] = field(default_factory=dict)
    requests: list[RecordedHttpRequest] = field(default_factory=list)
    calls: list[RecordedCall] = field(default_factory=list)
    port: int | None = None
    _server: _QuietServer | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fake MCP server is not started")
        return f"http://127.0.0.1:{self.port}/mcp"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port or 0))
        self.port = sock.getsockname()[1]
        mcp = self._build()
        app = mcp.streamable_http_app()

        async def recording_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                self.requests.append(
                    RecordedHttpRequest(scope["method"], scope["path"], dict(headers))
                )
                for name, value in self.required_headers.items():
                    if headers.get(name.lower()) != value:
                        await _plain_response(send, 401, b'{"error":"invalid_api_key"}')
                        return
            await app(scope, receive, send)

        config = uvicorn.Config(
            recording_app,
            log_level="warning",
            # The SDK's session manager is run below, in the same task as the server.
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = _QuietServer(config)
        self._server = server

        async def serve() -> None:
            try:
                async with mcp.session_manager.run():
                    await server.serve(sockets=[sock])
            except SystemExit as exc:  # uvicorn exits the process on a failed start-up
                raise RuntimeError("the fake MCP server failed to start") from exc
            finally:
                sock.close()

        self._task = asyncio.create_task(serve(), name="fake-mcp-server")
        deadline = time.monotonic() + 10
        while not server.started:
            if self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("the fake MCP server did not start")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 10)
        finally:
            self._server = None
            self._task = None

    async def wait_for_calls(self, count: int, *, timeout: float = 5.0) -> list[RecordedCall]:
        """Wait until at least ``count`` tool calls have started."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.calls) >= count)
        return list(self.calls)

    def calls_to(self, tool: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.tool == tool]

    async def _record(self, tool: str, arguments: dict[str, Any]) -> RecordedCall:
        call = RecordedCall(tool, arguments, time.monotonic())
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return call

    def _build(self) -> MCPServer:
        mcp: MCPServer = MCPServer(self.name, log_level="WARNING")
        fake = self

        @mcp.tool()
        async def lookup_order(order_id: str) -> str:
            """Look up an order by its id and return its status."""
            call = await fake._record("lookup_order", {"order_id": order_id})
            call.finished = time.monotonic()
            return f"Order {order_id}: shipped on 2025-03-04, 2 items."

        @mcp.tool()
        async def slow_report(topic: str) -> str:
            """Build a report on a topic (takes a while)."""
            call = await fake._record("slow_report", {"topic": topic})
            await asyncio.sleep(fake.slow_delay)
            call.finished = time.monotonic()
            return f"Report on {topic}: all good."

        @mcp.tool()
        async def flaky_inventory(sku: str) -> str:
            """Check stock for a SKU."""
            call = await fake._record("flaky_inventory", {"sku": sku})
            call.finished = time.monotonic()
            raise ToolError("inventory database is offline")

        @mcp.tool()
        async def export_orders() -> str:
            """Export every order as text."""
            call = await fake._record("export_orders", {})
            call.finished = time.monotonic()
            line = "order-000000 shipped\n"
            return (line * (fake.huge_chars // len(line) + 1))[: fake.huge_chars]

        @mcp.tool()
        async def refund_order(order_id: str, amount: float) -> str:
            """Refund an order (moves money: needs approval)."""
            call = await fake._record("refund_order", {"order_id": order_id, "amount": amount})
            call.finished = time.monotonic()
            return f"Refunded {amount:.2f} on order {order_id}."

        async def inventory_search(query: str) -> str:
            """Search the inventory."""
            call = await fake._record("inventory.search", {"query": query})
            call.finished = time.monotonic()
            return f"3 items match {query!r}."

        mcp.add_tool(inventory_search, name="inventory.search")
        return mcp


async def _plain_response(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
