"""Cheap checks of what an endpoint does with a model: keeps chains, accepts tools, streams.

Each is one tiny call (16 output tokens at most, ``store: false``). Used by ``doctor`` and, for
chains, by the service at start-up and after a suspicious turn
(``bot.conversation.capabilities``).
"""

from __future__ import annotations

import uuid
from contextlib import aclosing
from typing import Any

from bot.errors import ErrorMeaning, ModelError, ModelHTTPError, ResponseIncompleteError
from bot.model.client import ResponsesClient
from bot.model.types import ChainCheck, Completed, ResponseRequest

__all__ = ["check_chains", "check_streaming", "check_tools", "made_up_response_id"]

_PROMPT = "Reply with the single word OK."

# A trivial function tool: any endpoint that supports function calling accepts it.
PROBE_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "current_time",
    "description": "Returns the current time.",
    "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
}


def made_up_response_id() -> str:
    """An id shaped like OpenAI's that no endpoint issued."""
    return "resp_" + uuid.uuid4().hex + uuid.uuid4().hex[:16]


def _request(
    model: str,
    *,
    previous_response_id: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> ResponseRequest:
    return ResponseRequest(
        model=model,
        input=_PROMPT,
        max_output_tokens=16,
        truncation=None,
        store=False,
        previous_response_id=previous_response_id,
        tools=tools,
    )


async def check_chains(client: ResponsesClient, model: str) -> ChainCheck:
    """Send a made-up ``previous_response_id``: a conforming endpoint refuses it (it keeps
    chains); one that answers would also answer a chain it forgot, without its history."""
    try:
        await client.create(_request(model, previous_response_id=made_up_response_id()))
    except ResponseIncompleteError:
        return ChainCheck("ignored", "it answered a made-up previous_response_id")
    except ModelError as exc:
        if exc.meaning is ErrorMeaning.LOST_CHAIN:
            return ChainCheck("kept", "it refuses an unknown previous_response_id")
        return ChainCheck("unknown", f"the check call failed ({exc.code})")
    return ChainCheck("ignored", "it answered a made-up previous_response_id")


async def check_tools(
    client: ResponsesClient, model: str, tools: list[dict[str, Any]] | None = None
) -> bool | None:
    """Whether a request with ``tools`` (default: one function tool) is accepted (None: the
    call failed for another reason, e.g. a rate limit). One small request; ``doctor`` asks it
    for each hosted tool a channel enabled."""
    try:
        await client.create(_request(model, tools=tools or [PROBE_TOOL]))
    except ResponseIncompleteError:
        return True
    except ModelHTTPError as exc:
        refused = (ErrorMeaning.BAD_SETTING, ErrorMeaning.UNSUPPORTED_TOOL, ErrorMeaning.UNKNOWN)
        if exc.meaning in refused and (400 <= exc.status_code <= 499):
            return False
        return None
    except ModelError:
        return None
    return True


async def check_streaming(client: ResponsesClient, model: str) -> bool:
    """Whether a streamed call ends with a complete answer (what every turn uses)."""
    try:
        async with aclosing(client.stream(_request(model))) as events:
            async for event in events:
                if isinstance(event, Completed):
                    return True
    except ResponseIncompleteError:
        return True  # it streamed until the 16-token cap: that is streaming working
    except ModelError:
        return False
    return False
