"""One guarantee: reading what the model sees fails only as ``ContextError``.

Slack can refuse ``conversations.replies`` (``not_in_channel``, ``missing_scope``), be
unreachable, or the workspace can be uninstalled while a message waits; the conversation layer
then closes the turn with a note instead of leaving it pending. The translation itself is
``bot.slack.failures.reading_context``; anything else is a bug of ours and stays what it is
(the turn reports an internal error).
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.conversation import ContextSource, IncomingMessage, TurnInput
from bot.slack.failures import reading_context
from storage.conversation_state import TranscriptRecord

__all__ = ["GuardedContext"]


class GuardedContext:
    def __init__(self, inner: ContextSource) -> None:
        self._inner = inner

    async def current(self, message: IncomingMessage) -> TurnInput:
        with reading_context():
            return await self._inner.current(message)

    async def earlier(self, message: IncomingMessage) -> TurnInput:
        with reading_context():
            return await self._inner.earlier(message)

    async def replay(
        self, message: IncomingMessage, entries: Sequence[TranscriptRecord]
    ) -> TurnInput:
        with reading_context():
            return await self._inner.replay(message, entries)
