"""A fake OpenAI Responses-API server for tests: real HTTP on 127.0.0.1, port 0.

It speaks the real wire format (checked against the official ``openai`` SDK in
``tests/model/test_fake_server_with_openai_sdk.py``): ``POST /v1/responses`` answers a full
response JSON, or for ``"stream": true`` a ``text/event-stream`` of ``event: <type>`` /
``data: <json>`` frames in OpenAI's order with ``sequence_number``s, ``resp_``/``msg_`` ids and
usage; ``GET /v1/models`` answers a model list.

Typical use::

    async with FakeResponsesServer(api_key="test-key") as fake:
        client = ResponsesClient(base_url=fake.base_url, api_key="test-key")
        fake.error(429, {"error": {...}}, headers={"retry-after-ms": "10"})  # first call
        fake.reply("hello", delta_count=2)                                   # second call
        ...
        await fake.wait_for_requests(2)
        assert fake.requests[1]["body"]["previous_response_id"] == ...

Behaviour of each ``POST /v1/responses``, in order:

1. The request is recorded in :attr:`FakeResponsesServer.requests` (a ``RecordedRequest``:
   method, path, lowercased headers, JSON body, client peer) and waiters are woken.
2. A wrong or missing ``Authorization: Bearer <api_key>`` gets 401 ``invalid_api_key``.
3. A ``previous_response_id`` this server did not issue (or forgot, see ``forget_all`` /
   ``restart``) gets OpenAI's 400 ``previous_response_not_found`` (worded as ``error_style``
   says). Neither 2 nor 3 consumes a script. With ``chain_mode="ignore_unknown"`` such an id is
   answered 200 and the model sees only the new input (LiteLLM's proxy without its database,
   small relays after a restart); with ``"ignore_all"`` no chain is ever kept (a relay that
   translates to Chat Completions).
4. Otherwise the next scripted behaviour is popped from the queue (``reply``, ``error``,
   ``stream_failure``, ``incomplete``, ``drop_after``, ``stall_after``, ``raw``,
   ``previous_response_not_found``); with an empty queue it replies with the answerer's text
   (default: ``"answer N to: <last user text>"``). Ids of completed (and incomplete)
   responses are remembered for chaining and listed in ``response_ids``.

The fake keeps each response's conversation (the input it saw plus its answer), so a chained
request is answered from the whole history it would see; ``seen`` on a recorded request is that
history, and usage counts its words (``input_tokens`` = 10 + words seen), so a dropped history
shows in the figures as it does at a real endpoint. ``recall_answerer`` answers with every user
message it saw.

Relay variants of one answer (``reply`` options): ``flatten_reasoning`` (reasoning streamed as
answer deltas without item events), ``text_in_done_only`` (no deltas; the text only in
``response.output_text.done`` and an empty ``output``), ``body_as`` (the whole JSON response
for a stream request, under any content-type), ``end_with_done`` (``data: [DONE]`` and no
``response.completed``). ``error_style`` words the errors the fake makes itself as LiteLLM,
one-api, new-api, Azure or a 200 stream that fails would.

Wait on conditions with ``wait_for_requests`` / ``wait_for_disconnects``; never sleep.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

__all__ = [
    "Answerer",
    "ChainMode",
    "ErrorStyle",
    "FakeResponsesServer",
    "RecordedRequest",
    "UsageStyle",
    "last_user_text",
    "recall_answerer",
    "tool_outputs",
    "user_texts",
]

Answerer = Callable[[dict[str, Any], int], str]
"""``(request_body, n) -> answer text``; ``n`` counts generated answers from 1. The body's
``input`` is what the model sees: the chained history followed by the request's own input."""

UsageStyle = Literal["openai", "relay"]
ChainMode = Literal["strict", "ignore_unknown", "ignore_all"]
ErrorStyle = Literal["openai", "azure", "litellm", "one-api", "new-api", "stream"]


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last user message in a request's ``input`` (string or items)."""
    data = body.get("input")
    if isinstance(data, str):
        return data
    if not isinstance(data, list):
        return ""
    for item in reversed(data):
        if not _is_user(item):
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") in ("input_text", "text")
            )
    return ""


