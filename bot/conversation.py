"""The turn: one user message in, one model answer out, one chain per thread.

Pure logic over small interfaces (a model client, a reply sink, thread history, the store): no
Slack SDK, no httpx. The Slack adapter turns events into ``IncomingMessage``; this module
accepts each message once (claimed and stored before Slack gets its acknowledgement, so
nothing accepted is lost), answers a thread's messages one at a time in the order they were
written, admits each turn under the limits in one atomic step, calls the model with the
thread's ``previous_response_id`` and advances the chain only when the answer was delivered.

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
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.channel_settings import EffectiveSettings
from bot.conversation_state import (
    EndpointCapabilities,
    continuity_broken,
    item_text,
    select_transcript,
)
from bot.errors import (
    ContextError,
    DeliveryError,
    ErrorMeaning,
    ModelError,
    ModelHTTPError,
    NotInstalledError,
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
from bot.text_safety import scrub
from bot.thread_locks import KeyedLocks
from bot.user_messages import INTERNAL_ERROR, context_message, user_message
from storage.errors import StorageError, ThreadLockTimeout
from storage.records import (
    Acceptance,
    AcceptResult,
    LimitReached,
    QueuedMessage,
    ResponseUsage,
    ThreadRecord,
    TokenUsage,
    TranscriptRecord,
    TurnLimits,
    TurnStart,
)

__all__ = [
    "ContextSource",
    "ConversationService",
    "IncomingMessage",
    "MessageIntake",
    "ModelClient",
    "ReplySink",
    "ReplySinks",
    "SettingsSource",
    "Ticket",
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
# What a turn is assumed to write when no max_output_tokens is set: a token reservation must
# assume something (see storage.intake).
OUTPUT_RESERVE_TOKENS = 1_000
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


@dataclass(frozen=True, slots=True)
class Ticket:
    """What ``ConversationService.accept`` decided for a message: it waits for its turn
    (``queued_id``, stored), or it is settled already (``outcome``)."""

    message: IncomingMessage
    queued_id: int | None = None
    outcome: TurnOutcome | None = None
    storage_failed: bool = False
    """The database refused the message: the thread is told so when it is answered."""


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


class MessageIntake(Protocol):
    """Accepted messages until they become turns, and the admission of turns under the
    limits (``storage.intake``)."""

    async def accept(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        ts: str,
        user_id: str,
        event_id: str | None,
        claim_keys: Sequence[str],
        payload: Mapping[str, Any],
        owner: str,
        needs_thread: bool,
    ) -> AcceptResult: ...

    async def next_in_thread(
        self, *, owner: str, team_id: str, channel_id: str, thread_ts: str
    ) -> QueuedMessage | None: ...

    async def forget(self, *, queued_id: int) -> None: ...

    async def admit_turn(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        user_ts: str,
        event_id: str | None,
        model: str,
        limits: TurnLimits,
        queued_id: int | None = None,
    ) -> TurnStart | LimitReached | None: ...


class ConversationStore(Protocol):
    async def find_thread(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None: ...

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
        intake: MessageIntake,
        model: ModelClient,
        sinks: ReplySinks,
        context: ContextSource,
        settings: SettingsSource,
        locks: KeyedLocks | None = None,
        thread_locks: ThreadLockProvider | None = None,
        identity_salt: str = "",
        log_message_content: bool = False,
        replica_id: str = "local",
        transcripts: TranscriptStore | None = None,
        capabilities: EndpointCapabilities | None = None,
        transcript_chars: int = 40_000,
        on_recovery: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._intake = intake
        # The process answering the messages it accepts (see storage.replicas).
        self._owner = replica_id
        # Outcomes of messages answered by another message's task (see _answer_in_order),
        # until their own task collects them.
        self._outcomes: dict[int, TurnOutcome] = {}
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
        return await self.answer(await self.accept(message))

    async def accept(self, message: IncomingMessage) -> Ticket:
        """Decide whether ``message`` may become a turn and, if so, store it (with its event
        claim) so that nothing accepted is lost: call this before Slack gets its answer. Fast:
        no lock is waited for and nothing is sent to Slack."""
        addressed = _addressed(message)
        if not addressed and message.starts_thread:
            return Ticket(message, outcome=TurnOutcome.IGNORED)  # a channel message not for us
        if not addressed and message.mentions_others:
            return Ticket(message, outcome=TurnOutcome.IGNORED)  # people talking to each other
        try:
            result = await self._intake.accept(
                team_id=message.team_id,
                channel_id=message.channel_id,
                thread_ts=message.thread_ts,
                ts=message.ts,
                user_id=message.user_id,
                event_id=message.event_id,
                claim_keys=message.claim_keys,
                payload=_payload(message),
                owner=self._owner,
                needs_thread=not addressed,
            )
        except StorageError as exc:
            _log_storage_error(exc, message)
            # Without the database we cannot tell whether the bot is part of a thread: only a
            # message addressed to it gets the notice (others may be people talking).
            return Ticket(message, outcome=TurnOutcome.FAILED, storage_failed=addressed)
        if result.status is Acceptance.DUPLICATE:
            logger.info(
                "duplicate delivery ignored",
                extra={"event_id": message.event_id, "channel": message.channel_id},
            )
            return Ticket(message, outcome=TurnOutcome.DUPLICATE)
        if result.status is Acceptance.NOT_IN_THREAD:
            return Ticket(message, outcome=TurnOutcome.IGNORED)  # a thread we are not part of
        return Ticket(message, queued_id=result.queued_id)

    async def answer(self, ticket: Ticket) -> TurnOutcome:
        """Answer an accepted message in its thread's order (waits for the turns before it)."""
        if ticket.outcome is not None:
            if ticket.storage_failed:
                # Slack has its 200 and will not resend: say so rather than lose it silently.
                await _tell(self._sinks.open(ticket.message), STORAGE_NOTE, "", {})
            return ticket.outcome
        assert ticket.queued_id is not None
        message = ticket.message
        try:
            return await self._answer_in_order(
                team_id=message.team_id,
                channel_id=message.channel_id,
                thread_ts=message.thread_ts,
                own=(message.ts, ticket.queued_id),
            )
        except StorageError as exc:
            _log_storage_error(exc, message)
            if _addressed(message):
                await _tell(self._sinks.open(message), STORAGE_NOTE, "", {})
            return TurnOutcome.FAILED

    async def resume(self, queued: QueuedMessage) -> TurnOutcome:
        """Answer a message accepted by a process that is gone (adopted at start-up)."""
        return await self.answer(Ticket(_message(queued), queued_id=queued.id))

    async def _answer_in_order(
        self, *, team_id: str, channel_id: str, thread_ts: str, own: tuple[str, int]
    ) -> TurnOutcome:
        """Take the thread and answer its waiting messages oldest first (by Slack ts), up to
        and including our own ``own`` = (ts, id): so a thread's messages are answered in the
        order they were written, whichever task or process got them, and a message adopted
        after a restart comes before the newer ones. Returns our own message's outcome."""
        own_ts, own_id = own
        # The process lock first, so this process's tasks for a thread take turns; then, per
        # message, the thread's lock in the database (several replicas).
        async with self._locks.hold((team_id, channel_id, thread_ts)):
            while True:
                if own_id in self._outcomes:  # answered by a task before us
                    return self._outcomes.pop(own_id)
                queued = await self._intake.next_in_thread(
                    owner=self._owner, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts
                )
                if queued is None or (queued.ts, queued.id) > (own_ts, own_id):
                    # Ours is gone without an outcome here: another process adopted it.
                    return TurnOutcome.IGNORED
                outcome = await self._answer_queued(queued)
                if queued.id == own_id:
                    return outcome
                self._outcomes[queued.id] = outcome

    async def _answer_queued(self, queued: QueuedMessage) -> TurnOutcome:
        message = _message(queued)
        addressed = _addressed(message)
        extra = {"channel": message.channel_id, "thread_ts": message.thread_ts}
        try:
            if self._thread_locks is None:
                return await self._handle_locked(message, addressed, queued.id)
            try:
                async with self._thread_locks.hold(
                    team_id=message.team_id,
                    channel_id=message.channel_id,
                    thread_ts=message.thread_ts,
                ):
                    return await self._handle_locked(message, addressed, queued.id)
            except ThreadLockTimeout:
                logger.error(
                    "thread stayed locked by another replica; message not answered", extra=extra
                )
                await _tell(self._sinks.open(message), BUSY_NOTE, "", {})
                await self._intake.forget(queued_id=queued.id)
                return TurnOutcome.FAILED
        except StorageError as exc:
            # The database refused (read-only or full disk, locked past the busy timeout,
            # gone): say so rather than lose the message silently.
            _log_storage_error(exc, message)
            if addressed:
                await _tell(self._sinks.open(message), STORAGE_NOTE, "", {})
            await self._forget_quietly(queued.id)
            return TurnOutcome.FAILED
        except Exception:
            # A bug of ours: one message must not take its thread down with it.
            logger.exception("message could not be handled", extra=extra)
            if addressed:
                await _tell(self._sinks.open(message), INTERNAL_ERROR, "", {})
            await self._forget_quietly(queued.id)
            return TurnOutcome.FAILED

    async def _forget_quietly(self, queued_id: int) -> None:
        try:
            await self._intake.forget(queued_id=queued_id)
        except StorageError:
            # It stays stored; the next start answers it (after the note it got now).
            logger.warning("could not forget a handled message", extra={"queued_id": queued_id})

    async def _handle_locked(
        self, message: IncomingMessage, addressed: bool, queued_id: int
    ) -> TurnOutcome:
        # Read inside the lock: a change made while this turn waited applies to it.
        settings = await self._settings.effective(
            team_id=message.team_id, channel_id=message.channel_id
        )
        ignored = (
            settings.enabled is False  # an admin switched the bot off in this channel
            or (not addressed and bool(settings.require_mention))  # follow-ups need a mention
        )
        if not ignored and not addressed:
            thread = await self._store.find_thread(
                team_id=message.team_id,
                channel_id=message.channel_id,
                thread_ts=message.thread_ts,
            )
            ignored = thread is None  # a thread the bot is not part of
        if ignored:
            await self._intake.forget(queued_id=queued_id)
            return TurnOutcome.IGNORED
        admission = await self._intake.admit_turn(
            team_id=message.team_id,
            channel_id=message.channel_id,
            thread_ts=message.thread_ts,
            user_id=message.user_id,
            user_ts=message.ts,
            event_id=message.event_id,
            model=settings.model,
            limits=_limits(message, settings),
            queued_id=queued_id,
        )
        if admission is None:
            # Another process took this message meanwhile (it thought this one gone) and
            # answers it: never two turns for one message.
            return TurnOutcome.DUPLICATE
        if isinstance(admission, LimitReached):
            # Budgets and limits: the user is told which, when they can ask again and who can
            # raise it; no model call is made. Forgotten only once told.
            notice = _limit_notice(admission)
            await _tell(self._sinks.open(message), notice, "", {"channel": message.channel_id})
            await self._intake.forget(queued_id=queued_id)
            return TurnOutcome.OVER_BUDGET
        return await self._run_turn(message, settings, admission)

    async def _run_turn(
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

        attempt = _Attempt(sink)
        try:
            try:
                # Inside the try: a failure while building the input closes the turn too.
                current, prefix, request = await self._first_request(message, settings, turn)
                attempt = _Attempt(sink, prefix)
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
        except ContextError as exc:
            # Slack would not give what the model needs (the thread, a file), or the
            # workspace is gone: the turn ends with a note that says so, never pending.
            logger.warning("could not build the model input: %s", exc.code, extra=log_extra)
            await self._store.fail_turn(turn_id=turn.turn_id, status="failed", error_code=exc.code)
            await _tell(sink, context_message(exc), attempt.partial_text, log_extra)
            return TurnOutcome.FAILED
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
        final_text = attempt.prefix + result.text + attempt.suffix
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
        except StorageError as exc:
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

    async def _first_request(
        self, message: IncomingMessage, settings: EffectiveSettings, turn: TurnStart
    ) -> tuple[TurnInput, str, ResponseRequest]:
        """The turn's input (and the notices shown before the answer) and its request."""
        current = await self._context.current(message)
        prefix = "".join(f"_{notice}_\n" for notice in current.notices)
        prefix = prefix + "\n" if prefix else ""
        items, previous = await self._plan(message, settings, turn, current)
        return current, prefix, self._request(settings, items, previous, message)

    def _request(
        self,
        settings: EffectiveSettings,
        items: list[dict[str, Any]],
        previous_response_id: str | None,
        message: IncomingMessage,
    ) -> ResponseRequest:
        return _build_request(
            settings,
            # Text from any source (history, file names) that no encoder takes is replaced.
            scrub(items),
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


def _addressed(message: IncomingMessage) -> bool:
    return message.mentions_bot or message.is_direct


def _log_storage_error(exc: StorageError, message: IncomingMessage) -> None:
    # str(exc) is the driver's own words ("attempt to write a readonly database", "disk I/O
    # error"), bounded, never the statement or its parameters.
    logger.error(
        "database unavailable; could not take the message: %s: %s",
        exc.code,
        exc,
        extra={"channel": message.channel_id, "thread_ts": message.thread_ts},
    )


_MESSAGE_FIELDS = tuple(field.name for field in fields(IncomingMessage))
_STORED_APART = ("team_id", "channel_id", "thread_ts", "ts", "user_id", "event_id")


def _payload(message: IncomingMessage) -> dict[str, Any]:
    """What an accepted message keeps besides its keys (see storage.intake)."""
    data = {name: getattr(message, name) for name in _MESSAGE_FIELDS if name not in _STORED_APART}
    data["files"] = [dict(file) for file in message.files]
    return data


def _message(queued: QueuedMessage) -> IncomingMessage:
    data = {name: value for name, value in queued.payload.items() if name in _MESSAGE_FIELDS}
    data["files"] = tuple(f for f in data.get("files") or () if isinstance(f, dict))
    return IncomingMessage(
        **data,
        team_id=queued.team_id,
        channel_id=queued.channel_id,
        thread_ts=queued.thread_ts,
        ts=queued.ts,
        user_id=queued.user_id,
        event_id=queued.event_id,
    )


def _limits(message: IncomingMessage, settings: EffectiveSettings) -> TurnLimits:
    # The reservation for the new message and its answer (the thread's size so far is added
    # in storage): about 4 characters per token, a page per file, the output cap.
    estimate = (
        (len(message.text) + len(settings.instructions or "")) // 4
        + 1_000 * len(message.files)
        + (settings.max_output_tokens or OUTPUT_RESERVE_TOKENS)
    )
    return TurnLimits(
        user_hourly_requests=settings.user_hourly_requests or 0,
        channel_daily_tokens=settings.daily_token_budget or 0,
        workspace_daily_tokens=settings.workspace_daily_token_budget or 0,
        reserve_tokens=estimate,
    )


def _limit_notice(limit: LimitReached) -> str:
    """What the person is told when a budget or limit stops their question."""
    if limit.kind == "user_hourly_requests":
        questions = "question" if limit.used == 1 else "questions"
        return (
            f":hourglass: You have asked {limit.used} {questions} in the last hour; the limit "
            f"is {limit.limit}. You can ask again after {_clock(limit.again_at)} UTC; an admin "
            "can raise the limit (`user_hourly_requests`)."
        )
    held = f", {limit.held:,} held by answers in progress" if limit.held else ""
    if limit.kind == "daily_token_budget":
        return (
            f":no_entry: This channel has used its daily budget of {limit.limit:,} tokens "
            f"({limit.used:,} used today{held}). It resets at 00:00 UTC; an admin can raise it "
            "with the settings command (`daily_token_budget`)."
        )
    return (
        f":no_entry: This workspace has used its daily budget of {limit.limit:,} tokens "
        f"({limit.used:,} used today{held}). It resets at 00:00 UTC; an admin can raise it "
        "(`set default workspace_daily_token_budget`)."
    )


def _clock(moment: datetime) -> str:
    """HH:MM in UTC, rounded up to the minute (at that minute the person may ask)."""
    moment = moment.astimezone(UTC)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return f"{moment:%H:%M}"
