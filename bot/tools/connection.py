"""One MCP server's session, opened lazily and owned by a task of its own.

Why a task of its own: the ``mcp`` SDK's ``Client`` runs the streamable-HTTP transport in an
anyio task group, which must be exited by the task that entered it. Turns come and go in
different tasks and the service closes everything from yet another, so a dedicated owner task
enters the client, hands it out, and exits it when told to (``aclose``, or a reset after the
session was lost) or when the transport dies. Calls from any task go through the shared
session; a call also watches the owner, so a connection that breaks mid-call fails that call at
once instead of leaving it to its timeout. The next call after a failure connects afresh.

A call is retried only when the server said it does not know the session (HTTP 404 on a
stateful server that restarted): the server then provably did not run it. Nothing else is
retried, since a tool may have side effects.

Every failure leaves here as ``McpUnavailableError`` (could not connect, or lost the
connection) or ``McpProtocolError`` (the server refused a request); both carry a short reason
with no header value or URL in it, safe to show the model and to log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
from mcp import Client, MCPError
from mcp.client.client import ConnectMode
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST, Implementation
from pydantic import ValidationError

from bot.tools.config import McpServer

__all__ = [
    "McpConnection",
    "McpProtocolError",
    "McpToolError",
    "McpUnavailableError",
    "describe_failure",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The GET stream a server may hold open for notifications can be silent for long; per-call
# deadlines are enforced by the caller, so the HTTP read timeout only catches dead sockets.
_READ_TIMEOUT = 300.0
_CLOSE_TIMEOUT = 5.0
# What the SDK answers for a POST the server refused with an HTTP error status (it keeps the
# status to itself; ``_Generation.http_error`` remembers it for a clearer reason).
_SDK_HTTP_ERROR = "Server returned an error response"
_SDK_SESSION_LOST = "Session terminated"


class McpToolError(Exception):
    """Base of the failures talking to an MCP server. ``reason`` is safe to show and log."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"MCP server {server}: {reason}")
        self.server = server
        self.reason = reason


class McpUnavailableError(McpToolError):
    """The server could not be reached, or the connection broke."""


class McpProtocolError(McpToolError):
    """The server answered a request with an MCP error (or an HTTP error status)."""


@dataclass(eq=False)
class _Generation:
    """One connection attempt and, if it succeeded, its session until it ends."""

    ready: asyncio.Future[Client]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    owner: asyncio.Task[None] | None = None
    http_error: int | None = None
    """The status of the latest HTTP error answer (cleared by a success)."""

    @property
    def alive(self) -> bool:
        return self.owner is not None and not self.owner.done() and not self.stop.is_set()


