"""The tool round, as pure data: which calls the model asked for, and what goes back.

Given the ``output`` items of a completed Responses result, ``plan_round`` picks out the
``function_call`` items and parses their arguments. A call whose arguments are not a JSON object
is not run: it is answered at once with an error output, so the model can correct itself. After
the calls ran, ``ToolRound.input_items(outputs)`` builds the ``function_call_output`` items of
the next request, one per call in the model's order (sent with ``previous_response_id``), and
``ToolRound.call_items()`` gives the calls themselves for transcript mode, where the request must
carry them before their outputs.

No I/O, no SDK or conversation types: plain mappings in, plain dicts out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FunctionCall",
    "ToolRound",
    "function_call_output",
    "plan_round",
]

# Arguments larger than this are not parsed: no tool needs them, and parsing is unbounded work.
_MAX_ARGUMENTS_CHARS = 1_000_000
_MISSING_OUTPUT = "Error: the tool call was not run."


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """One ``function_call`` item of the model's output."""

    call_id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None
    """The parsed arguments; ``None`` when they are unusable (see ``error``)."""
    error: str | None = None
    """The output to send instead of running the call, when the arguments are unusable."""

    @property
    def runnable(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ToolRound:
    """The calls of one model response, in the model's order."""

    calls: tuple[FunctionCall, ...] = ()

    @property
    def has_calls(self) -> bool:
        return bool(self.calls)

    @property
    def runnable(self) -> tuple[FunctionCall, ...]:
        """The calls to run (the others already have their error output)."""
        return tuple(call for call in self.calls if call.runnable)

    def input_items(self, outputs: Mapping[str, str]) -> list[dict[str, Any]]:
        """``function_call_output`` items for every call: ``outputs[call_id]`` for runnable
        calls, the argument error for the others. A call with no output gets an error output,
        because the endpoint refuses a request that leaves a call unanswered."""
        items: list[dict[str, Any]] = []
        for call in self.calls:
            if call.error is not None:
                text = call.error
            else:
                text = outputs.get(call.call_id, _MISSING_OUTPUT)
            items.append(function_call_output(call.call_id, text))
        return items

    def call_items(self) -> list[dict[str, Any]]:
        """The ``function_call`` items themselves, as input items (transcript mode)."""
        return [
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.raw_arguments,
            }
            for call in self.calls
        ]


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def plan_round(output: Sequence[Mapping[str, Any]] | None) -> ToolRound:
    """The function calls in a response's ``output`` items (other item types are ignored).

    Items without a ``call_id`` cannot be answered and are skipped; a repeated ``call_id`` is
    taken once (two outputs for one call would be refused).
    """
    calls: list[FunctionCall] = []
    seen: set[str] = set()
    for item in output or ():
        if not isinstance(item, Mapping) or item.get("type") != "function_call":
            continue
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id or call_id in seen:
            continue
        seen.add(call_id)
        name = item.get("name")
        raw = item.get("arguments")
        calls.append(
            _parse(call_id, name if isinstance(name, str) else "", raw if raw is not None else "")
        )
    return ToolRound(calls=tuple(calls))


def _parse(call_id: str, name: str, raw: Any) -> FunctionCall:
    # Some endpoints send the arguments already decoded; accept an object as is.
    if isinstance(raw, Mapping):
        text = json.dumps(raw, ensure_ascii=False, default=str)
    else:
        text = str(raw)
    if not name:
        return FunctionCall(call_id, name, text, None, "Error: the function call has no name.")
    if isinstance(raw, Mapping):
        return FunctionCall(call_id, name, text, dict(raw))
    if len(text) > _MAX_ARGUMENTS_CHARS:
        return FunctionCall(
            call_id, name, text, None, "Error: the arguments are too large; the tool was not run."
        )
    if not text.strip():
        # An empty string is how some models call a tool that takes no parameters.
        return FunctionCall(call_id, name, text, {})
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return FunctionCall(
            call_id,
            name,
            text,
            None,
            f"Error: the arguments are not valid JSON ({detail}); the tool was not run. "
            "Call it again with a JSON object.",
        )
    if not isinstance(value, dict):
        return FunctionCall(
            call_id,
            name,
            text,
            None,
            f"Error: the arguments must be a JSON object, not {_json_kind(value)}; "
            "the tool was not run.",
        )
    return FunctionCall(call_id, name, text, value)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
