"""Incremental Server-Sent Events decoder: bytes in, complete events out.

Hand-written on purpose rather than taken from ``httpx-sse`` (which is not in the lock): the
client needs byte-level control. It reads the body chunk by chunk under its own idle and total
timeouts, and this decoder must survive what real endpoints send: ``event:`` after ``data:``
(Bedrock), no ``event:`` at all and ``: comment`` lines (OpenRouter), a ``data: [DONE]`` sentinel,
CRLF or bare CR line ends split across chunks, and UTF-8 characters split across chunks. The
``event:`` field is kept but callers dispatch on the JSON's ``type``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.errors import StreamProtocolError

__all__ = ["DONE_SENTINEL", "SSEDecoder", "SSEEvent", "decode_json"]

DONE_SENTINEL = "[DONE]"

# A single line this long is not an answer event but a broken or hostile stream; refusing it
# keeps one bad endpoint from growing the buffer without bound.
MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``data`` lines joined with ``\\n``."""

    data: str
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Feed raw body chunks with :meth:`feed`; call :meth:`flush` once at end of stream.

    After ``data: [DONE]`` the decoder is :attr:`done` and ignores anything that follows.
    """

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        # The previous chunk ended in a bare CR: a LF opening the next chunk belongs to it.
        self._after_cr = False
        self._first_line = True
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self.done = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self.done or not chunk:
            return []
        self._buffer += chunk
        # bytes.splitlines splits on exactly the SSE line ends: CRLF, LF and CR.
        lines = self._buffer.splitlines(keepends=True)
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._buffer = bytearray(lines.pop())
        else:
            self._buffer = bytearray()
        if len(self._buffer) > self._max_line_bytes:
            raise StreamProtocolError("an SSE line exceeds the size limit")
        events: list[SSEEvent] = []
        for raw in lines:
            if self._after_cr and raw == b"\n":
                self._after_cr = False
                continue
            self._after_cr = raw.endswith(b"\r")
            self._line(bytes(raw.rstrip(b"\r\n")), events)
            if self.done:
                break
        return events

    def flush(self) -> list[SSEEvent]:
        """End of body: dispatch a last event even without its closing blank line (lenient)."""
        events: list[SSEEvent] = []
        if self.done:
            return events
        if self._buffer:
            self._line(bytes(self._buffer), events)
            self._buffer = bytearray()
        if not self.done:
            self._line(b"", events)
        return events

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        # Decode whole lines only, so a multi-byte character split across chunks is intact.
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            if self._data:
                data = "\n".join(self._data)
                if data == DONE_SENTINEL:
                    self.done = True
                else:
                    out.append(SSEEvent(data=data, event=self._event, id=self._last_id))
            self._data = []
            self._event = None
            return
        if line.startswith(":"):
            return  # a comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored, as the SSE spec says.


def decode_json(event: SSEEvent) -> dict[str, Any]:
    """The event's data as a JSON object, or :class:`StreamProtocolError`."""
    try:
        value = json.loads(event.data)
    except ValueError as exc:
        raise StreamProtocolError("the stream sent an event that is not valid JSON") from exc
    if not isinstance(value, dict):
        raise StreamProtocolError("the stream sent an event that is not a JSON object")
    return value