class McpConnection:
    """The session to one MCP server. ``run(fn)`` calls ``fn(client)`` on a live session,
    connecting first if needed; ``aclose()`` ends the session and its owner task."""

    def __init__(
        self,
        server: McpServer,
        *,
        connect_timeout: float = 10.0,
        client_info: Implementation | None = None,
        mode: ConnectMode = "auto",
    ) -> None:
        self.server = server
        self._connect_timeout = connect_timeout
        self._client_info = client_info
        # "auto": the current protocol when the server speaks it, else the initialize handshake.
        self._mode = mode
        self._current: _Generation | None = None
        # Owners of sessions that were reset end in the background; aclose waits for them too.
        self._generations: set[_Generation] = set()
        self._closed = False

    @property
    def name(self) -> str:
        return self.server.name

    async def run(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``fn`` with the live client. Raises ``McpUnavailableError`` when the server
        cannot be reached or the connection drops meanwhile, ``McpProtocolError`` for an MCP
        error answer. Cancelling the caller cancels only this call, never the session."""
        try:
            return await self._run_once(fn)
        except _SessionLostError:
            # The server did not run the request (it no longer knew the session): safe to
            # send again, once, on a new session.
            log.info("mcp session lost; reconnecting", extra={"mcp_server": self.name})
            try:
                return await self._run_once(fn)
            except _SessionLostError as exc:
                raise McpProtocolError(self.name, "the server keeps refusing the session") from exc

    async def aclose(self) -> None:
        """End the session (the SDK sends its DELETE for a stateful one) and the owner task."""
        self._closed = True
        self._current = None
        await asyncio.gather(*(_end(generation) for generation in list(self._generations)))

    async def _run_once(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        if self._closed:
            raise McpUnavailableError(self.name, "the tool service is shutting down")
        generation = self._generation()
        # shield: a caller's timeout must not cancel the connection other callers share.
        client = await asyncio.shield(generation.ready)
        owner = generation.owner
        assert owner is not None  # set right after the generation is made
        call = asyncio.ensure_future(fn(client))
        try:
            done, _ = await asyncio.wait({call, owner}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _cancel_and_wait(call)
            raise
        if call not in done:
            await _cancel_and_wait(call)
            raise McpUnavailableError(self.name, "the connection to the server was lost")
        try:
            return call.result()
        except MCPError as exc:
            if exc.code == INVALID_REQUEST and (
                exc.message == _SDK_SESSION_LOST or generation.http_error == 404
            ):
                self._reset(generation)
                raise _SessionLostError from exc
            if exc.code == CONNECTION_CLOSED:
                self._reset(generation)
                raise McpUnavailableError(
                    self.name, "the connection to the server was lost"
                ) from exc
            raise McpProtocolError(self.name, _mcp_error_reason(exc, generation)) from exc
        except ValidationError as exc:
            raise McpProtocolError(
                self.name, "the server's answer did not follow the MCP protocol"
            ) from exc
        except asyncio.CancelledError as exc:
            # The transport's cancel scope, not our caller (that path is handled above).
            self._reset(generation)
            raise McpUnavailableError(self.name, "the connection to the server was lost") from exc
        except Exception as exc:
            self._reset(generation)
            raise McpUnavailableError(self.name, describe_failure(exc)) from exc

    def _generation(self) -> _Generation:
        # No await between the check and the start: concurrent first calls share one attempt.
        current = self._current
        if current is not None and (current.alive or not current.ready.done()):
            return current
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        # A failed attempt whose callers were all cancelled must not warn at GC.
        ready.add_done_callback(_consume_exception)
        generation = _Generation(ready=ready)
        generation.owner = asyncio.create_task(self._own(generation), name=f"mcp-{self.name}")
        self._generations.add(generation)
        generation.owner.add_done_callback(lambda _: self._generations.discard(generation))
        self._current = generation
        return generation

    def _reset(self, generation: _Generation) -> None:
        """Let the next call start a new session; this one's owner ends in the background."""
        if self._current is generation:
            self._current = None
        generation.stop.set()

    async def _own(self, generation: _Generation) -> None:
        ready = generation.ready

        async def note_status(response: httpx2.Response) -> None:
            generation.http_error = response.status_code if response.status_code >= 400 else None

        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(self._connect_timeout):
                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(
                            headers=self.server.header_values(),
                            timeout=httpx2.Timeout(self._connect_timeout, read=_READ_TIMEOUT),
                            follow_redirects=False,
                            event_hooks={"response": [note_status]},
                        )
                    )
                    client = await stack.enter_async_context(
                        Client(
                            streamable_http_client(self.server.config.url, http_client=http),
                            client_info=self._client_info,
                            mode=self._mode,
                            # Listings are cached by the registry, with its own TTL.
                            cache=None,
                        )
                    )
                log.info("mcp server connected", extra={"mcp_server": self.name})
                ready.set_result(client)
                await generation.stop.wait()
        except Exception as exc:
            reason = describe_failure(exc, generation.http_error)
            if not ready.done():
                error = McpUnavailableError(self.name, reason)
                error.__cause__ = exc
                ready.set_exception(error)
                log.warning(
                    "mcp server unavailable", extra={"mcp_server": self.name, "reason": reason}
                )
            else:
                log.warning(
                    "mcp connection lost", extra={"mcp_server": self.name, "reason": reason}
                )
        finally:
            if not ready.done():
                ready.set_exception(McpUnavailableError(self.name, "the connection was closed"))


class _SessionLostError(Exception):
    """The server answered 404 "invalid request" for our session id (the spec's way to say
    the session is gone): it did not run the request."""


async def _end(generation: _Generation) -> None:
    generation.stop.set()
    owner = generation.owner
    if owner is None or owner.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(owner), _CLOSE_TIMEOUT)
    except TimeoutError:
        await _cancel_and_wait(owner)


async def _cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to end, without taking on its outcome."""
    task.cancel()
    await asyncio.wait({task})
    _consume_exception(task)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe_failure(exc: BaseException, http_error: int | None = None) -> str:
    """A short, secret-free reason for a failure coming out of the SDK or httpx2.

    anyio wraps transport failures in (nested) exception groups; the first leaf we recognise
    names the problem. Raw exception text is not used: it may quote a URL.
    """
    for leaf in _leaves(exc):
        if isinstance(leaf, MCPError):
            return _mcp_error_reason(leaf, http_error=http_error)
        if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
            return "the server did not answer in time"
        if isinstance(leaf, httpx2.ConnectError):
            return "could not connect to the server"
        if isinstance(leaf, httpx2.HTTPStatusError):
            return f"the server answered HTTP {leaf.response.status_code}"
        if isinstance(leaf, httpx2.TransportError):
            return "the connection to the server failed"
    return f"unexpected failure ({type(_leaves(exc)[0]).__name__})"


def _mcp_error_reason(
    exc: MCPError, generation: _Generation | None = None, *, http_error: int | None = None
) -> str:
    status = generation.http_error if generation is not None else http_error
    if exc.code == INTERNAL_ERROR and exc.message == _SDK_HTTP_ERROR and status is not None:
        hint = " (check the key in headers_from_env)" if status in (401, 403) else ""
        return f"the server answered HTTP {status}{hint}"
    # The server's own words are data for the model; cap them so a server cannot flood it.
    message = " ".join(str(exc.message).split())[:300]
    return f"the server refused the request: {message} (code {exc.code})"
