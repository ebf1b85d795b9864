"""What reaches the reply sink: one model call's stream as it arrives, and notes told."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from bot.conversation.ports import ModelClient, ReplySink
from bot.errors import DeliveryError, ModelError
from bot.i18n import t
from bot.model.types import (
    Completed,
    ModelEvent,
    ModelResult,
    ReasoningDelta,
    ResponseRequest,
    TextDelta,
)

__all__ = ["Attempt", "tell"]

logger = logging.getLogger(__name__)


class Attempt:
    """Collects one model call's stream into the sink and remembers what arrived."""

    def __init__(self, sink: ReplySink, prefix: str = "", *, quiet: bool = False) -> None:
        self.sink = sink
        self.prefix = prefix  # notices shown before the answer (e.g. an unreadable file)
        # Quiet: collect the answer without showing it as it streams (a turn answered again;
        # the sink's finish() replaces what the user saw).
        self.quiet = quiet
        self.suffix = ""  # a note after the answer
        self.text_parts: list[str] = []
        self.answer_started = False
        self.first_token_at: datetime | None = None
        self.result: ModelResult | None = None
        self.request: ResponseRequest | None = None  # the last request run (tool rounds)
        self._separate = False  # a later tool round's text starts a new paragraph

    @property
    def partial_text(self) -> str:
        return "".join(self.text_parts)

    @property
    def final_text(self) -> str:
        """What the thread finally holds: notices, the answer, a note after it."""
        assert self.result is not None
        return self.prefix + self.result.text + self.suffix

    def next_round(self) -> None:
        """The next call continues the same answer (a tool round): its text, if any, comes
        after a blank line, as the turn's final text joins the rounds."""
        self._separate = any(part != self.prefix for part in self.text_parts)

    async def run(self, model: ModelClient, request: ResponseRequest) -> ModelResult:
        self.request = request
        # aclosing: when the sink raises (the user stopped the answer), the model stream is
        # closed at once, which closes the upstream request instead of letting it run on.
        async with aclosing(model.stream(request)) as events:
            async for event in events:
                await self._handle(event)
        if self.result is None:  # the client raises first; this guards a broken client
            raise ModelError("the model stream ended without a result", code="no_result")
        return self.result

    async def _handle(self, event: ModelEvent) -> None:
        if isinstance(event, TextDelta):
            if self.first_token_at is None:
                self.first_token_at = datetime.now(UTC)
            if not self.answer_started:
                self.answer_started = True
                if self.prefix:
                    self.text_parts.append(self.prefix)
                    if not self.quiet:
                        await self.sink.delta(self.prefix)
            text = event.text
            if self._separate:
                self._separate = False
                text = "\n\n" + text
            self.text_parts.append(text)
            if not self.quiet:
                await self.sink.delta(text)
        elif isinstance(event, ReasoningDelta):
            if not self.quiet:
                await self.sink.reasoning()
        elif isinstance(event, Completed):
            self.result = event.result


async def tell(
    sink: ReplySink, notice: str, partial_text: str = "", log_extra: Mapping[str, Any] | None = None
) -> None:
    """End the thread's reply with ``notice`` (after any ``partial_text`` already shown);
    a Slack refusal is logged, never raised: the turn's outcome is decided already.
    ``notice`` is a catalogue text (``bot.i18n``), told in the reader's language, or a
    sentence already in it."""
    try:
        await sink.fail(t(notice), partial_text)
    except DeliveryError as exc:
        logger.error(
            "could not tell the thread about a failure: %s", exc.code, extra=dict(log_extra or {})
        )
