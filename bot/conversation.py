"""The turn: one user message in, one model answer out, one chain per thread.

Pure logic over small interfaces (a model client, a reply sink, thread history, the store): no
Slack SDK, no httpx. The Slack adapter turns events into ``IncomingMessage``; this module
decides whether to answer, keeps turns of one thread in order, claims the event exactly once,
calls the model with the thread's ``previous_response_id`` and advances the chain only when the
answer was delivered.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.channel_config import EffectiveSettings
from bot.errors import ChainNotFoundError, DeliveryError, ModelError, ResponseIncompleteError
from bot.model.types import (
    Completed,
    ModelEvent,
    ModelResult,
    ReasoningDelta,
    ResponseRequest,
    TextDelta,
)
from bot.thread_locks import KeyedLocks
from bot.user_messages import INTERNAL_ERROR, user_message
from storage.errors import STORAGE_ERRORS
from storage.repositories import ThreadRecord, TokenUsage, TurnStart
from storage.thread_locks import ThreadLockTimeout

__all__ = [
    "ContextSource",
    "ConversationService",
    "IncomingMessage",
    "ModelClient",
    "ReplySink",
    "ReplySinks",
    "SettingsSource",
    "TurnInput",
    "TurnOutcome",
    "TurnStopped",
]

logger = logging.getLogger(__name__)

STORAGE_NOTE = (
    ":warning: I couldn't save this conversation right now, so I can't answer. "
    "Please try again in a minute; if it keeps happening, tell your Slack admin."
)
BUSY_NOTE = (
    ":warning: This thread was busy for too long and I couldn't get to your message. "
    "Please send it again."
)
SHUTDOWN_NOTE = (
    ":warning: The bot is restarting and could not finish this answer. "
    "Please send your message again in a minute."
)
STOPPED_NOTE = "_(Stopped. The answer above is incomplete.)_"


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A human message that may become a turn. ``thread_ts`` is the thread the answer goes
    to (the message's own ``ts`` for a new conversation)."""

    team_id: str
    channel_id: str
    thread_ts: str
    ts: str
    user_id: str
    text: str
    event_id: str | None = None
    mentions_bot: bool = False
    is_direct: bool = False
    starts_thread: bool = False
    mentions_others: bool = False
    files: tuple[Mapping[str, Any], ...] = ()

    @property
    def claim_keys(self) -> list[str]:
        # Two keys: Slack's retries share the event id; the app_mention/message pair for one
        # message shares channel+ts but not the event id.
        keys = [f"msg:{self.team_id}:{self.channel_id}:{self.ts}"]
        if self.event_id:
            keys.insert(0, f"event:{self.event_id}")
        return keys


@dataclass(frozen=True, slots=True)
class TurnInput:
    """Responses input items for (part of) a turn, and one-line notices for the user (e.g. a
    file that could not be read)."""

    items: list[dict[str, Any]]
    notices: list[str]


class TurnStopped(Exception):
    """Raised by a reply sink when the user stopped the answer in Slack."""


class TurnOutcome(enum.StrEnum):
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    COMPLETED = "completed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    UNDELIVERED = "undelivered"
    STOPPED = "stopped"
    OVER_BUDGET = "over_budget"


class ModelClient(Protocol):
    def stream(self, request: ResponseRequest) -> AsyncGenerator[ModelEvent, None]: ...


class ReplySink(Protocol):
    """Where one turn's answer goes. ``finish``/``fail`` return the first reply's ts."""

    async def started(self) -> None: ...

    async def reasoning(self) -> None: ...

    async def delta(self, text: str) -> None: ...

    async def finish(self, text: str) -> str | None: ...

    async def fail(self, notice: str, partial_text: str) -> str | None: ...


class ReplySinks(Protocol):
    def open(self, message: IncomingMessage) -> ReplySink: ...


