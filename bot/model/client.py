"""``ResponsesClient``: the HTTP edge to any endpoint that speaks ``POST {base}/responses``.

Guarantees, each relied on by the conversation core:

- One pooled ``httpx.AsyncClient`` per ``ResponsesClient`` (or the caller's), closed by
  ``aclose()`` / ``async with``; a stream's connection is closed in ``finally``, including when
  the consumer stops iterating early or its task is cancelled.
- Redirects are never followed, so the API key is only ever sent to ``base_url``.
- Retries (``RetryPolicy``) happen only before the answer started: connection errors, connect
  timeouts and retryable statuses. A stream that breaks after that raises with ``partial_text``
  instead, because the user may already have seen part of the answer.
- ``idle_timeout`` bounds the wait for each body chunk, ``total_timeout`` the whole call
  including retries and their waits.
- httpx exceptions are translated in exactly one place (``_guard``); everything raised is a
  ``bot.errors.ModelError``. The API key never appears in an exception message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

from bot.errors import (
    ModelConnectionError,
    ModelError,
    ModelTimeoutError,
    StreamProtocolError,
)
from bot.model.accumulator import StreamAccumulator, result_from_response_json
from bot.model.http_errors import error_from_response, redact
from bot.model.retry import RetryPolicy, should_retry
from bot.model.sse import SSEDecoder, decode_json
from bot.model.types import Completed, ModelEvent, ModelResult, ResponseRequest, TextDelta

__all__ = ["ResponsesClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# An error body is only read for its message; a whole HTML page is not needed.
_ERROR_BODY_LIMIT = 64 * 1024
# A non-streamed answer is bounded too, so a broken endpoint cannot exhaust memory.
_JSON_BODY_LIMIT = 32 * 1024 * 1024

# How long to wait for the end of the body after the terminal event (see ``_drain``).
_DRAIN_SECONDS = 1.0

_Phase = Literal["connect", "stream", "body"]


class ResponsesClient:
    """Async client for the Responses API: ``create``, ``stream`` and ``list_models``.

    Construct once at start-up and close with ``aclose()`` (or use ``async with``). When
    ``http_client`` is given it is used as is and not closed here; timeouts and the no-redirect
    rule are still applied per request.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        connect_timeout: float = 10,
        idle_timeout: float = 60,
        total_timeout: float = 600,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        user_agent: str = "slack-responses-bot",
    ) -> None:
        url = httpx.URL(base_url)  # raises on a malformed URL, at start-up rather than per call
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http(s) URL")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._total_timeout = total_timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._user_agent = user_agent
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=self._timeouts(read=idle_timeout),
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        return self._base_url

    async def aclose(self) -> None:
        """Close the connection pool (only when this client created it)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- public calls

    async def create(self, request: ResponseRequest) -> ModelResult:
        """One non-streamed call: the whole answer at once."""
        deadline = self._deadline()
        response = await self._open(
            "POST", "/responses", request.to_body(stream=False), deadline=deadline, stream=False
        )
        try:
            raw = await self._read_body(response, limit=_JSON_BODY_LIMIT, deadline=deadline)
        finally:
            await response.aclose()
        try:
            return result_from_response_json(_parse_json(raw))
        except ModelError as exc:
            exc.request_id = exc.request_id or response.headers.get("x-request-id")
            raise

    async def stream(self, request: ResponseRequest) -> AsyncGenerator[ModelEvent, None]:
        """Stream one call: ``TextDelta``/``ReasoningDelta`` as they come, then ``Completed``.

        Use ``contextlib.aclosing(client.stream(req))`` to close the upstream connection at
        once when stopping early; without it the connection closes when the generator is
        garbage-collected.
        """
        deadline = self._deadline()
        response = await self._open(
            "POST", "/responses", request.to_body(stream=True), deadline=deadline, stream=True
        )
        acc = StreamAccumulator()
        chunks = response.aiter_bytes()
        try:
            head = await self._peek(chunks, deadline, acc)
            if _is_json_body(head):
                # Some relays ignore ``stream: true`` and send the whole response as JSON, and
                # not always as application/json (text/plain, text/event-stream): the body's
                # first byte decides, not the content-type. An SSE body starts with a field
                # name or a comment, never with "{".
                raw = await self._read_rest(chunks, head, limit=_JSON_BODY_LIMIT, deadline=deadline)
                result = result_from_response_json(_parse_json(raw))
                if result.text:
                    yield TextDelta(result.text)
                yield Completed(result)
                return
            # aclosing: the inner generator must close now, not whenever it is collected.
            async with contextlib.aclosing(self._events(chunks, head, acc, deadline)) as events:
                async for event in events:
                    yield event
        except ModelError as exc:
            exc.request_id = exc.request_id or response.headers.get("x-request-id")
            raise
        finally:
            await _aclose(chunks)
            await response.aclose()

    async def list_models(self) -> list[str]:
        """Model ids from ``GET {base}/models`` (OpenAI's ``{"data": [{"id": ...}]}``)."""
        deadline = self._deadline()
        response = await self._open("GET", "/models", None, deadline=deadline, stream=False)
        try:
            raw = await self._read_body(response, limit=_JSON_BODY_LIMIT, deadline=deadline)
        finally:
            await response.aclose()
        data = _parse_json(raw)
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise StreamProtocolError("the model endpoint's model list has no 'data' array")
        return [
            item["id"]
            for item in items
            if isinstance(item, dict) and isinstance(item.get("id"), str)
        ]

    # ----------------------------------------------------------------- internals

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._total_timeout

    def _timeouts(self, *, read: float | None) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self._connect_timeout,
            read=read,
            write=self._idle_timeout,
            pool=self._connect_timeout,
        )

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": self._user_agent,
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if stream:
            # A compressed event stream can sit in a proxy's or decoder's buffer; ask for
            # identity so every event arrives as soon as it is sent.
            headers["Accept-Encoding"] = "identity"
        return headers

    async def _open(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        deadline: float,
        stream: bool,
    ) -> httpx.Response:
        """Send with retries until a 2xx answer's headers arrive; return it unread."""
        loop = asyncio.get_running_loop()
        request = self._http.build_request(
            method,
            self._base_url + path,
            json=body,
            headers=self._headers(stream=stream),
            # A non-streamed answer is generated in full before its first byte, so there is
            # no idle gap to bound: only the total deadline applies.
            timeout=self._timeouts(read=self._idle_timeout if stream else None),
        )
        attempt = 0
        while True:
            status: int | None = None
            try:
                response = await self._guard(
                    self._http.send(request, stream=True, follow_redirects=False),
                    deadline=deadline,
                    phase="connect",
                )
            except (ModelConnectionError, ModelTimeoutError) as exc:
                if isinstance(exc, ModelTimeoutError) and exc.kind != "connect":
                    raise
                error: ModelError = exc
                retry_after = None
            else:
                if response.is_success:
                    return response
                try:
                    raw = await self._read_body(
                        response, limit=_ERROR_BODY_LIMIT, deadline=deadline, truncate=True
                    )
                finally:
                    await response.aclose()
                status = response.status_code
                http_error = error_from_response(
                    status, response.headers, raw, secrets=(self._api_key,)
                )
                error, retry_after = http_error, http_error.retry_after
            attempt += 1
            if attempt > self._retry.max_retries or not should_retry(
                status, error.code, error.meaning
            ):
                raise error
            delay = self._retry.delay(attempt, retry_after)
            if loop.time() + delay >= deadline:
                raise error  # waiting would overrun the total timeout; the real cause is better
            log.info(
                "model request failed (status %s, code %s); retry %d of %d in %.2f s",
                status if status is not None else "none",
                error.code,
                attempt,
                self._retry.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    async def _peek(
        self, chunks: AsyncIterator[bytes], deadline: float, acc: StreamAccumulator
    ) -> bytes:
        """The body's first bytes, up to its first one that is not white space (or all of
        it, when shorter), read under the idle timeout."""
        head = b""
        while not head.strip() and len(head) < _ERROR_BODY_LIMIT:
            chunk = await self._guard(anext(chunks, None), deadline, "stream", acc=acc)
            if chunk is None:
                break
            head += chunk
        return head

    async def _read_rest(
        self, chunks: AsyncIterator[bytes], head: bytes, *, limit: int, deadline: float
    ) -> bytes:
        body = bytearray(head)
        while (chunk := await self._guard(anext(chunks, None), deadline, "body")) is not None:
            body += chunk
            if len(body) > limit:
                raise StreamProtocolError("the model endpoint's answer is too large")
        return bytes(body)

    async def _events(
        self,
        chunks: AsyncIterator[bytes],
        head: bytes,
        acc: StreamAccumulator,
        deadline: float,
    ) -> AsyncGenerator[ModelEvent, None]:
        decoder = SSEDecoder()
        chunk: bytes | None = head if head else None
        first = True
        while not acc.done:
            if not first:
                chunk = await self._guard(
                    anext(chunks, None), deadline=deadline, phase="stream", acc=acc
                )
            first = False
            try:
                frames = decoder.feed(chunk) if chunk is not None else decoder.flush()
                for frame in frames:
                    for event in acc.feed(decode_json(frame)):
                        yield event
                    if acc.done:
                        await self._drain(chunks, deadline)
                        return
                if chunk is None or decoder.done:
                    # The body ended without a terminal event: a whole answer ended by
                    # ``[DONE]`` completes, anything else raises (see ``finish``).
                    for event in acc.finish(done_sentinel=decoder.done):
                        yield event
                    await self._drain(chunks, deadline)
                    return
            except StreamProtocolError as exc:
                if exc.partial_text or exc.response_id:
                    raise  # already raised by the accumulator with its context
                raise StreamProtocolError(
                    exc.message, response_id=acc.response_id, partial_text=acc.partial_text
                ) from exc

    async def _drain(self, chunks: AsyncIterator[bytes], deadline: float) -> None:
        """Read what follows the terminal event (``[DONE]``, the chunked-body end) for a moment,
        so the connection goes back to the pool instead of being closed: the next turn then
        skips a TLS handshake. An endpoint that keeps the body open costs at most a second."""
        limit = min(deadline, asyncio.get_running_loop().time() + _DRAIN_SECONDS)
        drained = 0
        with contextlib.suppress(ModelError):
            while drained < _ERROR_BODY_LIMIT:
                chunk = await self._guard(anext(chunks, None), limit, "body")
                if chunk is None:
                    return
                drained += len(chunk)

    async def _read_body(
        self,
        response: httpx.Response,
        *,
        limit: int,
        deadline: float,
        truncate: bool = False,
    ) -> bytes:
        body = bytearray()
        chunks = response.aiter_bytes()
        try:
            while (chunk := await self._guard(anext(chunks, None), deadline, "body")) is not None:
                body += chunk
                if len(body) > limit:
                    if truncate:
                        break
                    raise StreamProtocolError("the model endpoint's answer is too large")
        finally:
            await _aclose(chunks)
        return bytes(body)

    async def _guard(
        self,
        awaitable: Awaitable[T],
        deadline: float,
        phase: _Phase,
        *,
        acc: StreamAccumulator | None = None,
    ) -> T:
        """Await one httpx operation under the deadline (and the idle limit while streaming),
        translating every httpx exception and timeout into a ``ModelError``: the one place."""
        loop = asyncio.get_running_loop()
        limit = deadline
        if phase == "stream":
            limit = min(deadline, loop.time() + self._idle_timeout)
        partial = acc.partial_text if acc is not None else ""
        response_id = acc.response_id if acc is not None else None
        timeout = asyncio.timeout_at(limit)
        try:
            async with timeout:
                return await awaitable
        except TimeoutError as exc:
            if not timeout.expired():
                raise ModelConnectionError(
                    f"could not talk to the model endpoint ({self._describe(exc)})"
                ) from exc
            kind = "total" if limit >= deadline else "idle"
            raise ModelTimeoutError(
                f"the model endpoint did not finish within the {kind} timeout",
                kind=kind,
                partial_text=partial,
                response_id=response_id,
            ) from exc
        except httpx.TimeoutException as exc:
            if phase == "connect" and isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise ModelTimeoutError(
                    "could not connect to the model endpoint in time", kind="connect"
                ) from exc
            if phase == "connect":
                # Connected, but not even the response headers came in time.
                raise ModelTimeoutError(
                    "the model endpoint sent nothing in time", kind="first_byte"
                ) from exc
            # httpx's read timeout is the idle timeout (between bytes).
            raise ModelTimeoutError(
                "the model endpoint stopped sending (idle timeout)",
                kind="idle",
                partial_text=partial,
                response_id=response_id,
            ) from exc
        except httpx.HTTPError as exc:
            if phase == "stream":
                raise StreamProtocolError(
                    f"the answer stream broke off ({self._describe(exc)})",
                    code="stream_interrupted",
                    response_id=response_id,
                    partial_text=partial,
                ) from exc
            raise ModelConnectionError(
                f"could not talk to the model endpoint ({self._describe(exc)})"
            ) from exc

    def _describe(self, exc: BaseException) -> str:
        detail = str(exc).strip()
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return redact(text, (self._api_key,))


def _is_json_body(head: bytes) -> bool:
    return head.lstrip().removeprefix(b"\xef\xbb\xbf").startswith((b"{", b"["))


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise StreamProtocolError("the model endpoint's answer is not valid JSON") from exc


async def _aclose(iterator: AsyncIterator[bytes]) -> None:
    # httpx types its body iterators as AsyncIterator, but they are async generators; closing
    # them here rather than at garbage collection keeps shutdown deterministic.
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
