"""The conversation service: each message accepted once, a thread's messages answered one at a
time in the order they were written, each turn admitted under the limits before it runs.

``accept`` claims and stores a message before Slack gets its acknowledgement (so nothing
accepted is lost and Slack's retries and the app_mention/message pair become one turn);
``answer`` takes the thread's lock and answers its waiting messages oldest first up to its own;
each becomes a turn only if it is for the bot and fits the limits (``bot.conversation.limits``),
and then runs (``bot.conversation.turn``).

Everything the bot itself says about a message (a refusal, a note, the reply sink's own words)
is in the language of the person who wrote it: the workspace's ``language`` setting when it
names one, else the person's locale from the ``LocaleSource`` (``bot.i18n`` holds the reader
in a context variable for the turn and the tasks it starts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.channel_settings import EffectiveSettings
from bot.conversation.capabilities import EndpointCapabilities
from bot.conversation.history import History
from bot.conversation.limits import Refused, admit
from bot.conversation.notes import BUSY_NOTE, STORAGE_NOTE
from bot.conversation.ports import (
    Approvals,
    ContextSource,
    ConversationStore,
    IncomingMessage,
    LocaleSource,
    MessageIntake,
    ModelClient,
    PersonLocale,
    ReplySinks,
    SettingsSource,
    ThreadLockProvider,
    Ticket,
    TranscriptStore,
    TurnOutcome,
)
from bot.conversation.recovery import Recovery
from bot.conversation.reply import tell
from bot.conversation.tool_ports import ToolCallStore, ToolRunner
from bot.conversation.tools import DenyingApprovals, ToolLoop
from bot.conversation.turn import TurnRunner
from bot.i18n import choose, from_slack_locale, reading
from bot.thread_locks import KeyedLocks
from bot.user_messages import INTERNAL_ERROR
from storage.errors import StorageError, ThreadLockTimeout
from storage.records import Acceptance, QueuedMessage, ToolCallRecord

__all__ = ["ConversationService"]

logger = logging.getLogger(__name__)


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
        locales: LocaleSource | None = None,
        tool_runner: ToolRunner | None = None,
        approvals: Approvals | None = None,
        tool_calls: ToolCallStore | None = None,
        on_tool_call: Callable[[ToolCallRecord], None] | None = None,
        max_tool_rounds: int = 8,
        tool_turn_timeout: float = 300.0,
    ) -> None:
        """``tool_runner``: the declared MCP servers' tools (None: none); ``approvals``: asks
        the asker before a tool marked ``require_approval`` runs (default: every such call is
        denied, and the model told so); ``tool_calls``: where calls are recorded;
        ``on_tool_call``: metrics for each call."""
        self._store = store
        self._locales = locales
        self._intake = intake
        # The process answering the messages it accepts (see storage.replicas).
        self._owner = replica_id
        # Outcomes of messages answered by another message's task (see _answer_in_order),
        # until their own task collects them.
        self._outcomes: dict[int, TurnOutcome] = {}
        self._sinks = sinks
        self._settings = settings
        self._locks = locks or KeyedLocks()
        self._thread_locks = thread_locks
        history = History(
            context=context,
            transcripts=transcripts,
            capabilities=capabilities,
            transcript_chars=transcript_chars,
        )
        self._turns = TurnRunner(
            store=store,
            model=model,
            sinks=sinks,
            context=context,
            history=history,
            recovery=Recovery(
                store=store,
                model=model,
                history=history,
                transcripts=transcripts,
                capabilities=capabilities,
                on_recovery=on_recovery,
            ),
            identity_salt=identity_salt,
            log_message_content=log_message_content,
            tools=ToolLoop(
                runner=tool_runner,
                approvals=approvals or DenyingApprovals(),
                records=tool_calls,
                on_call=on_tool_call,
                max_rounds=max_tool_rounds,
                turn_timeout=tool_turn_timeout,
            ),
        )

    async def handle(self, message: IncomingMessage) -> TurnOutcome:
        """Answer ``message`` if it is addressed to the bot; at most once per message."""
        return await self.answer(await self.accept(message))

    async def accept(self, message: IncomingMessage) -> Ticket:
        """Decide whether ``message`` may become a turn and, if so, store it (with its event
        claim) so that nothing accepted is lost: call this before Slack gets its answer. Fast:
        no lock is waited for and nothing is sent to Slack."""
        addressed = message.addressed
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
                payload=message.payload(),
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
                await self._tell(ticket.message, STORAGE_NOTE)
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
            if message.addressed:
                await self._tell(message, STORAGE_NOTE)
            return TurnOutcome.FAILED

    async def resume(self, queued: QueuedMessage) -> TurnOutcome:
        """Answer a message accepted by a process that is gone (adopted at start-up)."""
        return await self.answer(Ticket(IncomingMessage.from_queued(queued), queued_id=queued.id))

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
        message = IncomingMessage.from_queued(queued)
        addressed = message.addressed
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
                await self._tell(message, BUSY_NOTE)
                await self._intake.forget(queued_id=queued.id)
                return TurnOutcome.FAILED
        except StorageError as exc:
            # The database refused (read-only or full disk, locked past the busy timeout,
            # gone): say so rather than lose the message silently.
            _log_storage_error(exc, message)
            if addressed:
                await self._tell(message, STORAGE_NOTE)
            await self._forget_quietly(queued.id)
            return TurnOutcome.FAILED
        except Exception:
            # A bug of ours: one message must not take its thread down with it.
            logger.exception("message could not be handled", extra=extra)
            if addressed:
                await self._tell(message, INTERNAL_ERROR)
            await self._forget_quietly(queued.id)
            return TurnOutcome.FAILED

    async def _locale(self, message: IncomingMessage) -> PersonLocale:
        if self._locales is None:
            return PersonLocale()
        try:
            return await self._locales.locale(team_id=message.team_id, user_id=message.user_id)
        except Exception:  # a language is a courtesy: never worth a lost answer or note
            logger.warning("the author's locale could not be read; English", exc_info=True)
            return PersonLocale()

    async def _tell(self, message: IncomingMessage, note: str) -> None:
        """``note`` to ``message``'s thread, in its author's language (without the settings,
        which may be what failed: the person's own locale)."""
        person = await self._locale(message)
        with reading(from_slack_locale(person.locale), person.timezone):
            await tell(self._sinks.open(message), note, "", {})

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
        person = await self._locale(message)
        language = choose(settings.values.get("language"), person.locale)
        with reading(language, person.timezone):
            return await self._admit_and_run(message, settings, queued_id)

    async def _admit_and_run(
        self, message: IncomingMessage, settings: EffectiveSettings, queued_id: int
    ) -> TurnOutcome:
        admission = await admit(self._intake, message, settings, queued_id=queued_id)
        if admission is None:
            # Another process took this message meanwhile (it thought this one gone) and
            # answers it: never two turns for one message.
            return TurnOutcome.DUPLICATE
        if isinstance(admission, Refused):
            # Budgets and limits: the user is told which, when they can ask again and who can
            # raise it; no model call is made. Forgotten only once told.
            await tell(
                self._sinks.open(message), admission.notice, "", {"channel": message.channel_id}
            )
            await self._intake.forget(queued_id=queued_id)
            return TurnOutcome.OVER_BUDGET
        return await self._turns.run(message, settings, admission)


def _log_storage_error(exc: StorageError, message: IncomingMessage) -> None:
    # str(exc) is the driver's own words ("attempt to write a readonly database", "disk I/O
    # error"), bounded, never the statement or its parameters.
    logger.error(
        "database unavailable; could not take the message: %s: %s",
        exc.code,
        exc,
        extra={"channel": message.channel_id, "thread_ts": message.thread_ts},
    )
