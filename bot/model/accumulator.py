"""Turn decoded Responses-API stream events into ``ModelEvent``s and typed errors.

Pure: no I/O, no clock. :class:`StreamAccumulator` is fed one decoded event dict at a time (from
``bot.model.sse``) and knows nothing about HTTP, so every recorded stream in the fixtures can be
checked against it directly.

What real endpoints do that this tolerates (see ``../shared/fixtures/responses/SOURCES.md``):

- Items are tracked by ``output_index`` and item ``type``: Copilot gives every event a new
  ``item_id`` and OpenRouter's reasoning id changes between the stream and the final response.
- Reasoning models put a ``reasoning`` item first, and OpenRouter interleaves items, so the
  message is never assumed to be at index 0.
- ``sequence_number`` may be missing (March 2025 format); it is not needed.
- ``error`` comes flat (``{"type":"error","code","message"}``) or nested
  (``{"type":"error","error":{...}}``) and is usually followed by ``response.failed``; what it
  means (a context overflow, a lost chain, a quota) is read by ``bot.model.error_meaning``.
- Relays send the text only in ``response.output_text.done`` (no deltas, an empty ``output``
  in ``response.completed``), or flatten reasoning into the answer's deltas and put only the
  answer in the final ``output``: the final response's text wins, then the ``done`` texts, then
  the deltas.
- Some relays end with ``data: [DONE]`` and never send ``response.completed``; see
  :meth:`StreamAccumulator.finish`.
- Usage figures can be absurd (``1e20``, negative, strings, ``Infinity``): they are dropped,
  never allowed to break the turn (see ``normalise_usage``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bot.errors import (
    ResponseFailedError,
    ResponseIncompleteError,
    StreamProtocolError,
)
from bot.model.error_meaning import ErrorFacts, canonical_code, classify
from bot.model.types import Completed, ModelEvent, ModelResult, ReasoningDelta, TextDelta, Usage

__all__ = [
    "StreamAccumulator",
    "normalise_usage",
    "result_from_response_json",
    "text_from_output",
]

_TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete"})
_STATUS_EVENTS = {
    "completed": "response.completed",
    "failed": "response.failed",
    "incomplete": "response.incomplete",
}
# Content part types that are the answer. A refusal is what the model says instead of an answer,
# so the user should see it rather than an empty reply.
_ANSWER_PARTS = {"output_text": "text", "refusal": "refusal"}
_ANSWER_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_REASONING_DELTAS = frozenset(
    {
        "response.reasoning_summary_text.delta",  # OpenAI summaries
        "response.reasoning_text.delta",  # raw chain of thought (DeepSeek, gpt-oss)
    }
)


# No single response comes near this many tokens (the largest context windows hold a few
# million); a bigger figure is garbage, and counted it would exhaust every budget at once or
# overflow a database column.
MAX_PLAUSIBLE_TOKENS = 100_000_000


def _int(value: Any) -> int:
    """A token count, or 0 when the figure is unusable.

    Relays send null, floats or strings for counts now and then, and broken ones send 1e20,
    negative numbers or ``Infinity``: usage must never fail a turn, so such figures are
    dropped rather than clamped (a clamped garbage figure would still be charged to a budget).
    """
    if isinstance(value, bool):
        return 0
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return 0
    if not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    count = int(value)
    return count if 0 <= count <= MAX_PLAUSIBLE_TOKENS else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def normalise_usage(d: dict[str, Any] | None) -> Usage:
    """Usage in either naming: OpenAI's ``input_tokens``/``output_tokens``/``*_details`` or the
    Chat-Completions style ``prompt_tokens``/``completion_tokens``/``*_details`` of relays."""
    if not isinstance(d, dict):
        return Usage()
    if "input_tokens" in d or "output_tokens" in d:
        input_tokens = _int(d.get("input_tokens"))
        output_tokens = _int(d.get("output_tokens"))
        in_details = _dict(d.get("input_tokens_details"))
        out_details = _dict(d.get("output_tokens_details"))
    else:
        input_tokens = _int(d.get("prompt_tokens"))
        output_tokens = _int(d.get("completion_tokens"))
        in_details = _dict(d.get("prompt_tokens_details"))
        out_details = _dict(d.get("completion_tokens_details"))
    total = _int(d.get("total_tokens"))
    return Usage(
        input_tokens=input_tokens,
        # Parts of a whole: never more than the whole they belong to.
        cached_tokens=min(_int(in_details.get("cached_tokens")), input_tokens),
        output_tokens=output_tokens,
        reasoning_tokens=min(_int(out_details.get("reasoning_tokens")), output_tokens),
        total_tokens=total or input_tokens + output_tokens,
    )


def text_from_output(output: Any) -> str | None:
    """The answer text of a response's ``output`` list, chosen by item and part type.

    ``None`` when there is no ``message`` item at all (so a caller can fall back to what it
    streamed); ``""`` when there are messages without text (e.g. only function calls follow).
    """
    if not isinstance(output, list):
        return None
    texts: list[str] = []
    found = False
    for item in output:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        found = True
        for part in item.get("content") or []:
            if not isinstance(part, dict):
                continue
            key = _ANSWER_PARTS.get(str(part.get("type")))
            if key is not None and isinstance(part.get(key), str):
                texts.append(part[key])
    return "".join(texts) if found else None


def _error_facts(error: Any) -> ErrorFacts:
    """The fields of an error object, flat or nested under ``error``.

    An error object's ``type`` (e.g. ``insufficient_quota``) stands in for a missing ``code``,
    but not the ``type`` of a flat ``{"type": "error", ...}`` event, which names the event.
    """
    error = _dict(error)
    nested = error.get("error")
    if isinstance(nested, dict):
        error = nested
    elif isinstance(nested, str) and "message" not in error:
        error = {**error, "message": nested}
    error_type = error.get("type")
    if error_type in ("error", "response.error", "response.failed"):
        error_type = None
    code = error.get("code") or error_type
    message, param = error.get("message"), error.get("param")
    return ErrorFacts(
        code=str(code) if code is not None else None,
        type=str(error_type) if isinstance(error_type, str) and error_type else None,
        param=param if isinstance(param, str) and param else None,
        message=message if isinstance(message, str) and message else None,
    )


def _failed(
    facts: ErrorFacts, fallback: str, *, response_id: str | None, partial_text: str
) -> ResponseFailedError:
    """A failure inside a 200 answer, with what it means (a context overflow reported in the
    stream gets the same handling as the HTTP 400 form)."""
    meaning = classify(facts)
    return ResponseFailedError(
        facts.message or fallback,
        code=canonical_code(facts.code, meaning),
        meaning=meaning,
        response_id=response_id,
        partial_text=partial_text,
    )


def result_from_response_json(body: dict[str, Any]) -> ModelResult:
    """A non-streamed ``POST /responses`` body as a ``ModelResult``.

    Raises ``ResponseIncompleteError`` / ``ResponseFailedError`` when the body's status says so,
    and ``StreamProtocolError`` when it is not a response at all.
    """
    if not isinstance(body, dict):
        raise StreamProtocolError("the model endpoint answered with something that is not JSON")
    response_id = body.get("id")
    status = body.get("status") or "completed"
    text = text_from_output(body.get("output"))
    if text is None:
        # OpenRouter adds a top-level ``output_text``; use it only when no message item exists.
        top = body.get("output_text")
        text = top if isinstance(top, str) else ""
    if status == "failed" or (body.get("error") and "output" not in body):
        raise _failed(
            _error_facts(body.get("error")),
            "the model endpoint reported that the response failed",
            response_id=response_id if isinstance(response_id, str) else None,
            partial_text=text,
        )
    if status == "incomplete":
        reason = _dict(body.get("incomplete_details")).get("reason")
        raise ResponseIncompleteError(
            f"the response is incomplete ({reason or 'no reason given'})",
            reason=reason if isinstance(reason, str) else None,
            response_id=response_id if isinstance(response_id, str) else None,
            partial_text=text,
        )
    if not isinstance(response_id, str) or not response_id:
        raise StreamProtocolError("the model endpoint's answer has no response id")
    model = body.get("model")
    return ModelResult(
        response_id=response_id,
        text=text,
        usage=normalise_usage(body.get("usage")),
        model=model if isinstance(model, str) else None,
        status=str(status),
        output=_output_items(body.get("output")),
    )


def _output_items(output: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(output, list):
        return ()
    return tuple(item for item in output if isinstance(item, dict))


@dataclass(slots=True)
class _Item:
    type: str | None
    # content_index → streamed answer text of that part
    parts: dict[int, str] = field(default_factory=dict)
    # content_index → the part's whole text from ``response.output_text.done``
    done_parts: dict[int, str] = field(default_factory=dict)
    closed: bool = False  # ``response.output_item.done`` arrived
    done_item: dict[str, Any] | None = None  # the item as ``output_item.done`` gave it

    def text(self) -> str:
        indexes = sorted(set(self.parts) | set(self.done_parts))
        return "".join(self.done_parts.get(c, self.parts.get(c, "")) for c in indexes)

    @property
    def whole(self) -> bool:
        """Every part of it ended (its item or each part's text reported done)."""
        return self.closed or (bool(self.parts) and set(self.parts) <= set(self.done_parts))


class StreamAccumulator:
    """State machine over one stream's events.

    ``feed(event)`` returns the ``ModelEvent``s to pass on (``TextDelta``, ``ReasoningDelta``,
    finally ``Completed``) and raises ``ResponseFailedError`` / ``ResponseIncompleteError`` on the
    terminal failure events. ``finish()`` must be called when the body ends (``done_sentinel``:
    it ended with ``data: [DONE]``): it returns ``[Completed]`` for a whole answer ended by
    ``[DONE]`` alone, else raises ``StreamProtocolError`` (or ``ResponseFailedError`` after an
    ``error`` event) when no terminal event arrived. Events after the terminal one are ignored.
    """

    def __init__(self) -> None:
        self._items: dict[int, _Item] = {}
        self._error: ErrorFacts | None = None
        # A delta without an output_index: the stream does not say which item it belongs to
        # (a relay that flattens everything into one text), so per-item ``done`` texts cannot
        # be lined up with it.
        self._unindexed = False
        self.response_id: str | None = None
        self.model: str | None = None
        self.result: ModelResult | None = None
        self.done = False

    @property
    def streamed_text(self) -> str:
        """The answer text from the deltas so far, in output/content order."""
        return "".join(
            item.parts[c]
            for i in sorted(self._items)
            if (item := self._items[i]).type in (None, "message")
            for c in sorted(item.parts)
        )

    @property
    def partial_text(self) -> str:
        return self.streamed_text

    @property
    def assembled_text(self) -> str:
        """The answer as the stream told it: each part's ``done`` text where one arrived (the
        part's whole text), else its deltas."""
        if self._unindexed:
            return self.streamed_text
        return "".join(
            item.text()
            for i in sorted(self._items)
            if (item := self._items[i]).type in (None, "message")
        )

    def feed(self, event: dict[str, Any]) -> list[ModelEvent]:
        if self.done:
            return []
        kind = event.get("type")
        if not isinstance(kind, str):
            if event.get("object") == "response" and event.get("status") in _STATUS_EVENTS:
                # A relay's bare final response object as the last frame.
                return self._terminal(_STATUS_EVENTS[event["status"]], event)
            if "error" in event:  # a relay's bare ``{"error": {...}}`` frame
                kind = "error"
            else:
                return []
        if kind in _ANSWER_DELTAS:
            return self._answer_delta(event)
        if kind in _REASONING_DELTAS:
            delta = event.get("delta")
            return [ReasoningDelta(delta)] if isinstance(delta, str) and delta else []
        if kind == "response.output_text.done" or kind == "response.refusal.done":
            return self._answer_done(event, "text" if kind.endswith("text.done") else "refusal")
        if kind == "response.output_item.added" or kind == "response.output_item.done":
            self._item_seen(event, closed=kind.endswith(".done"))
        elif kind == "response.created" or kind == "response.in_progress":
            self._note_response(_dict(event.get("response")))
        elif kind == "error" or kind == "response.error":
            self._error = _error_facts(event)
        elif kind in _TERMINAL:
            return self._terminal(kind, _dict(event.get("response")))
        # Everything else (content_part.*, annotations, function-call arguments, web-search
        # progress, future event types) carries no answer text we need.
        return []

    def finish(self, *, done_sentinel: bool = False) -> list[ModelEvent]:
        """The body ended. Returns ``[Completed]`` or raises unless a terminal event was seen.

        ``[DONE]`` without ``response.completed`` counts as completed only when the answer is
        whole: the response has an id, an ``error`` event did not come first, and every message
        item that carried text was closed (``output_item.done``, or ``output_text.done`` for each
        of its parts). ``[DONE]`` is the server's own end-of-stream mark, not a broken
        connection, and the done events carry each part's final text, so nothing is missing;
        relays that translate from Chat Completions end this way. Usage is then unknown (zero).
        Anything less is a stream that broke off.
        """
        if self.done:
            return []
        self.done = True
        if self._error is not None:
            raise _failed(
                self._error,
                "the model endpoint reported an error in the stream",
                response_id=self.response_id,
                partial_text=self.partial_text,
            )
        if done_sentinel and self._whole():
            assert self.response_id is not None
            self.result = ModelResult(
                response_id=self.response_id,
                text=self.assembled_text,
                usage=Usage(),
                model=self.model,
                status="completed",
                output=self._done_items(),
            )
            return [Completed(self.result)]
        raise StreamProtocolError(
            "the stream ended before the response was complete",
            code="stream_interrupted",
            response_id=self.response_id,
            partial_text=self.partial_text,
        )

    def _whole(self) -> bool:
        answers = [
            item
            for item in self._items.values()
            if item.type in (None, "message") and (item.parts or item.done_parts)
        ]
        return (
            self.response_id is not None
            and bool(answers)
            and not self._unindexed
            and all(item.whole or (not item.parts and item.done_parts) for item in answers)
        )

    def _note_response(self, response: dict[str, Any]) -> None:
        rid, model = response.get("id"), response.get("model")
        if isinstance(rid, str) and rid:
            self.response_id = rid
        if isinstance(model, str) and model:
            self.model = model

    def _item_seen(self, event: dict[str, Any], *, closed: bool) -> None:
        index = event.get("output_index")
        item_type = _dict(event.get("item")).get("type")
        if isinstance(index, int):
            item = self._items.setdefault(index, _Item(type=None))
            if isinstance(item_type, str):
                item.type = item_type
            if closed:
                item.closed = True
                raw = event.get("item")
                if isinstance(raw, dict):
                    item.done_item = raw

    def _done_items(self) -> tuple[dict[str, Any], ...]:
        """The output items as their ``output_item.done`` events gave them, in output order:
        the output of a relay whose final response leaves ``output`` empty."""
        return tuple(
            done for i in sorted(self._items) if (done := self._items[i].done_item) is not None
        )

    def _answer_delta(self, event: dict[str, Any]) -> list[ModelEvent]:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        index = event.get("output_index")
        if not isinstance(index, int):
            self._unindexed = True
            index = 0
        item = self._items.setdefault(index, _Item(type=None))
        if item.type not in (None, "message"):
            return []  # text deltas inside a non-message item are not the answer
        content = event.get("content_index")
        content = content if isinstance(content, int) else 0
        item.parts[content] = item.parts.get(content, "") + delta
        return [TextDelta(delta)]

    def _answer_done(self, event: dict[str, Any], key: str) -> list[ModelEvent]:
        """``output_text.done`` holds a part's whole text: a source of text in its own right
        (some relays send the text only here)."""
        text = event.get(key)
        index = event.get("output_index")
        if not isinstance(text, str) or not isinstance(index, int) or self._unindexed:
            return []
        item = self._items.setdefault(index, _Item(type=None))
        if item.type not in (None, "message"):
            return []
        content = event.get("content_index")
        content = content if isinstance(content, int) else 0
        item.done_parts[content] = text
        if content not in item.parts and text:
            # Nothing of this part was streamed: show it now, as one piece.
            item.parts[content] = text
            return [TextDelta(text)]
        return []

    def _terminal(self, kind: str, response: dict[str, Any]) -> list[ModelEvent]:
        self.done = True
        self._note_response(response)
        # The terminal response's own output is the authority (a relay may have streamed
        # reasoning as answer text); a relay that sends an empty or skeletal output (a message
        # without text) must not wipe out what the stream said.
        final = text_from_output(response.get("output"))
        text = final if final else self.assembled_text
        if kind == "response.failed":
            facts = _error_facts(response.get("error"))
            if facts.code is None and facts.message is None and self._error is not None:
                facts = self._error
            raise _failed(
                facts,
                "the model endpoint reported that the response failed",
                response_id=self.response_id,
                partial_text=text,
            )
        if kind == "response.incomplete":
            reason = _dict(response.get("incomplete_details")).get("reason")
            raise ResponseIncompleteError(
                f"the response is incomplete ({reason or 'no reason given'})",
                reason=reason if isinstance(reason, str) else None,
                response_id=self.response_id,
                partial_text=text,
            )
        if self.response_id is None:
            raise StreamProtocolError(
                "the stream completed without a response id", partial_text=text
            )
        # The final response's output is the authority; a relay that leaves it empty still
        # sent each item whole in its ``output_item.done`` (function calls included).
        output = _output_items(response.get("output")) or self._done_items()
        self.result = ModelResult(
            response_id=self.response_id,
            text=text,
            usage=normalise_usage(response.get("usage")),
            model=self.model,
            status="completed",
            output=output,
        )
        return [Completed(self.result)]