def _item_text(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def user_texts(body: Mapping[str, Any]) -> list[str]:
    """The text of every user message in a request's ``input``, oldest first."""
    data = body.get("input")
    if isinstance(data, str):
        return [data]
    if not isinstance(data, list):
        return []
    return [_item_text(item) for item in data if _is_user(item)]


def _is_user(item: Any) -> bool:
    """A user message (function calls and their outputs are items without a role)."""
    return (
        isinstance(item, dict)
        and item.get("type", "message") == "message"
        and item.get("role", "user") == "user"
    )


def tool_outputs(body: Mapping[str, Any]) -> dict[str, str]:
    """``call_id -> output`` of every ``function_call_output`` the model sees."""
    data = body.get("input")
    return {
        str(item.get("call_id")): str(item.get("output"))
        for item in (data if isinstance(data, list) else [])
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    }


def recall_answerer(body: dict[str, Any], n: int) -> str:
    """An answer that shows what the model saw: every user message, oldest first."""
    return f"answer {n}; I have seen: " + " | ".join(user_texts(body))


def _as_items(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, str):
        return [{"role": "user", "content": data}]
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _words(items: Sequence[dict[str, Any]]) -> int:
    return sum(len(_item_text(item).split()) for item in items)


class RecordedRequest(dict[str, Any]):
    """One received ``POST /v1/responses``: a dict with the keys ``method``, ``path``,
    ``headers`` (lowercased names), ``body`` (parsed JSON, ``None`` if not JSON) and ``peer``
    (the client's ``host:port``; equal ports mean a reused connection), also readable as
    attributes (``request.body``)."""

    @property
    def method(self) -> str:
        return str(self["method"])

    @property
    def path(self) -> str:
        return str(self["path"])

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = self["headers"]
        return headers

    @property
    def body(self) -> Any:
        return self["body"]

    @property
    def peer(self) -> str | None:
        peer: str | None = self["peer"]
        return peer

    @property
    def seen(self) -> list[dict[str, Any]]:
        """The conversation the fake model saw for this request: the chained history it kept
        (none when it ignored or refused ``previous_response_id``) and the request's input."""
        seen: list[dict[str, Any]] = self.get("seen") or []
        return seen


def _default_answerer(body: dict[str, Any], n: int) -> str:
    return f"answer {n} to: {last_user_text(body)}"


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _split(text: str, parts: int) -> list[str]:
    """``text`` in ``parts`` nearly equal pieces (fewer when the text is shorter)."""
    parts = max(1, min(parts, len(text)))
    if not text:
        return []
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _error_body(message: str, *, type_: str, code: str | None, param: str | None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}, indent=2).encode()


# ------------------------------------------------------------------------------ scripts


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str | None = None
    delta_count: int = 3
    delay_between_deltas: float = 0.0
    usage_style: UsageStyle = "openai"
    reasoning: bool = False
    usage: Mapping[str, int] | None = None
    delay: float = 0.0
    raw_usage: Mapping[str, Any] | None = None
    flatten_reasoning: bool = False
    text_in_done_only: bool = False
    body_as: str | None = None
    end_with_done: bool = False
    delay_before_end: float = 0.0


@dataclass(frozen=True, slots=True)
class _HTTPError:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _StreamFailure:
    text: str
    delta_count: int
    code: str | None
    message: str
    nested: bool
    error_type: str | None = None
    param: str | None = None
    events: Literal["both", "error_only", "failed_only"] = "both"


@dataclass(frozen=True, slots=True)
class _Incomplete:
    reason: str
    text: str | None


@dataclass(frozen=True, slots=True)
class _Cut:
    """Stop after ``n_deltas`` deltas: ``drop`` closes the connection, else it stalls."""

    n_deltas: int
    drop: bool
    text: str | None


@dataclass(frozen=True, slots=True)
class _Raw:
    body: bytes
    status: int
    content_type: str
    headers: Mapping[str, str]
    chunk_size: int | None


@dataclass(frozen=True, slots=True)
class _ChainNotFound:
    pass


@dataclass(frozen=True, slots=True)
class _Calls:
    """A response that asks for function calls: ``(name, arguments JSON text)`` each, after
    an optional message ``text``."""

    calls: tuple[tuple[str, str], ...]
    text: str = ""
    delay: float = 0.0


_Script = _Reply | _HTTPError | _StreamFailure | _Incomplete | _Cut | _Raw | _ChainNotFound | _Calls


# ------------------------------------------------------------------------------ wire objects


def _usage(
    style: UsageStyle,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> dict[str, Any]:
    total = input_tokens + output_tokens
    if style == "relay":
        return {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": cached_tokens, "text_tokens": input_tokens},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "text_tokens": output_tokens - reasoning_tokens,
            },
        }
    return {
        "input_tokens": input_tokens,
        # cache_write_tokens: sent by current endpoints and required by the current SDK models.
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": total,
    }


