"""One admitted turn: build the input, stream the model's answer into the reply, and close the
turn exactly once.

The chain head moves only when Slack holds the whole answer (``complete_turn``). Every other
ending closes the turn with its status and leaves the head at the last good response: a model
failure (the thread gets a plain sentence after any partial text), a stop by the user (the
partial answer stays, with a note), Slack refusing the reply (``undelivered``), an input Slack
would not give (``failed`` with the source's code), a shutdown past its grace (a note, then the
cancellation goes on), or a bug of ours (a note first, in case the database is what failed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from bot.channel_settings import EffectiveSettings
from bot.conversation.history import History
from bot.conversation.notes import ROUND_LIMIT_NOTE, SHUTDOWN_NOTE, STOPPED_NOTE
from bot.conversation.ports import (
    ContextSource,
    ConversationStore,
    IncomingMessage,
    ModelClient,
    ReplySink,
    ReplySinks,
    TurnOutcome,
    TurnStopped,
)
from bot.conversation.recovery import Recovery, resend_reason
from bot.conversation.reply import Attempt, tell
from bot.conversation.request import RunningTurn
from bot.conversation.tools import ToolLoop, TurnTools
from bot.errors import (
    ContextError,
    DeliveryError,
    ModelError,
    NotInstalledError,
    ResponseIncompleteError,
)
from bot.i18n import t
from bot.model.types import ModelResult, ResponseRequest
from bot.user_messages import INTERNAL_ERROR, context_message, user_message
from storage.errors import StorageError
from storage.records import TokenUsage, TurnStart

__all__ = ["TurnRunner"]

logger = logging.getLogger(__name__)


class TurnRunner:
    """Runs admitted turns (see the module docstring). One per ``ConversationService``."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        model: ModelClient,
        sinks: ReplySinks,
        context: ContextSource,
        history: History,
        recovery: Recovery,
        identity_salt: str,
        log_message_content: bool,
        tools: ToolLoop,
    ) -> None:
        self._store = store
        self._tools = tools
        self._model = model
        self._sinks = sinks
        self._context = context
        self._history = history
        self._recovery = recovery
        self._identity_salt = identity_salt
        # Message text is never logged unless the operator asks (LOG_MESSAGE_CONTENT).
        self._log_content = log_message_content

    async def run(
        self, message: IncomingMessage, settings: EffectiveSettings, turn: TurnStart
    ) -> TurnOutcome:
        started = time.monotonic()
        turn_started_at = datetime.now(UTC)
        log_extra = {
            "turn_id": turn.turn_id,
            "team": message.team_id,
            "channel": message.channel_id,
            "thread_ts": message.thread_ts,
            "event_id": message.event_id,
        }
        sink = self._sinks.open(message)
        try:
            await sink.started()
        except NotInstalledError as exc:
            # The workspace removed the app while the message waited: no answer could reach
            # it, so no model call is made for it either.
            logger.warning("workspace no longer installed; turn closed", extra=log_extra)
            await self._store.fail_turn(turn_id=turn.turn_id, status="failed", error_code=exc.code)
            return TurnOutcome.FAILED
        except DeliveryError as exc:
            # The indicator is a courtesy: the answer can still be delivered.
            logger.warning("could not show the working indicator: %s", exc.code, extra=log_extra)

        # The attempt whose text the user saw: a note on failure comes after it.
        attempt = Attempt(sink)
        try:
            attempt, result = await self._answer(message, settings, turn, attempt, log_extra)
        except asyncio.CancelledError:
            # Shutdown outlasted its grace period: close the turn and say so, then let the
            # cancellation go on. The chain head stays at the last finished answer.
            logger.warning("turn cancelled by shutdown", extra=log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="failed", error_code="shutdown"
            )
            await tell(sink, SHUTDOWN_NOTE, attempt.partial_text, log_extra)
            raise
        except (ContextError, TurnStopped, DeliveryError, ModelError) as exc:
            return await self._close(turn, sink, exc, attempt.partial_text, log_extra)
        except Exception:
            logger.exception("turn failed unexpectedly", extra=log_extra)
            # Tell the thread first: if the database is what failed, this still reaches Slack.
            await tell(sink, INTERNAL_ERROR, attempt.partial_text, log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="failed", error_code="internal"
            )
            return TurnOutcome.FAILED

        outcome = await self._deliver(turn, sink, attempt, result, log_extra)
        if outcome is TurnOutcome.COMPLETED:
            await self._history.remember_answer(turn, result.text, log_extra)
            logger.info(
                "turn completed",
                extra={
                    **log_extra,
                    "response_id": result.response_id,
                    "duration_ms": round((time.monotonic() - started) * 1000),
                    "first_token_ms": _ms_between(turn_started_at, attempt.first_token_at),
                    "input_tokens": result.usage.input_tokens,
                    "output_tokens": result.usage.output_tokens,
                    **(
                        {"message_text": message.text, "answer_text": result.text}
                        if self._log_content
                        else {}
                    ),
                },
            )
        return outcome

    async def _answer(
        self,
        message: IncomingMessage,
        settings: EffectiveSettings,
        turn: TurnStart,
        attempt: Attempt,
        log_extra: dict[str, Any],
    ) -> tuple[Attempt, ModelResult]:
        """The model's answer streamed through ``attempt``, recovered from a lost or ignored
        chain (then through the attempt that answered: the one returned)."""
        # Inside the turn's try: a failure while building the input closes the turn too.
        current = await self._context.current(message)
        notices = "".join(f"_{notice}_\n" for notice in current.notices)
        attempt.prefix = notices + "\n" if notices else ""
        tools = await self._tools.tools_for(settings, log_extra)
        running = RunningTurn(
            message=message,
            settings=settings,
            turn=turn,
            current=current,
            identity_salt=self._identity_salt,
            log_extra=log_extra,
            tools=tools.definitions,
        )
        items, previous = await self._history.plan(message, settings, turn, current)
        request = running.request(items, previous)
        try:
            result = await attempt.run(self._model, request)
        except ModelError as exc:
            reason = resend_reason(exc, attempt, request)
            if reason is None:
                raise
            attempt, result = await self._recovery.resend(reason, running, request, attempt)
        else:
            attempt, result = await self._recovery.check_continuity(
                running, request, attempt, result
            )
        return attempt, await self._follow_tools(attempt, result, running, tools)

    async def _follow_tools(
        self,
        attempt: Attempt,
        result: ModelResult,
        running: RunningTurn,
        tools: TurnTools,
    ) -> ModelResult:
        """Run the tool rounds the answer asks for (``bot.conversation.tools``); the result
        is then the last response, with every round's text and usage."""
        assert attempt.request is not None
        answered = attempt

        async def model_call(request: ResponseRequest) -> ModelResult:
            answered.next_round()
            return await answered.run(self._model, request)

        final, cut_short = await self._tools.run(
            model_call=model_call,
            sink=attempt.sink,
            message=running.message,
            turn_id=running.turn.turn_id,
            tools=tools,
            request=attempt.request,
            result=result,
            transcript=attempt.request.previous_response_id is None
            and await self._history.transcript_mode(running.settings),
            show_reasoning=bool(running.settings.reasoning_summary),
            log_extra=running.log_extra,
        )
        if cut_short:
            attempt.suffix += "\n\n" + t(ROUND_LIMIT_NOTE)
        attempt.result = final
        return final

    async def _close(
        self,
        turn: TurnStart,
        sink: ReplySink,
        exc: ContextError | TurnStopped | DeliveryError | ModelError,
        partial: str,
        log_extra: dict[str, Any],
    ) -> TurnOutcome:
        """Close a turn that ended without an answer after ``partial`` text was shown; the
        chain head does not move."""
        if isinstance(exc, ContextError):
            # Slack would not give what the model needs (the thread, a file), or the
            # workspace is gone: the turn ends with a note that says so, never pending.
            logger.warning("could not build the model input: %s", exc.code, extra=log_extra)
            await self._store.fail_turn(turn_id=turn.turn_id, status="failed", error_code=exc.code)
            await tell(sink, context_message(exc), partial, log_extra)
            return TurnOutcome.FAILED
        if isinstance(exc, TurnStopped):
            # The user stopped the answer: the partial text stays, the chain does not advance.
            logger.info("the user stopped the answer", extra=log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="stopped", error_code="stopped_by_user"
            )
            await tell(sink, STOPPED_NOTE, partial, log_extra)
            return TurnOutcome.STOPPED
        if isinstance(exc, DeliveryError):
            # Slack refused the growing answer: the turn says so; the chain does not advance.
            logger.error("answer could not be delivered to Slack: %s", exc.code, extra=log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="undelivered", error_code=exc.code
            )
            return TurnOutcome.UNDELIVERED
        assert isinstance(exc, ModelError)
        incomplete = isinstance(exc, ResponseIncompleteError)
        logger.warning(
            "model call failed: %s",
            exc.code,
            extra={**log_extra, "error_code": exc.code, "request_id": exc.request_id},
        )
        await self._store.fail_turn(
            turn_id=turn.turn_id,
            status="incomplete" if incomplete else "failed",
            error_code=exc.code,
            response_id=getattr(exc, "response_id", None),
        )
        await tell(sink, user_message(exc), partial or getattr(exc, "partial_text", ""), log_extra)
        return TurnOutcome.INCOMPLETE if incomplete else TurnOutcome.FAILED

    async def _deliver(
        self,
        turn: TurnStart,
        sink: ReplySink,
        attempt: Attempt,
        result: ModelResult,
        log_extra: dict[str, Any],
    ) -> TurnOutcome:
        """Hand the whole answer to Slack; the chain head moves once Slack holds it."""
        usage = _token_usage(result)
        final_text = attempt.final_text
        # Kept with the turn until Slack holds the whole answer, so a restart delivers it. A
        # safety net: if the database refuses it, the answer is still delivered now.
        try:
            await self._store.hold_answer(
                turn_id=turn.turn_id,
                text=final_text,
                response_id=result.response_id,
                usage=usage,
                first_token_at=attempt.first_token_at,
            )
        except StorageError as exc:
            logger.warning("could not hold the answer: %s", exc.code, extra=log_extra)
        try:
            reply_ts = await sink.finish(final_text)
        except DeliveryError as exc:
            logger.error("answer could not be delivered to Slack: %s", exc.code, extra=log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id,
                status="undelivered",
                error_code=exc.code,
                response_id=result.response_id,
                usage=usage,
            )
            return TurnOutcome.UNDELIVERED
        await self._store.complete_turn(
            turn_id=turn.turn_id,
            response_id=result.response_id,
            reply_ts=reply_ts,
            usage=usage,
            first_token_at=attempt.first_token_at,
        )
        return TurnOutcome.COMPLETED


def _token_usage(result: ModelResult) -> TokenUsage:
    u = result.usage
    return TokenUsage(
        input_tokens=u.input_tokens,
        cached_tokens=u.cached_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
    )


def _ms_between(start: datetime, end: datetime | None) -> int | None:
    return None if end is None else round((end - start).total_seconds() * 1000)
