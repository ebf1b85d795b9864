"""The Responses request of a turn: the channel's settings, the input, the chain, and the ids
that must never reveal who asked (safety identifier) or leak across threads (cache key)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.channel_settings import EffectiveSettings
from bot.conversation.ports import IncomingMessage, TurnInput
from bot.model.types import ResponseRequest
from bot.text_safety import scrub
from storage.records import TurnStart

__all__ = ["RunningTurn", "build_request", "cache_key", "safety_identifier"]


def build_request(
    settings: EffectiveSettings,
    items: list[dict[str, Any]],
    previous_response_id: str | None,
    message: IncomingMessage,
    *,
    identity_salt: str,
    tools: list[dict[str, Any]] | None = None,
) -> ResponseRequest:
    # Instructions are not carried over by previous_response_id: send them on every turn.
    return ResponseRequest(
        safety_identifier=safety_identifier(identity_salt, message),
        prompt_cache_key=cache_key(message),
        model=settings.model,
        # Text from any source (history, file names) that no encoder takes is replaced.
        input=scrub(items),
        instructions=settings.instructions,
        previous_response_id=previous_response_id,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_output_tokens=settings.max_output_tokens,
        reasoning_effort=settings.reasoning_effort,
        reasoning_summary=bool(settings.reasoning_summary),
        truncation=settings.truncation or "auto",
        metadata={
            "slack_team": message.team_id,
            "slack_channel": message.channel_id,
            "slack_thread": message.thread_ts,
        },
        # MCP function tools and hosted tools, sent on every round (not carried by the chain).
        tools=tools,
    )


def cache_key(message: IncomingMessage) -> str:
    """One prompt cache key per thread: its turns share the longest prefix."""
    return _digest(f"{message.team_id}:{message.channel_id}:{message.thread_ts}")


def safety_identifier(salt: str, message: IncomingMessage) -> str:
    """Stable per person, different across people, never the raw Slack ids."""
    key = f"{message.team_id}:{message.user_id}".encode()
    return "u_" + hmac.new(salt.encode(), key, hashlib.sha256).hexdigest()[:40]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class RunningTurn:
    """One admitted turn while it runs: what it answers, with which settings, and the input
    of its message (what a re-send needs to build its request again)."""

    message: IncomingMessage
    settings: EffectiveSettings
    turn: TurnStart
    current: TurnInput
    identity_salt: str
    log_extra: Mapping[str, Any]
    tools: list[dict[str, Any]] | None = None

    def request(self, items: list[dict[str, Any]], previous: str | None) -> ResponseRequest:
        return build_request(
            self.settings,
            items,
            previous,
            self.message,
            identity_salt=self.identity_salt,
            tools=self.tools,
        )
