"""Plain data that crosses between the conversation core and the model client.

No httpx or wire types here: the core builds a ``ResponseRequest`` and consumes ``ModelEvent``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ChainCheck",
    "Completed",
    "ModelEvent",
    "ModelResult",
    "ReasoningDelta",
    "ResponseRequest",
    "TextDelta",
    "Usage",
]

InputItems = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    """One ``POST /responses`` call, before it is turned into a JSON body.

    ``None`` means "leave it to the endpoint" and is not sent.
    """

    model: str
    input: str | InputItems
    instructions: str | None = None
    previous_response_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    reasoning_effort: str | None = None
    reasoning_summary: bool = False
    truncation: str | None = "auto"
    metadata: dict[str, str] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    store: bool = True
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | None = None
    """``"none"`` forbids tool calls (the last round of a turn); ``None`` leaves it to the
    endpoint (``auto`` when ``tools`` are sent)."""

    def to_body(self, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": self.input, "stream": stream}
        # ``store`` must be true for previous_response_id to work on the next turn.
        body["store"] = self.store
        optional: dict[str, Any] = {
            "instructions": self.instructions,
            "previous_response_id": self.previous_response_id,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "truncation": self.truncation,
            "metadata": self.metadata,
            "safety_identifier": self.safety_identifier,
            "prompt_cache_key": self.prompt_cache_key,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        reasoning: dict[str, str] = {}
        if self.reasoning_effort is not None:
            reasoning["effort"] = self.reasoning_effort
        if self.reasoning_summary:
            reasoning["summary"] = "auto"
        if reasoning:
            body["reasoning"] = reasoning
        return body


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, normalised from either naming style.

    OpenAI: ``input_tokens``/``output_tokens`` with ``input_tokens_details.cached_tokens`` and
    ``output_tokens_details.reasoning_tokens``; the seed relay: ``prompt_tokens``/
    ``completion_tokens`` with ``prompt_tokens_details``/``completion_tokens_details``.
    """

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ModelResult:
    """A finished answer: the response id to chain on, the answer text, the usage, and the
    response's ``output`` items (what the tool loop reads its function calls from)."""

    response_id: str
    text: str
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    status: str = "completed"
    output: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of answer text (only from ``message`` items, never reasoning)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """The model is reasoning; ``text`` is summary/reasoning text, never part of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The terminal event of a successful stream."""

    result: ModelResult


ModelEvent = TextDelta | ReasoningDelta | Completed


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What a chain probe found (``bot.model.probe``): whether the endpoint keeps
    ``previous_response_id`` chains for a model, and a short plain-words ``detail`` for
    operators. The core stores it per endpoint+model (``bot.conversation.capabilities``)."""

    chains: Literal["kept", "ignored", "unknown"]
    detail: str
