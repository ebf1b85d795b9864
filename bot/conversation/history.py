"""A thread's earlier messages: whether the turn continues the chain (``previous_response_id``)
or sends them itself, and the service's own transcript they come from.

**Modes.** ``chain`` sends ``previous_response_id``; ``transcript`` sends the thread's earlier
messages itself (from the service's own transcript, newest kept first within the budget);
``auto`` chains until the endpoint is found to ignore chains for that model
(``bot.conversation.capabilities``), then sends transcripts. Set by ``CONVERSATION_STATE`` and
per channel (``conversation_state``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bot.channel_settings import EffectiveSettings
from bot.conversation.capabilities import EndpointCapabilities
from bot.conversation.ports import ContextSource, IncomingMessage, TranscriptStore, TurnInput
from storage.errors import StorageError
from storage.records import TranscriptRecord, TurnStart

__all__ = ["FILE_CHARS", "History", "item_text", "select_transcript"]

logger = logging.getLogger(__name__)

# A file in a re-sent message costs the model about as much as a page of text.
FILE_CHARS = 1_000

Items = list[dict[str, Any]]


class History:
    """The earlier messages of a thread for a turn, and what the turn adds to its transcript.

    Without a transcript store (unit wiring) the Slack thread is read instead."""

    def __init__(
        self,
        *,
        context: ContextSource,
        transcripts: TranscriptStore | None,
        capabilities: EndpointCapabilities | None,
        transcript_chars: int,
    ) -> None:
        self._context = context
        self._transcripts = transcripts
        self._capabilities = capabilities
        self._transcript_chars = transcript_chars

    async def plan(
        self,
        message: IncomingMessage,
        settings: EffectiveSettings,
        turn: TurnStart,
        current: TurnInput,
    ) -> tuple[Items, str | None]:
        """The turn's input items and the ``previous_response_id`` to send (None: the earlier
        messages are sent in the input instead). The message goes into the transcript."""
        previous = turn.previous_response_id
        earlier: Items = []
        transcript_mode = await self.transcript_mode(settings)
        if transcript_mode or (previous is None and message.ts != message.thread_ts):
            # Transcript mode; or a thread joined mid-way, one whose earlier turns all failed,
            # or one whose lost head was dropped: the earlier messages go in the input.
            earlier = await self.earlier(message, turn)
            previous = None
        await self._remember_question(message, turn, current)
        return earlier + list(current.items), previous

    async def transcript_mode(self, settings: EffectiveSettings) -> bool:
        mode = settings.conversation_state or "auto"
        if mode == "transcript":
            return True
        if mode == "chain" or self._capabilities is None:
            return False
        return await self._capabilities.chains_ignored(settings.model)

    async def earlier(self, message: IncomingMessage, turn: TurnStart) -> Items:
        """The thread's earlier messages as input items: from the service's own transcript
        (newest kept first within the budget), else, for a thread joined mid-way or one from
        before transcripts were kept, read from Slack once and kept from then on."""
        if self._transcripts is not None:
            entries = await self._transcripts.entries(
                thread_id=turn.thread_id, before_turn_id=turn.turn_id
            )
            if entries:
                chosen = select_transcript(entries, self._transcript_chars)
                return list((await self._context.replay(message, chosen)).items)
        if message.ts == message.thread_ts:
            return []  # the message opened the thread: nothing came before it
        earlier = await self._context.earlier(message)
        if self._transcripts is not None and earlier.items:
            await self._transcripts.add_entries(
                thread_id=turn.thread_id,
                turn_id=turn.turn_id,
                entries=[
                    (
                        "assistant" if item.get("role") == "assistant" else "user",
                        None,
                        item_text(item),
                        (),
                    )
                    for item in earlier.items
                ],
            )
        return list(earlier.items)

    async def remember_answer(
        self, turn: TurnStart, text: str, log_extra: Mapping[str, Any]
    ) -> None:
        """Keep a delivered answer in the transcript; a failure here never fails the turn."""
        if self._transcripts is None:
            return
        try:
            await self._transcripts.add_entries(
                thread_id=turn.thread_id,
                turn_id=turn.turn_id,
                entries=[("assistant", None, text, ())],
            )
        except StorageError as exc:
            # The answer is delivered and its turn completed: a missing transcript entry only
            # costs a later re-send this answer, never the turn.
            logger.warning(
                "could not keep the answer in the transcript: %s",
                type(exc).__name__,
                extra=dict(log_extra),
            )

    async def _remember_question(
        self, message: IncomingMessage, turn: TurnStart, current: TurnInput
    ) -> None:
        """Keep the message as the model gets it (text with its author's name, attachments as
        Slack file descriptors) in the thread's transcript. Never logged."""
        if self._transcripts is None:
            return
        text = "\n".join(_message_text(item) for item in current.items)
        await self._transcripts.add_entries(
            thread_id=turn.thread_id,
            turn_id=turn.turn_id,
            entries=[("user", message.user_id, text, message.files)],
        )


def entry_size(entry: TranscriptRecord) -> int:
    return len(entry.text) + FILE_CHARS * len(entry.files)


def select_transcript(entries: Sequence[TranscriptRecord], budget: int) -> list[TranscriptRecord]:
    """The newest entries that fit in ``budget`` characters, oldest first; the newest one is
    always kept, and the kept part never starts with an answer whose question was dropped."""
    kept: list[TranscriptRecord] = []
    used = 0
    for entry in reversed(entries):
        size = entry_size(entry)
        if kept and used + size > budget:
            break
        kept.append(entry)
        used += size
    kept.reverse()
    while len(kept) > 1 and kept[0].role == "assistant":
        kept.pop(0)
    return kept


def item_text(item: Mapping[str, Any]) -> str:
    """The text of a Responses input item (string content or its text parts)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text"))
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _message_text(item: Mapping[str, Any]) -> str:
    """The message's own text in an input item (string content, or its first text part; the
    other parts are attachments, kept as file descriptors)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        first = content[0]
        if isinstance(first, Mapping) and first.get("type") == "input_text":
            return str(first.get("text") or "")
    return ""
