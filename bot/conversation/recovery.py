"""A thread is never stuck on a chain the endpoint lost or ignored.

- **Lost chain** (however a relay words it), or a chained call refused with a 4xx that names
  nothing else, before any text was shown: the conversation is re-sent once from the
  transcript without ``previous_response_id`` on a fresh chain, and a head that failed as lost
  is dropped so it is never sent again (:func:`resend_reason`, :meth:`Recovery.resend`).
- **Ignored chain**: a chained turn billed for far less input than its history holds did not
  get it (:func:`continuity_broken`); the endpoint+model switches to transcripts and the turn
  is answered again from the transcript (:meth:`Recovery.check_continuity`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.conversation.capabilities import EndpointCapabilities
from bot.conversation.history import History
from bot.conversation.notes import RESEND_FAILED_NOTE, RESENT_NOTE
from bot.conversation.ports import ConversationStore, ModelClient, TranscriptStore
from bot.conversation.reply import Attempt
from bot.conversation.request import RunningTurn
from bot.errors import ErrorMeaning, ModelError, ModelHTTPError, ResponseFailedError
from bot.i18n import t
from bot.model.error_meaning import is_vague_code
from bot.model.types import ModelResult, ResponseRequest, Usage
from storage.records import ResponseUsage

__all__ = ["Recovery", "continuity_broken", "resend_reason"]

logger = logging.getLogger(__name__)

# Continuity: a chained turn's input normally holds the previous turn's input and visible
# output. Below these margins it clearly did not get its history.
_MIN_MISSING_TOKENS = 32
_MIN_MISSING_SHARE = 0.2


def resend_reason(exc: ModelError, attempt: Attempt, request: ResponseRequest) -> str | None:
    """Why a failed chained call is worth sending once more without ``previous_response_id``
    (None: it is not). Only before any text was shown, and only when the failure is a lost
    chain (however worded, HTTP or in-stream) or a refusal that names nothing else: a 4xx, or
    an in-stream failure without a telling code. Auth, quota, unknown model, rate limits, bad
    settings and context length are clearly something else."""
    if attempt.answer_started or not request.previous_response_id:
        return None
    if exc.meaning is ErrorMeaning.LOST_CHAIN:
        return "lost_chain"
    if exc.meaning is not ErrorMeaning.UNKNOWN:
        return None
    if isinstance(exc, ModelHTTPError):
        refused = 400 <= exc.status_code <= 499 and exc.status_code not in (408, 409, 429)
        return "refused" if refused else None
    if isinstance(exc, ResponseFailedError) and is_vague_code(exc.code):
        return "refused"
    return None


def continuity_broken(previous: ResponseUsage | None, usage: Usage, *, model: str) -> bool:
    """Whether a chained turn clearly did not get its history.

    A conforming endpoint bills a chained turn for the whole conversation: at least the
    previous turn's input plus its output (reasoning tokens excepted: reasoning items are not
    carried into later turns). An input clearly smaller than that means the endpoint answered
    without the chain. Not judged when a figure is unknown (zero) or the model changed (another
    tokenizer). Some relays count cached tokens apart from ``input_tokens`` (Anthropic-style);
    cached tokens larger than the input can only mean that, so they are added back.
    """
    if previous is None or previous.model != model:
        return False
    if previous.input_tokens <= 0 or usage.input_tokens <= 0:
        return False
    expected = previous.input_tokens + max(previous.output_tokens - previous.reasoning_tokens, 0)
    seen = usage.input_tokens
    if usage.cached_tokens > usage.input_tokens:
        seen += usage.cached_tokens
    missing = expected - seen
    return missing >= max(_MIN_MISSING_TOKENS, _MIN_MISSING_SHARE * expected)


class Recovery:
    """Re-sends a turn from the transcript when its chain was lost, refused or ignored."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        model: ModelClient,
        history: History,
        transcripts: TranscriptStore | None,
        capabilities: EndpointCapabilities | None,
        on_recovery: Callable[[str], None] | None,
    ) -> None:
        self._store = store
        self._model = model
        self._history = history
        self._transcripts = transcripts
        self._capabilities = capabilities
        self._on_recovery = on_recovery

    async def resend(
        self, reason: str, running: RunningTurn, refused: ResponseRequest, attempt: Attempt
    ) -> tuple[Attempt, ModelResult]:
        """The chained call was refused before any text: send the conversation once more,
        from the transcript, without ``previous_response_id``, on a fresh chain."""
        logger.info(
            "the endpoint refused the chain (%s); re-sending the conversation",
            reason,
            extra=dict(running.log_extra),
        )
        if self._on_recovery is not None:
            self._on_recovery(reason)
        turn = running.turn
        if reason == "lost_chain" and self._transcripts is not None:
            # The endpoint does not know this head: never send it again, even if the re-send
            # below fails too.
            assert refused.previous_response_id is not None
            await self._transcripts.forget_head(
                thread_id=turn.thread_id, response_id=refused.previous_response_id
            )
        earlier = await self._history.earlier(running.message, turn)
        request = running.request(earlier + list(running.current.items), None)
        await self._store.restart_chain(turn_id=turn.turn_id, previous_response_id=None)
        attempt = Attempt(attempt.sink, attempt.prefix)
        return attempt, await attempt.run(self._model, request)

    async def check_continuity(
        self,
        running: RunningTurn,
        request: ResponseRequest,
        attempt: Attempt,
        result: ModelResult,
    ) -> tuple[Attempt, ModelResult]:
        """A chained turn billed for far less input than its history holds was answered
        without the chain: switch the endpoint+model to transcripts and answer again from the
        transcript (the streamed answer is replaced, with a note once per thread)."""
        previous = request.previous_response_id
        if previous is None or self._transcripts is None or self._capabilities is None:
            return attempt, result
        turn = running.turn
        before = await self._transcripts.usage_of_response(
            thread_id=turn.thread_id, response_id=previous
        )
        if not continuity_broken(before, result.usage, model=request.model):
            return attempt, result
        assert before is not None
        log_extra = dict(running.log_extra)
        logger.warning(
            "a chained turn did not get its history (input %d tokens, history %d)",
            result.usage.input_tokens,
            before.input_tokens + before.output_tokens,
            extra=log_extra,
        )
        await self._capabilities.mark_ignored(
            request.model,
            source="continuity",
            detail="a chained turn was billed for less input than its history",
        )
        self._capabilities.probe_soon(request.model, source="probe")
        if self._on_recovery is not None:
            self._on_recovery("continuity")
        if (running.settings.conversation_state or "auto") == "chain":
            return attempt, result  # the operator chose chains: recorded, not acted on
        earlier = await self._history.earlier(running.message, turn)
        if not earlier:
            return attempt, result
        prefix = attempt.prefix
        if await self._transcripts.note_once(thread_id=turn.thread_id, kind="context_resent"):
            prefix += f"_{t(RESENT_NOTE)}_\n\n"
        again = Attempt(attempt.sink, prefix, quiet=True)
        again.first_token_at = attempt.first_token_at
        try:
            second = await again.run(
                self._model, running.request(earlier + list(running.current.items), None)
            )
        except ModelError as exc:
            logger.warning(
                "answering again with the earlier messages failed: %s", exc.code, extra=log_extra
            )
            attempt.suffix = "\n\n" + t(RESEND_FAILED_NOTE)
            return attempt, result
        await self._store.restart_chain(turn_id=turn.turn_id, previous_response_id=None)
        return again, second