@dataclass(slots=True)
class _Answer:
    """One response being produced: ids, texts and the envelope fields OpenAI sends."""

    request: dict[str, Any]
    text: str
    reasoning_text: str | None
    usage: dict[str, Any]
    response_id: str = field(default_factory=lambda: _new_id("resp"))
    message_id: str = field(default_factory=lambda: _new_id("msg"))
    reasoning_id: str = field(default_factory=lambda: _new_id("rs"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    sequence: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    """``function_call`` items (completed), after the message (left out when it is empty)."""

    @property
    def has_message(self) -> bool:
        return bool(self.text) or not self.calls

    def call_index(self, n: int) -> int:
        return self.message_index + (1 if self.has_message else 0) + n

    @property
    def message_index(self) -> int:
        return 1 if self.reasoning_text is not None else 0

    def reasoning_item(self) -> dict[str, Any]:
        summary = [{"type": "summary_text", "text": self.reasoning_text or ""}]
        return {"id": self.reasoning_id, "type": "reasoning", "summary": summary}

    def message_item(self, text: str, status: str) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "status": status,
            "content": [self.output_text_part(text)],
            "role": "assistant",
        }

    @staticmethod
    def output_text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def envelope(
        self,
        status: str,
        output: list[dict[str, Any]],
        *,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
    ) -> dict[str, Any]:
        req = self.request
        reasoning = req.get("reasoning") if isinstance(req.get("reasoning"), dict) else {}
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": (
                {"reason": incomplete_reason} if incomplete_reason is not None else None
            ),
            "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": req.get("model", "fake-model"),
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": req.get("previous_response_id"),
            "prompt_cache_key": None,
            "reasoning": {
                "effort": (reasoning or {}).get("effort"),
                "summary": (reasoning or {}).get("summary"),
            },
            "safety_identifier": None,
            "service_tier": "default",
            "store": req.get("store", True),
            "temperature": req.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": req.get("tool_choice", "auto"),
            "tools": req.get("tools") or [],
            "top_logprobs": 0,
            "top_p": req.get("top_p", 1.0),
            "truncation": req.get("truncation", "disabled"),
            "usage": usage,
            "user": None,
            "metadata": req.get("metadata") or {},
        }

    def output(self, status: str = "completed") -> list[dict[str, Any]]:
        items = [self.reasoning_item()] if self.reasoning_text is not None else []
        if self.has_message:
            items.append(self.message_item(self.text, status))
        return [*items, *self.calls]

    def call_frames(self) -> list[bytes]:
        """Each function call as OpenAI streams it: the item added with empty arguments, the
        arguments in deltas, their ``done``, the item ``done``."""
        frames: list[bytes] = []
        for n, item in enumerate(self.calls):
            index = self.call_index(n)
            common = {"item_id": item["id"], "output_index": index}
            frames.append(
                self.event(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
            )
            for piece in _split(item["arguments"], 2):
                frames.append(
                    self.event("response.function_call_arguments.delta", **common, delta=piece)
                )
            frames.append(
                self.event(
                    "response.function_call_arguments.done",
                    **common,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            frames.append(self.event("response.output_item.done", output_index=index, item=item))
        return frames

    def event(self, type_: str, **fields: Any) -> bytes:
        payload = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {type_}\ndata: {json.dumps(payload)}\n\n".encode()

    def opening(self, *, with_response_events: bool = True) -> list[bytes]:
        """Frames up to and including the message's empty ``output_text`` part."""
        frames: list[bytes] = []
        if with_response_events:
            frames += [
                self.event("response.created", response=self.envelope("in_progress", [])),
                self.event("response.in_progress", response=self.envelope("in_progress", [])),
            ]
        if self.reasoning_text is not None:
            rid, summary = self.reasoning_id, self.reasoning_text
            empty = {"id": rid, "type": "reasoning", "summary": []}
            part = {"type": "summary_text", "text": ""}
            common = {"item_id": rid, "output_index": 0, "summary_index": 0}
            frames += [
                self.event("response.output_item.added", output_index=0, item=empty),
                self.event("response.reasoning_summary_part.added", **common, part=part),
                *(
                    self.event("response.reasoning_summary_text.delta", **common, delta=piece)
                    for piece in _split(summary, 2)
                ),
                self.event("response.reasoning_summary_text.done", **common, text=summary),
                self.event(
                    "response.reasoning_summary_part.done",
                    **common,
                    part={"type": "summary_text", "text": summary},
                ),
                self.event("response.output_item.done", output_index=0, item=self.reasoning_item()),
            ]
        index = self.message_index
        in_progress = {**self.message_item("", "in_progress"), "content": []}
        frames += [
            self.event("response.output_item.added", output_index=index, item=in_progress),
            self.event(
                "response.content_part.added",
                item_id=self.message_id,
                output_index=index,
                content_index=0,
                part=self.output_text_part(""),
            ),
        ]
        return frames

    def delta(self, piece: str) -> bytes:
        return self.event(
            "response.output_text.delta",
            item_id=self.message_id,
            output_index=self.message_index,
            content_index=0,
            delta=piece,
            logprobs=[],
        )

    def closing(self, *, status: str = "completed") -> list[bytes]:
        """Frames after the last delta, through the message item's ``done``."""
        common = {"item_id": self.message_id, "output_index": self.message_index}
        return [
            self.event(
                "response.output_text.done", **common, content_index=0, text=self.text, logprobs=[]
            ),
            self.event(
                "response.content_part.done",
                **common,
                content_index=0,
                part=self.output_text_part(self.text),
            ),
            self.event(
                "response.output_item.done",
                output_index=self.message_index,
                item=self.message_item(self.text, status),
            ),
        ]


# ------------------------------------------------------------------------------ the server


class FakeResponsesServer:
    """Scriptable fake of ``POST /v1/responses`` and ``GET /v1/models``.

    ``api_key``: the key expected in ``Authorization: Bearer …`` (``None`` accepts any).
    ``answerer``: text for unscripted replies and for ``reply()`` without text.
    ``check_chain``: answer unknown ``previous_response_id``s with 400 (as OpenAI does);
    ``False`` is ``chain_mode="ignore_unknown"``.
    ``chain_mode``: ``strict`` (OpenAI), ``ignore_unknown`` (200 to an unknown id, history
    dropped) or ``ignore_all`` (``previous_response_id`` never honoured).
    ``error_style``: how the errors the fake makes itself (a lost chain) are worded.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        answerer: Answerer | None = None,
        models: Sequence[str] = ("fake-model",),
        check_chain: bool = True,
        chain_mode: ChainMode | None = None,
        error_style: ErrorStyle = "openai",
    ) -> None:
        self.api_key = api_key
        self.answerer: Answerer = answerer or _default_answerer
        self.models = list(models)
        self.chain_mode: ChainMode = chain_mode or ("strict" if check_chain else "ignore_unknown")
        self.error_style: ErrorStyle = error_style
        # response id → the conversation after it (what it saw, then its answer)
        self._histories: dict[str, list[dict[str, Any]]] = {}
        self.restarts = 0
        self.requests: list[RecordedRequest] = []
        """Every ``POST /v1/responses``, in order (see ``RecordedRequest``)."""
        self.model_list_requests = 0
        self.response_ids: list[str] = []
        """Ids of the responses this server completed (or left incomplete), in order."""
        self.disconnects = 0
        """Responses cut short because the client closed the connection."""
        self._known_ids: set[str] = set()
        # response id → call ids it asked for (answered by the next request in its chain)
        self._open_calls: dict[str, list[str]] = {}
        self._always: tuple[str, str] | None = None
        self._scripts: deque[_Script] = deque()
        self._answers = 0
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/responses", self._handle_responses)
        app.router.add_get("/v1/models", self._handle_models)
        # handler_cancellation: a client that hangs up cancels its handler, which is how
        # ``disconnects`` sees a stalled or slow stream being abandoned.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._stopping.set()  # releases stalled handlers
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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

    @property
    def check_chain(self) -> bool:
        return self.chain_mode == "strict"

    @check_chain.setter
    def check_chain(self, value: bool) -> None:
        self.chain_mode = "strict" if value else "ignore_unknown"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, the value for a client's base URL."""
        if self._port is None:
            raise RuntimeError("FakeResponsesServer is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    # --------------------------------------------------------------- scripting

    def reply(
        self,
        text: str | None = None,
        *,
        delta_count: int = 3,
        delay_between_deltas: float = 0.0,
        usage_style: UsageStyle = "openai",
        reasoning: bool = False,
        usage: Mapping[str, int] | None = None,
        delay: float = 0.0,
        raw_usage: Mapping[str, Any] | None = None,
        flatten_reasoning: bool = False,
        text_in_done_only: bool = False,
        body_as: str | None = None,
        end_with_done: bool = False,
        delay_before_end: float = 0.0,
    ) -> None:
        """Answer the next call with ``text`` (default: the answerer's), streamed as
        ``delta_count`` deltas ``delay_between_deltas`` seconds apart, after waiting ``delay``
        seconds before the first byte (a slow model).

        ``usage_style``: ``"openai"`` (``input_tokens``…) or ``"relay"`` (``prompt_tokens``…).
        ``usage``: exact counts as ``input_tokens``, ``cached_tokens``, ``output_tokens``,
        ``reasoning_tokens`` (rendered in ``usage_style``); ``raw_usage``: the ``usage`` object
        exactly as given (absurd figures, strings). ``reasoning``: put a reasoning item with a
        summary before the message (at ``output_index`` 0).

        Relay variants: ``flatten_reasoning`` streams the reasoning summary and then the answer
        as ``output_text.delta`` events without any item events or ``output_index`` (the final
        ``output`` is right: reasoning item, then the answer); ``text_in_done_only`` sends no
        deltas, the text only in ``output_text.done``, and ``response.completed`` with an empty
        ``output``; ``body_as`` answers a stream request with the whole JSON response under that
        content-type (e.g. ``text/plain``); ``end_with_done`` sends every event but
        ``response.completed`` and ends with ``data: [DONE]``. ``delay_before_end``: seconds
        between the last delta and the end of the response (a model that finishes slowly).
        """
        self._scripts.append(
            _Reply(
                text,
                delta_count,
                delay_between_deltas,
                usage_style,
                reasoning or flatten_reasoning,
                usage,
                delay,
                raw_usage,
                flatten_reasoning,
                text_in_done_only,
                body_as,
                end_with_done,
                delay_before_end,
            )
        )

    def error(
        self,
        status: int,
        body: Mapping[str, Any] | str | bytes,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Answer the next call with an HTTP ``status``: a dict body is sent as JSON, a string
        or bytes as is (``content_type`` defaults to ``application/json`` / ``text/plain``).
        Works for any status, e.g. a 307 with a ``Location`` header."""
        if isinstance(body, Mapping):
            raw, default_type = json.dumps(body, indent=2).encode(), "application/json"
        else:
            raw = body.encode() if isinstance(body, str) else body
            default_type = "text/plain"
        self._scripts.append(
            _HTTPError(status, raw, content_type or default_type, dict(headers or {}))
        )

    def stream_failure(
        self,
        text: str = "partial answer",
        *,
        delta_count: int = 2,
        code: str | None = "server_error",
        message: str = "The server had an error while processing your request.",
        nested: bool = True,
        error_type: str | None = None,
        param: str | None = None,
        events: Literal["both", "error_only", "failed_only"] = "both",
    ) -> None:
        """A 200 stream that sends ``text`` in deltas, then an ``error`` event (``nested``:
        ``{"error": {...}}`` as OpenAI records it, else flat) and ``response.failed``
        (``events``: only one of the two). ``error_type`` defaults to ``code``.
        A non-streamed call gets a 200 body with ``status: failed``."""
        self._scripts.append(
            _StreamFailure(text, delta_count, code, message, nested, error_type, param, events)
        )

    def incomplete(self, reason: str = "max_output_tokens", *, text: str | None = None) -> None:
        """End with ``response.incomplete`` (``incomplete_details.reason``) after the text."""
        self._scripts.append(_Incomplete(reason, text))

    def drop_after(self, n_deltas: int, *, text: str | None = None) -> None:
        """Close the connection abruptly after ``n_deltas`` deltas (no terminal event).
        A non-streamed call is dropped before any byte."""
        self._scripts.append(_Cut(n_deltas, drop=True, text=text))

    def stall_after(self, n_deltas: int, *, text: str | None = None) -> None:
        """Stop sending after ``n_deltas`` deltas, keeping the connection open until the
        client leaves or the server stops. A non-streamed call never gets an answer."""
        self._scripts.append(_Cut(n_deltas, drop=False, text=text))

    def raw(
        self,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = "text/event-stream",
        headers: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        """Send ``body`` byte for byte (e.g. a recorded stream), in ``chunk_size`` writes."""
        data = body.encode() if isinstance(body, str) else body
        self._scripts.append(_Raw(data, status, content_type, dict(headers or {}), chunk_size))

    def function_calls(self, *calls: tuple[str, Any], text: str = "", delay: float = 0.0) -> None:
        """Answer the next call with ``function_call`` items, one per ``(name, arguments)``
        (a dict is sent as its JSON text, a string as is; several = parallel calls), after an
        optional message ``text``; ``delay``: seconds before the first byte."""
        self._scripts.append(
            _Calls(tuple((name, _arguments(args)) for name, args in calls), text, delay)
        )

    def always_call(self, name: str | None, arguments: Any = None) -> None:
        """Answer every unscripted call with one call of ``name`` (a model that never stops
        calling tools, for the round limit) until ``always_call(None)``. A request with
        ``tool_choice: "none"`` gets a text answer, as a real endpoint gives it."""
        self._always = None if name is None else (name, _arguments(arguments or {}))

    def previous_response_not_found(self) -> None:
        """Answer the next call with OpenAI's 400 ``previous_response_not_found``."""
        self._scripts.append(_ChainNotFound())

    # Shorter names used by tests/e2e; same behaviour as ``reply`` and ``error``.

    def script_reply(self, text: str | None = None, *, delay: float = 0.0, **options: Any) -> None:
        """Alias of :meth:`reply` (``delay``: seconds before the first byte)."""
        self.reply(text, delay=delay, **options)

    def script_error(
        self,
        status: int,
        body: Mapping[str, Any] | str | bytes,
        **options: Any,
    ) -> None:
        """Alias of :meth:`error`."""
        self.error(status, body, **options)

    def forget_all(self) -> None:
        """Forget every issued response id and its conversation, as an endpoint that lost its
        stored chains."""
        self._known_ids.clear()
        self._histories.clear()

    def restart(self) -> None:
        """What a relay that keeps chains in memory does when it restarts: forget them all.
        With ``chain_mode="ignore_unknown"`` the old ids are then answered without history."""
        self.restarts += 1
        self.forget_all()

    def remember(self, response_id: str) -> None:
        """Treat ``response_id`` as issued here (to start a test mid-chain)."""
        self._known_ids.add(response_id)

    @property
    def known_response_ids(self) -> frozenset[str]:
        return frozenset(self._known_ids)

    @property
    def pending_scripts(self) -> int:
        """Scripted behaviours not yet used."""
        return len(self._scripts)

    # --------------------------------------------------------------- waiting

    # A ``timeout`` argument (not ``asyncio.timeout`` around the call) so every wait has a
    # deadline by default and its failure message says what was awaited.
    async def wait_for_requests(
        self,
        n: int,
        timeout: float = 5.0,
    ) -> list[RecordedRequest]:
        """Wait until at least ``n`` ``/v1/responses`` requests arrived; return them."""
        await self._wait(lambda: len(self.requests) >= n, timeout, f"{n} request(s)")
        return self.requests

    async def wait_for_disconnects(
        self,
        n: int = 1,
        timeout: float = 5.0,
    ) -> None:
        """Wait until ``n`` responses were cut short by the client closing the connection."""
        await self._wait(lambda: self.disconnects >= n, timeout, f"{n} client disconnect(s)")

    async def _wait(self, predicate: Callable[[], bool], seconds: float, what: str) -> None:
        try:
            async with asyncio.timeout(seconds), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(
                f"FakeResponsesServer: timed out after {seconds} s waiting for {what} "
                f"(requests={len(self.requests)}, disconnects={self.disconnects})"
            ) from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --------------------------------------------------------------- handlers

    def _authorised(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == (
            f"Bearer {self.api_key}"
        )

    @staticmethod
    def _json(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=body,
            content_type="application/json",
            headers={"x-request-id": _new_id("req"), **(headers or {})},
        )

    def _unauthorised(self) -> web.Response:
        message = "Incorrect API key provided. You can find your API key in your account."
        return self._json(
            401,
            _error_body(message, type_="invalid_request_error", code="invalid_api_key", param=None),
        )

    def _chain_not_found(self, response_id: object) -> web.Response:
        """OpenAI's 400 for an unknown ``previous_response_id``, as ``error_style`` words it."""
        text = f"Previous response with id '{response_id}' not found."
        style = self.error_style
        if style == "litellm":
            # LiteLLM's proxy: the status as the code, the upstream error inside the message.
            error = {
                "message": f"litellm.BadRequestError: OpenAIException - {text}",
                "type": "invalid_request_error",
                "param": "None",
                "code": "400",
            }
        elif style == "one-api":
            error = {
                "message": f"{text} (request id: 2026120412000000000000000)",
                "type": "one_api_error",
                "param": "",
                "code": "bad_response_status_code",
            }
        elif style == "new-api":
            error = {
                "message": text,
                "type": "bad_response_status_code",
                "param": "",
                "code": "bad_response_status_code",
            }
        else:  # openai, azure
            error = {
                "message": text,
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
        return self._json(400, json.dumps({"error": error}, indent=2).encode())

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        self.model_list_requests += 1
        if not self._authorised(request):
            return self._unauthorised()
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for m in self.models
        ]
        return self._json(200, json.dumps({"object": "list", "data": data}).encode())

    async def _handle_responses(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                peer=f"{peer[0]}:{peer[1]}" if peer else None,
            )
        )
        await self._notify()
        if not self._authorised(request):
            return self._unauthorised()
        if not isinstance(body, dict):
            return self._json(
                400,
                _error_body(
                    "We could not parse the JSON body of your request.",
                    type_="invalid_request_error",
                    code=None,
                    param=None,
                ),
            )
        previous = body.get("previous_response_id")
        history: list[dict[str, Any]] = []
        if previous is not None and self.chain_mode != "ignore_all":
            if previous in self._known_ids:
                history = list(self._histories.get(str(previous), []))
            elif self.chain_mode == "strict":
                if self.error_style == "stream":
                    if body.get("stream"):
                        return await self._failed_stream(request, body, previous)
                    return self._failed_body(body, previous)
                return self._chain_not_found(previous)
        seen = history + _as_items(body.get("input"))
        self.requests[-1]["seen"] = seen
        if self.chain_mode == "strict":
            refusal = self._check_calls(body, seen)
            if refusal is not None:
                return self._json(400, refusal)
        if self._scripts:
            script = self._scripts.popleft()
        elif self._always is not None and body.get("tool_choice") != "none":
            script = _Calls((self._always,))
        else:
            script = _Reply()
        stream = bool(body.get("stream"))
        try:
            return await self._run(script, request, {**body, "input": seen}, stream)
        except asyncio.CancelledError:
            # handler_cancellation: the client hung up mid-answer.
            self.disconnects += 1
            await asyncio.shield(self._notify())
            raise
        except ConnectionResetError:
            self.disconnects += 1
            await self._notify()
            raise

    def _check_calls(self, body: dict[str, Any], seen: list[dict[str, Any]]) -> bytes | None:
        """OpenAI's 400s for tool outputs that do not fit: an output whose call the model never
        made, or a chained request that leaves a call of the previous response unanswered."""
        made = {i.get("call_id") for i in seen if i.get("type") == "function_call"}
        given = [i.get("call_id") for i in seen if i.get("type") == "function_call_output"]
        for call_id in given:
            if call_id not in made:
                message = f"No tool call found for function call output with call_id {call_id}."
                return _error_body(message, type_="invalid_request_error", code=None, param="input")
        previous = body.get("previous_response_id")
        for call_id in self._open_calls.get(str(previous), []) if previous else []:
            if call_id not in given:
                message = f"No tool output found for function call {call_id}."
                return _error_body(message, type_="invalid_request_error", code=None, param="input")
        return None

    async def _run(
        self, script: _Script, request: web.Request, body: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        if isinstance(script, _Calls):
            if script.delay:
                await asyncio.sleep(script.delay)  # simulating a slow model, not synchronising
            answer = self._answer(body, script.text, _Reply())
            answer.calls = [
                {
                    "id": _new_id("fc"),
                    "type": "function_call",
                    "status": "completed",
                    "arguments": arguments,
                    "call_id": _new_id("call"),
                    "name": name,
                }
                for name, arguments in script.calls
            ]
            if not stream:
                self._issue(answer)
                return self._json(200, self._body(answer, "completed"))
            return await self._stream(request, answer, 3, 0.0)
        if isinstance(script, _ChainNotFound):
            return self._chain_not_found(body.get("previous_response_id"))
        if isinstance(script, _HTTPError):
            return web.Response(
                status=script.status,
                body=script.body,
                headers={
                    "Content-Type": script.content_type,
                    "x-request-id": _new_id("req"),
                    **script.headers,
                },
            )
        if isinstance(script, _Raw):
            return await self._send_raw(request, script)
        if isinstance(script, _Reply):
            if script.delay:
                await asyncio.sleep(script.delay)  # simulating a slow model, not synchronising
            answer = self._answer(body, script.text, script)
            if not stream:
                self._issue(answer)
                return self._json(200, self._body(answer, "completed"))
            if script.body_as is not None:
                # A relay that ignores ``stream: true`` and labels the JSON as it likes.
                self._issue(answer)
                return web.Response(
                    status=200,
                    body=self._body(answer, "completed"),
                    headers={"Content-Type": script.body_as, "x-request-id": _new_id("req")},
                )
            return await self._stream(
                request, answer, script.delta_count, script.delay_between_deltas, variant=script
            )
        if isinstance(script, _Incomplete):
            answer = self._answer(body, script.text, _Reply())
            if not stream:
                self._issue(answer)
                return self._json(200, self._body(answer, "incomplete", reason=script.reason))
            return await self._stream(request, answer, 3, 0.0, incomplete=script.reason)
        if isinstance(script, _StreamFailure):
            answer = self._answer(body, script.text, _Reply())
            if not stream:
                error = {"code": script.code, "message": script.message}
                if script.param is not None:
                    error["param"] = script.param
                return self._json(200, self._body(answer, "failed", error=error))
            return await self._stream(request, answer, script.delta_count, 0.0, failure=script)
        # _Cut
        if not stream:
            return await self._cut(request, None, script)
        answer = self._answer(body, script.text, _Reply())
        return await self._stream(request, answer, max(script.n_deltas + 2, 3), 0.0, cut=script)

    def _answer(self, body: dict[str, Any], text: str | None, reply: _Reply) -> _Answer:
        self._answers += 1
        answer_text = text if text is not None else self.answerer(body, self._answers)
        counts = dict(reply.usage or {})
        reasoning_tokens = counts.get("reasoning_tokens", 8 if reply.reasoning else 0)
        # One token per word of everything the model saw: a dropped history shows in the
        # figures, as it does at a real endpoint.
        usage = _usage(
            reply.usage_style,
            input_tokens=counts.get("input_tokens", 10 + _words(_as_items(body.get("input")))),
            output_tokens=counts.get(
                "output_tokens", max(1, len(answer_text.split())) + reasoning_tokens
            ),
            cached_tokens=counts.get("cached_tokens", 0),
            reasoning_tokens=reasoning_tokens,
        )
        if reply.raw_usage is not None:
            usage = dict(reply.raw_usage)
        return _Answer(
            request=body,
            text=answer_text,
            reasoning_text="Thinking about the question." if reply.reasoning else None,
            usage=usage,
        )

    def _issue(self, answer: _Answer) -> None:
        self._known_ids.add(answer.response_id)
        self.response_ids.append(answer.response_id)
        said = [{"role": "assistant", "content": answer.text}] if answer.has_message else []
        self._histories[answer.response_id] = [
            *_as_items(answer.request.get("input")),
            *said,
            *answer.calls,
        ]
        self._open_calls[answer.response_id] = [c["call_id"] for c in answer.calls]

    @staticmethod
    def _body(
        answer: _Answer,
        status: str,
        *,
        reason: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> bytes:
        output = [] if status == "failed" else answer.output(status)
        usage = None if status == "failed" else answer.usage
        envelope = answer.envelope(
            status, output, usage=usage, error=error, incomplete_reason=reason
        )
        return json.dumps(envelope, indent=2).encode()

    async def _send_raw(self, request: web.Request, script: _Raw) -> web.StreamResponse:
        response = web.StreamResponse(
            status=script.status,
            headers={"Content-Type": script.content_type, **script.headers},
        )
        await response.prepare(request)
        size = script.chunk_size or len(script.body) or 1
        for start in range(0, len(script.body), size):
            await response.write(script.body[start : start + size])
        await response.write_eof()
        return response

    async def _stream(
        self,
        request: web.Request,
        answer: _Answer,
        delta_count: int,
        delay: float,
        *,
        incomplete: str | None = None,
        failure: _StreamFailure | None = None,
        cut: _Cut | None = None,
        variant: _Reply | None = None,
    ) -> web.StreamResponse:
        if variant is not None and (
            variant.flatten_reasoning or variant.text_in_done_only or variant.end_with_done
        ):
            return await self._relay_stream(request, answer, delta_count, variant)
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": _new_id("req"),
            },
        )
        await response.prepare(request)
        if not answer.has_message:
            return await self._calls_stream(response, answer)
        for frame in answer.opening():
            await response.write(frame)
        for i, piece in enumerate(_split(answer.text, delta_count)):
            if cut is not None and i == cut.n_deltas:
                return await self._cut(request, response, cut)
            if delay and i:
                await asyncio.sleep(delay)
            await response.write(answer.delta(piece))
        if cut is not None:  # fewer deltas than the cut point: cut after all of them
            return await self._cut(request, response, cut)
        if variant is not None and variant.delay_before_end:
            await asyncio.sleep(variant.delay_before_end)  # a slow model, not synchronising
        if failure is not None:
            error = {"code": failure.code, "message": failure.message, "param": failure.param}
            # Nested as OpenAI recorded it (with the error's own ``type``), or flat as the SDK
            # models it, where ``type`` is the event's.
            error_type = failure.error_type or failure.code
            fields: dict[str, Any] = (
                {"error": {"type": error_type, **error}} if failure.nested else error
            )
            if failure.events != "failed_only":
                await response.write(answer.event("error", **fields))
            if failure.events != "error_only":
                failed_error: dict[str, Any] = {"code": failure.code, "message": failure.message}
                envelope = answer.envelope("failed", [], error=failed_error)
                await response.write(answer.event("response.failed", response=envelope))
        elif incomplete is not None:
            for frame in answer.closing(status="incomplete"):
                await response.write(frame)
            self._issue(answer)
            envelope = answer.envelope(
                "incomplete",
                answer.output("incomplete"),
                usage=answer.usage,
                incomplete_reason=incomplete,
            )
            await response.write(answer.event("response.incomplete", response=envelope))
        else:
            for frame in answer.closing():
                await response.write(frame)
            for frame in answer.call_frames():
                await response.write(frame)
            self._issue(answer)
            envelope = answer.envelope("completed", answer.output(), usage=answer.usage)
            await response.write(answer.event("response.completed", response=envelope))
        await response.write_eof()
        return response

    async def _calls_stream(
        self, response: web.StreamResponse, answer: _Answer
    ) -> web.StreamResponse:
        """A response that is only function calls (no message item)."""
        created = answer.envelope("in_progress", [])
        await response.write(answer.event("response.created", response=created))
        await response.write(answer.event("response.in_progress", response=created))
        for frame in answer.call_frames():
            await response.write(frame)
        self._issue(answer)
        envelope = answer.envelope("completed", answer.output(), usage=answer.usage)
        await response.write(answer.event("response.completed", response=envelope))
        await response.write_eof()
        return response

    async def _relay_stream(
        self, request: web.Request, answer: _Answer, delta_count: int, variant: _Reply
    ) -> web.StreamResponse:
        """The stream variants of relays (see ``reply``)."""
        response = await self._open_stream(request)
        created = answer.envelope("in_progress", [])
        await response.write(answer.event("response.created", response=created))
        await response.write(answer.event("response.in_progress", response=created))
        if variant.flatten_reasoning:
            # Reasoning and answer alike as bare text deltas: no items, no output_index.
            pieces = _split(answer.reasoning_text or "", 2) + _split(answer.text, delta_count)
            for piece in pieces:
                await response.write(answer.event("response.output_text.delta", delta=piece))
        else:
            for frame in answer.opening(with_response_events=False):
                await response.write(frame)
            if not variant.text_in_done_only:
                for piece in _split(answer.text, delta_count):
                    await response.write(answer.delta(piece))
            for frame in answer.closing():
                await response.write(frame)
        self._issue(answer)
        if variant.end_with_done:
            await response.write(b"data: [DONE]\n\n")
        else:
            output = [] if variant.text_in_done_only else answer.output()
            envelope = answer.envelope("completed", output, usage=answer.usage)
            await response.write(answer.event("response.completed", response=envelope))
        await response.write_eof()
        return response

    async def _failed_stream(
        self, request: web.Request, body: dict[str, Any], previous: object
    ) -> web.StreamResponse:
        """A lost chain reported as a relay does inside a 200 stream: ``response.failed`` with
        no code, the original words only in ``message``."""
        answer = _Answer(request=body, text="", reasoning_text=None, usage={})
        response = await self._open_stream(request)
        envelope = answer.envelope("in_progress", [])
        await response.write(answer.event("response.created", response=envelope))
        error = {"code": None, "message": f"Previous response with id '{previous}' not found."}
        failed = answer.envelope("failed", [], error=error)
        await response.write(answer.event("response.failed", response=failed))
        await response.write_eof()
        return response

    def _failed_body(self, body: dict[str, Any], previous: object) -> web.Response:
        """The same for a non-streamed call: a 200 response whose status is ``failed``."""
        answer = _Answer(request=body, text="", reasoning_text=None, usage={})
        error = {"code": None, "message": f"Previous response with id '{previous}' not found."}
        return self._json(200, self._body(answer, "failed", error=error))

    @staticmethod
    async def _open_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": _new_id("req"),
            },
        )
        await response.prepare(request)
        return response

    async def _cut(
        self, request: web.Request, response: web.StreamResponse | None, cut: _Cut
    ) -> web.StreamResponse:
        if cut.drop:
            transport = request.transport
            if transport is not None:
                transport.abort()  # a reset mid-body: the client sees the stream break off
            return response or web.Response(status=500)
        await self._stopping.wait()  # stall until the client leaves (cancels us) or stop()
        return response or web.Response(status=503)
