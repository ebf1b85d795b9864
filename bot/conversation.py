"""The turn: one user message in, one model answer out, one chain per thread.

Pure logic over small interfaces (a model client, a reply sink, thread history, the store): no
Slack SDK, no httpx. The Slack adapter turns events into ``IncomingMessage``; this module
decides whether to answer, keeps turns of one thread in order, claims the event exactly once,
calls the model with the thread's ``previous_response_id`` (or, in transcript mode, with the
thread's earlier messages from the service's own transcript; see ``bot.conversation_state``)
and advances the chain only when the answer was delivered.

A thread is never stuck on a chain the endpoint lost or mangled: a lost chain (however a relay
words it), or a chained call refused with a 4xx that names nothing else, is re-sent once from
the transcript without ``previous_response_id``, and a head that failed as lost is dropped so it
is never sent again. A chained turn whose usage shows that the endpoint ignored the chain is
answered again from the transcript, and the endpoint+model switches to transcripts.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.channel_config import EffectiveSettings
from bot.conversation_state import (
    EndpointCapabilities,
    continuity_broken,
    item_text,
    select_transcript,
)
from bot.errors import (
    DeliveryError,
    ErrorMeaning,
    ModelError,
    ModelHTTPError,
    ResponseFailedError,
    ResponseIncompleteError,
)
from bot.model.error_meaning import is_vague_code
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
from storage.conversation_state import ResponseUsage, TranscriptRecord
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
    "TranscriptStore",
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
RESENT_NOTE = "The model service did not have this thread's earlier messages, so I sent them again."
RESEND_FAILED_NOTE = (
    ":warning: The model service answered without this thread's earlier messages, so this "
    "answer may miss what was said before. I'll send them along from now on."
)


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

    async def replay(
        self, message: IncomingMessage, entries: Sequence[TranscriptRecord]
    ) -> TurnInput:
        """Input items for stored transcript entries (attachments read again)."""
        ...


class TranscriptStore(Protocol):
    """The service's own record of each thread's conversation (``storage.conversation_state``):
    what lets it re-send a conversation without reading the Slack thread again."""

    async def add_entries(
        self,
        *,
        thread_id: int,
        turn_id: int,
        entries: Sequence[tuple[str, str | None, str, Sequence[Mapping[str, Any]]]],
    ) -> None: ...

    async def entries(self, *, thread_id: int, before_turn_id: int) -> list[TranscriptRecord]: ...

    async def forget_head(self, *, thread_id: int, response_id: str) -> bool: ...

    async def usage_of_response(
        self, *, thread_id: int, response_id: str
    ) -> ResponseUsage | None: ...

    async def note_once(self, *, thread_id: int, kind: str) -> bool: ...


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

    async def tokens_used_since(
        self, *, team_id: str, channel_id: str | None, since: datetime
    ) -> int: ...

    async def turns_by_user_since(self, *, team_id: str, user_id: str, since: datetime) -> int: ...


class _Attempt:
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
                    if not self.quiet:
                        await self.sink.delta(self.prefix)
            self.text_parts.append(event.text)
            if not self.quiet:
                await self.sink.delta(event.text)
        elif isinstance(event, ReasoningDelta):
            if not self.quiet:
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
        transcripts: TranscriptStore | None = None,
        capabilities: EndpointCapabilities | None = None,
        transcript_chars: int = 40_000,
        on_recovery: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        # Without a transcript store (unit wiring) the Slack thread is read instead.
        self._transcripts = transcripts
        self._capabilities = capabilities
        self._transcript_chars = transcript_chars
        self._on_recovery = on_recovery
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
        prefix = "".join(f"_{notice}_\n" for notice in current.notices)
        prefix = prefix + "\n" if prefix else ""
        items, previous = await self._plan(message, settings, turn, current)
        request = self._request(settings, items, previous, message)
        attempt = _Attempt(sink, prefix)
        try:
            try:
                result = await attempt.run(self._model, request)
            except ModelError as exc:
                reason = _resend_reason(exc, attempt, request)
                if reason is None:
                    raise
                attempt, result = await self._resend(
                    reason, message, settings, turn, current, request, attempt, log_extra
                )
            else:
                attempt, result = await self._check_continuity(
                    message, settings, turn, current, request, attempt, result, log_extra
                )
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
        try:
            reply_ts = await sink.finish(attempt.prefix + result.text + attempt.suffix)
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
        await self._remember_answer(turn, result.text, log_extra)
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

    # -- the conversation: chain or transcript, and recovery ------------------------------------

    async def _plan(
        self,
        message: IncomingMessage,
        settings: EffectiveSettings,
        turn: TurnStart,
        current: TurnInput,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The turn's input items and the ``previous_response_id`` to send (None: the earlier
        messages are sent in the input instead)."""
        previous = turn.previous_response_id
        earlier: list[dict[str, Any]] = []
        transcript_mode = await self._transcript_mode(settings)
        if transcript_mode or (previous is None and message.ts != message.thread_ts):
            # Transcript mode; or a thread joined mid-way, one whose earlier turns all failed,
            # or one whose lost head was dropped: the earlier messages go in the input.
            earlier = await self._earlier(message, turn)
            previous = None
        await self._remember_question(message, turn, current)
        return earlier + list(current.items), previous

    async def _transcript_mode(self, settings: EffectiveSettings) -> bool:
        mode = settings.conversation_state or "auto"
        if mode == "transcript":
            return True
        if mode == "chain" or self._capabilities is None:
            return False
        return await self._capabilities.chains_ignored(settings.model)

    async def _earlier(self, message: IncomingMessage, turn: TurnStart) -> list[dict[str, Any]]:
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

    async def _remember_answer(
        self, turn: TurnStart, text: str, log_extra: Mapping[str, Any]
    ) -> None:
        if self._transcripts is None:
            return
        try:
            await self._transcripts.add_entries(
                thread_id=turn.thread_id,
                turn_id=turn.turn_id,
                entries=[("assistant", None, text, ())],
            )
        except STORAGE_ERRORS as exc:
            # The answer is delivered and its turn completed: a missing transcript entry only
            # costs a later re-send this answer, never the turn.
            logger.warning(
                "could not keep the answer in the transcript: %s",
                type(exc).__name__,
                extra=log_extra,
            )

    async def _resend(
        self,
        reason: str,
        message: IncomingMessage,
        settings: EffectiveSettings,
        turn: TurnStart,
        current: TurnInput,
        refused: ResponseRequest,
        attempt: _Attempt,
        log_extra: Mapping[str, Any],
    ) -> tuple[_Attempt, ModelResult]:
        """The chained call was refused before any text: send the conversation once more,
        from the transcript, without ``previous_response_id``, on a fresh chain."""
        logger.info(
            "the endpoint refused the chain (%s); re-sending the conversation",
            reason,
            extra=log_extra,
        )
        if self._on_recovery is not None:
            self._on_recovery(reason)
        if reason == "lost_chain" and self._transcripts is not None:
            # The endpoint does not know this head: never send it again, even if the re-send
            # below fails too.
            assert refused.previous_response_id is not None
            await self._transcripts.forget_head(
                thread_id=turn.thread_id, response_id=refused.previous_response_id
            )
        earlier = await self._earlier(message, turn)
        request = self._request(settings, earlier + list(current.items), None, message)
        await self._store.restart_chain(turn_id=turn.turn_id, previous_response_id=None)
        attempt = _Attempt(attempt.sink, attempt.prefix)
        return attempt, await attempt.run(self._model, request)

    async def _check_continuity(
        self,
        message: IncomingMessage,
        settings: EffectiveSettings,
        turn: TurnStart,
        current: TurnInput,
        request: ResponseRequest,
        attempt: _Attempt,
        result: ModelResult,
        log_extra: Mapping[str, Any],
    ) -> tuple[_Attempt, ModelResult]:
        """A chained turn billed for far less input than its history holds was answered
        without the chain: switch the endpoint+model to transcripts and answer again from the
        transcript (the streamed answer is replaced, with a note once per thread)."""
        previous = request.previous_response_id
        if previous is None or self._transcripts is None or self._capabilities is None:
            return attempt, result
        before = await self._transcripts.usage_of_response(
            thread_id=turn.thread_id, response_id=previous
        )
        if not continuity_broken(before, result.usage, model=request.model):
            return attempt, result
        assert before is not None
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
        if (settings.conversation_state or "auto") == "chain":
            return attempt, result  # the operator chose chains: recorded, not acted on
        earlier = await self._earlier(message, turn)
        if not earlier:
            return attempt, result
        prefix = attempt.prefix
        if await self._transcripts.note_once(thread_id=turn.thread_id, kind="context_resent"):
            prefix += f"_{RESENT_NOTE}_\n\n"
        again = _Attempt(attempt.sink, prefix, quiet=True)
        again.first_token_at = attempt.first_token_at
        try:
            second = await again.run(
                self._model, self._request(settings, earlier + list(current.items), None, message)
            )
        except ModelError as exc:
            logger.warning(
                "answering again with the earlier messages failed: %s", exc.code, extra=log_extra
            )
            attempt.suffix = "\n\n" + RESEND_FAILED_NOTE
            return attempt, result
        await self._store.restart_chain(turn_id=turn.turn_id, previous_response_id=None)
        return again, second

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


def _resend_reason(exc: ModelError, attempt: _Attempt, request: ResponseRequest) -> str | None:
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


def _token_usage(result: ModelResult) -> TokenUsage:
    u = result.usage
    return TokenUsage(
        input_tokens=u.input_tokens,
        cached_tokens=u.cached_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
    )