class ContextSource(Protocol):
    """What the model sees: the current message, and the thread's earlier messages (used when
    the bot joins a thread mid-way or the endpoint lost the chain)."""

    async def current(self, message: IncomingMessage) -> TurnInput: ...

    async def earlier(self, message: IncomingMessage) -> TurnInput: ...


class SettingsSource(Protocol):
    async def effective(self, *, team_id: str, channel_id: str) -> EffectiveSettings: ...


class ThreadLockProvider(Protocol):
    def hold(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> AbstractAsyncContextManager[None]: ...


class ConversationStore(Protocol):
    async def claim_event(self, *, keys: Sequence[str]) -> bool: ...

    async def find_thread(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None: ...

    async def start_turn(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        user_ts: str,
        event_id: str | None,
        model: str,
    ) -> TurnStart: ...

    async def complete_turn(
        self,
        *,
        turn_id: int,
        response_id: str,
        reply_ts: str | None,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None: ...

    async def fail_turn(
        self,
        *,
        turn_id: int,
        status: str,
        error_code: str | None,
        response_id: str | None = None,
        reply_ts: str | None = None,
        usage: TokenUsage | None = None,
    ) -> object: ...

    async def restart_chain(self, *, turn_id: int, previous_response_id: str | None) -> None: ...

    async def hold_answer(
        self,
        *,
        turn_id: int,
        text: str,
        response_id: str,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None: ...

    async def tokens_used_since(
        self, *, team_id: str, channel_id: str | None, since: datetime
    ) -> int: ...

    async def turns_by_user_since(self, *, team_id: str, user_id: str, since: datetime) -> int: ...


class _Attempt:
    """Collects one model call's stream into the sink and remembers what arrived."""

    def __init__(self, sink: ReplySink, prefix: str = "") -> None:
        self.sink = sink
        self.prefix = prefix  # notices shown before the answer (e.g. an unreadable file)
        self.text_parts: list[str] = []
        self.answer_started = False
        self.first_token_at: datetime | None = None
        self.result: ModelResult | None = None

    @property
    def partial_text(self) -> str:
        return "".join(self.text_parts)

    async def run(self, model: ModelClient, request: ResponseRequest) -> ModelResult:
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
                    await self.sink.delta(self.prefix)
            self.text_parts.append(event.text)
            await self.sink.delta(event.text)
        elif isinstance(event, ReasoningDelta):
            await self.sink.reasoning()
        elif isinstance(event, Completed):
            self.result = event.result


class ConversationService:
    """Handles ``IncomingMessage``s. Construct once per process."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        model: ModelClient,
        sinks: ReplySinks,
        context: ContextSource,
        settings: SettingsSource,
        locks: KeyedLocks | None = None,
        thread_locks: ThreadLockProvider | None = None,
        identity_salt: str = "",
        log_message_content: bool = False,
    ) -> None:
        self._store = store
        self._model = model
        self._sinks = sinks
        self._context = context
        self._settings = settings
        self._locks = locks or KeyedLocks()
        self._thread_locks = thread_locks
        self._identity_salt = identity_salt
        # Message text is never logged unless the operator asks (LOG_MESSAGE_CONTENT).
        self._log_content = log_message_content

    async def handle(self, message: IncomingMessage) -> TurnOutcome:
        """Answer ``message`` if it is addressed to the bot; at most once per message."""
        addressed = message.mentions_bot or message.is_direct
        if not addressed and message.starts_thread:
            return TurnOutcome.IGNORED  # a top-level channel message not for the bot
        if not addressed and message.mentions_others:
            return TurnOutcome.IGNORED  # people in the thread talking to each other
        try:
            return await self._handle_in_order(message, addressed)
        except STORAGE_ERRORS as exc:
            # The database refused (read-only or full disk, locked past the busy timeout,
            # gone): say so rather than lose the message silently, Slack will not resend it.
            # The driver's own words ("attempt to write a readonly database", "disk I/O
            # error"), not SQLAlchemy's text, which quotes the statement and its parameters.
            reason = str(getattr(exc, "orig", None) or exc)[:200]
            logger.error(
                "database unavailable; could not take the message: %s: %s",
                type(exc).__name__,
                reason,
                extra={"channel": message.channel_id, "thread_ts": message.thread_ts},
            )
            # Without the database we cannot tell whether the bot is part of a thread: only a
            # message addressed to it gets the notice (others may be people talking).
            if addressed:
                await _tell(self._sinks.open(message), STORAGE_NOTE, "", {})
            return TurnOutcome.FAILED

    async def _handle_in_order(self, message: IncomingMessage, addressed: bool) -> TurnOutcome:
        key = (message.team_id, message.channel_id, message.thread_ts)
        # The lock comes first so turns of one thread run in arrival order (see KeyedLocks);
        # then, with several replicas, the thread's lock in the database.
        async with self._locks.hold(key):
            if self._thread_locks is None:
                return await self._handle_locked(message, addressed)
            try:
                async with self._thread_locks.hold(
                    team_id=message.team_id,
                    channel_id=message.channel_id,
                    thread_ts=message.thread_ts,
                ):
                    return await self._handle_locked(message, addressed)
            except ThreadLockTimeout:
                logger.error(
                    "thread stayed locked by another replica; message not answered",
                    extra={"channel": message.channel_id, "thread_ts": message.thread_ts},
                )
                await _tell(self._sinks.open(message), BUSY_NOTE, "", {})
                return TurnOutcome.FAILED

    async def _handle_locked(self, message: IncomingMessage, addressed: bool) -> TurnOutcome:
        # Read inside the lock: a change made while this turn waited applies to it.
        settings = await self._settings.effective(
            team_id=message.team_id, channel_id=message.channel_id
        )
        if settings.enabled is False:
            return TurnOutcome.IGNORED  # an admin switched the bot off in this channel
        if not addressed and settings.require_mention:
            return TurnOutcome.IGNORED  # follow-ups need a mention in this channel
        if not addressed:
            thread = await self._store.find_thread(
                team_id=message.team_id,
                channel_id=message.channel_id,
                thread_ts=message.thread_ts,
            )
            if thread is None:
                return TurnOutcome.IGNORED  # a thread the bot is not part of
        if not await self._store.claim_event(keys=message.claim_keys):
            logger.info(
                "duplicate delivery ignored",
                extra={"event_id": message.event_id, "channel": message.channel_id},
            )
            return TurnOutcome.DUPLICATE
        if await self._over_budget(message, settings):
            return TurnOutcome.OVER_BUDGET
        return await self._run_turn(message, settings)

    async def _over_budget(self, message: IncomingMessage, settings: EffectiveSettings) -> bool:
        """Budgets and limits: when one is reached the user is told which, when it resets and
        who can raise it, and no model call is made."""
        notice = await self._limit_reached(message, settings)
        if notice is None:
            return False
        await _tell(self._sinks.open(message), notice, "", {"channel": message.channel_id})
        return True

    async def _limit_reached(
        self, message: IncomingMessage, settings: EffectiveSettings
    ) -> str | None:
        now = datetime.now(UTC)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        budget = settings.daily_token_budget or 0
        if budget > 0:
            used = await self._store.tokens_used_since(
                team_id=message.team_id, channel_id=message.channel_id, since=today
            )
            if used >= budget:
                return (
                    f":no_entry: This channel has used its daily budget of {budget:,} tokens "
                    f"({used:,} used today). It resets at 00:00 UTC; an admin can raise it "
                    "with the settings command (`daily_token_budget`)."
                )
        workspace_budget = settings.workspace_daily_token_budget or 0
        if workspace_budget > 0:
            used = await self._store.tokens_used_since(
                team_id=message.team_id, channel_id=None, since=today
            )
            if used >= workspace_budget:
                return (
                    f":no_entry: This workspace has used its daily budget of "
                    f"{workspace_budget:,} tokens ({used:,} used today). It resets at 00:00 UTC; "
                    "an admin can raise it (`set default workspace_daily_token_budget`)."
                )
        per_hour = settings.user_hourly_requests or 0
        if per_hour > 0:
            asked = await self._store.turns_by_user_since(
                team_id=message.team_id, user_id=message.user_id, since=now - timedelta(hours=1)
            )
            if asked >= per_hour:
                return (
                    f":hourglass: You have asked {asked} questions in the last hour; the limit "
                    f"is {per_hour}. Please try again a little later; an admin can raise it "
                    "(`user_hourly_requests`)."
                )
        return None

    async def _run_turn(self, message: IncomingMessage, settings: EffectiveSettings) -> TurnOutcome:
        started = time.monotonic()
        turn_started_at = datetime.now(UTC)
        turn = await self._store.start_turn(
            team_id=message.team_id,
            channel_id=message.channel_id,
            thread_ts=message.thread_ts,
            user_id=message.user_id,
            user_ts=message.ts,
            event_id=message.event_id,
            model=settings.model,
        )
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
        except DeliveryError as exc:
            # The indicator is a courtesy: the answer can still be delivered.
            logger.warning("could not show the working indicator: %s", exc.code, extra=log_extra)

        current = await self._context.current(message)
        items = list(current.items)
        if turn.previous_response_id is None and message.ts != message.thread_ts:
            # Joining a thread mid-way (or one whose earlier turns all failed): the model
            # gets what was said before, each message attributed to its author.
            items = (await self._context.earlier(message)).items + items
        prefix = "".join(f"_{notice}_\n" for notice in current.notices)
        prefix = prefix + "\n" if prefix else ""
        request = self._request(settings, items, turn.previous_response_id, message)
        attempt = _Attempt(sink, prefix)
        try:
            try:
                result = await attempt.run(self._model, request)
            except ModelError as exc:
                if (
                    not _is_lost_chain(exc)
                    or attempt.answer_started
                    or not request.previous_response_id
                ):
                    raise
                # The endpoint no longer has the chain: rebuild it from the Slack thread (the
                # transcript) once, with the same conversion, and start a fresh chain.
                logger.info("the endpoint lost the chain; rebuilding it", extra=log_extra)
                earlier = await self._context.earlier(message)
                request = self._request(settings, earlier.items + current.items, None, message)
                await self._store.restart_chain(turn_id=turn.turn_id, previous_response_id=None)
                attempt = _Attempt(sink, prefix)
                result = await attempt.run(self._model, request)
        except asyncio.CancelledError:
            # Shutdown outlasted its grace period: close the turn and say so, then let the
            # cancellation go on. The chain head stays at the last finished answer.
            logger.warning("turn cancelled by shutdown", extra=log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="failed", error_code="shutdown"
            )
            await _tell(sink, SHUTDOWN_NOTE, attempt.partial_text, log_extra)
            raise
        except TurnStopped:
            # The user stopped the answer: the partial text stays, the chain does not advance.
            logger.info("the user stopped the answer", extra=log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="stopped", error_code="stopped_by_user"
            )
            await _tell(sink, STOPPED_NOTE, attempt.partial_text, log_extra)
            return TurnOutcome.STOPPED
        except DeliveryError as exc:
            # Slack refused the growing answer: the turn says so; the chain does not advance.
            logger.error("answer could not be delivered to Slack: %s", exc.code, extra=log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="undelivered", error_code=exc.code
            )
            return TurnOutcome.UNDELIVERED
        except ModelError as exc:
            return await self._fail(turn.turn_id, sink, exc, attempt, log_extra)
        except Exception:
            logger.exception("turn failed unexpectedly", extra=log_extra)
            # Tell the thread first: if the database is what failed, this still reaches Slack.
            await _tell(sink, INTERNAL_ERROR, attempt.partial_text, log_extra)
            await self._store.fail_turn(
                turn_id=turn.turn_id, status="failed", error_code="internal"
            )
            return TurnOutcome.FAILED

        usage = _token_usage(result)
        # Kept with the turn until Slack holds the whole answer, so a restart delivers it. A
        # safety net: if the database refuses it, the answer is still delivered now.
        try:
            await self._store.hold_answer(
                turn_id=turn.turn_id,
                text=prefix + result.text,
                response_id=result.response_id,
                usage=usage,
                first_token_at=attempt.first_token_at,
            )
        except STORAGE_ERRORS as exc:
            logger.warning("could not hold the answer: %s", type(exc).__name__, extra=log_extra)
        try:
            reply_ts = await sink.finish(prefix + result.text)
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
        return TurnOutcome.COMPLETED

    async def _fail(
        self,
        turn_id: int,
        sink: ReplySink,
        exc: ModelError,
        attempt: _Attempt,
        log_extra: Mapping[str, Any],
    ) -> TurnOutcome:
        incomplete = isinstance(exc, ResponseIncompleteError)
        logger.warning(
            "model call failed: %s",
            exc.code,
            extra={**log_extra, "error_code": exc.code, "request_id": exc.request_id},
        )
        await self._store.fail_turn(
            turn_id=turn_id,
            status="incomplete" if incomplete else "failed",
            error_code=exc.code,
            response_id=getattr(exc, "response_id", None),
        )
        partial = attempt.partial_text or getattr(exc, "partial_text", "")
        await _tell(sink, user_message(exc), partial, log_extra)
        return TurnOutcome.INCOMPLETE if incomplete else TurnOutcome.FAILED

    def _request(
        self,
        settings: EffectiveSettings,
        items: list[dict[str, Any]],
        previous_response_id: str | None,
        message: IncomingMessage,
    ) -> ResponseRequest:
        return _build_request(
            settings,
            items,
            previous_response_id,
            message,
            safety_identifier=_safety_identifier(self._identity_salt, message),
        )


async def _tell(
    sink: ReplySink, notice: str, partial_text: str, log_extra: Mapping[str, Any]
) -> None:
    try:
        await sink.fail(notice, partial_text)
    except DeliveryError as exc:
        logger.error("could not tell the thread about a failure: %s", exc.code, extra=log_extra)


def _build_request(
    settings: EffectiveSettings,
    user_input: list[dict[str, Any]],
    previous_response_id: str | None,
    message: IncomingMessage,
    *,
    safety_identifier: str | None = None,
) -> ResponseRequest:
    # Instructions are not carried over by previous_response_id: send them on every turn.
    return ResponseRequest(
        safety_identifier=safety_identifier,
        # One cache key per thread: its turns share the longest prefix.
        prompt_cache_key=_digest(f"{message.team_id}:{message.channel_id}:{message.thread_ts}"),
        model=settings.model,
        input=user_input,
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
    )


def _ms_between(start: datetime, end: datetime | None) -> int | None:
    return None if end is None else round((end - start).total_seconds() * 1000)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _safety_identifier(salt: str, message: IncomingMessage) -> str:
    """Stable per person, different across people, never the raw Slack ids."""
    key = f"{message.team_id}:{message.user_id}".encode()
    return "u_" + hmac.new(salt.encode(), key, hashlib.sha256).hexdigest()[:40]


def _is_lost_chain(exc: ModelError) -> bool:
    # Usually an HTTP 400 (ChainNotFoundError); some relays report it inside a 200 stream.
    return isinstance(exc, ChainNotFoundError) or exc.code == "previous_response_not_found"


def _token_usage(result: ModelResult) -> TokenUsage:
    u = result.usage
    return TokenUsage(
        input_tokens=u.input_tokens,
        cached_tokens=u.cached_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
    )
