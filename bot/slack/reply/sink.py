"""One turn's answer as the user watches it (see the package docstring): the ``ReplySink``
the turn streams into (and its ``StepSink``: the answer's steps, ``steps``), and the pump, the
one delivery task per answer that shows the text and the steps, one Slack call at a time, at
the priority of what it carries."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.conversation import IncomingMessage, ToolStep, TurnStopped
from bot.errors import DeliveryError
from bot.i18n import t
from bot.slack.budget import Priority
from bot.slack.render import MAX_MARKDOWN_CHARS, normalise
from bot.slack.reply.calls import Dropped, Expired, ReplyCalls, TooLate
from bot.slack.reply.draft import EMPTY_ANSWER, Draft
from bot.slack.reply.endings import AnswerEndings, Endings
from bot.slack.reply.indicator import WorkingIndicator
from bot.slack.reply.journal import DeliveryJournal, ResumeState
from bot.slack.reply.messages import AnswerMessages
from bot.slack.reply.steps import Steps
from bot.slack.workspaces import WorkspaceClients

__all__ = ["LiveReplySink", "LiveReplySinks"]

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = MAX_MARKDOWN_CHARS
RESCUE_WAIT = 120.0
"""Extra seconds for the new message that carries the rest when the deadline has passed."""
SHUTDOWN_WAIT = 5.0
"""Seconds a note may take when the turn is being cancelled by shutdown."""
STOP_CHECK_INTERVAL = 10.0
"""Seconds between checks, while a tool call runs, that the user has not pressed stop. Slack
sends no event for a stop: the sink learns it from Slack's answer to its next call on the
stream. While a step is in progress nothing else is sent, so its task card is sent again this
often (one ``chat.appendStream``, Tier 4, from the answer's own budget) to ask."""


class LiveReplySink:
    """One turn's answer; see the package docstring."""

    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        message: IncomingMessage,
        native_streaming: bool,
        flush_interval: float = 1.0,
        limit: int = MESSAGE_LIMIT,
        final_deadline: float = 600.0,
        journal: DeliveryJournal | None = None,
        resume: ResumeState | None = None,
        endings: Endings = (),
        loading_messages: Callable[[], Awaitable[Sequence[str]]] | None = None,
        background: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self._message = message
        self._flush_interval = flush_interval
        self._final_deadline = final_deadline
        self._background = background  # the sinks' courtesy tasks (cancelled at shutdown)
        self._calls = ReplyCalls(workspaces=workspaces, team_id=message.team_id)
        self._draft = Draft(limit=limit, resume=resume)
        self._steps = Steps()
        self._stopped = asyncio.Event()
        self._endings = AnswerEndings(endings)
        self._changed = asyncio.Event()
        self._text_ready = asyncio.Event()
        self._finishing = asyncio.Event()
        self._indicator = WorkingIndicator(
            calls=self._calls,
            message=message,
            text_ready=self._text_ready,
            loading_messages=loading_messages,
        )
        self._messages = AnswerMessages(
            calls=self._calls,
            draft=self._draft,
            endings=self._endings,
            message=message,
            native_streaming=native_streaming,
            journal=journal,
            steps=self._steps,
        )
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._last_shown_at = float("-inf")
        self._reasoning = False
        self._deadline = 0.0
        self._resumed = resume is not None

    # --- ReplySink -----------------------------------------------------------------------
    async def started(self) -> None:
        # Resolved here, not in the pump: a workspace that removed the app fails the turn
        # before any model call (``NotInstalledError``).
        await self._calls.resolve()
        self._ensure_pump(indicate=True)

    async def reasoning(self) -> None:
        self._raise_if_failed()
        if not self._reasoning:
            self._reasoning = True
            self._changed.set()

    async def delta(self, text: str) -> None:
        self._raise_if_failed()
        self._draft.raw += text
        self._changed.set()
        self._text_ready.set()
        self._ensure_pump(indicate=False)

    async def step(self, step: ToolStep) -> None:
        """``StepSink``: show ``step`` (a task card, or a line above the text); changes that
        come faster than Slack takes them are coalesced (``steps``)."""
        self._raise_if_failed()
        if self._draft.final is not None or not self._steps.update(step):
            return
        self._changed.set()
        self._text_ready.set()  # a message is about to be posted: the status must not linger
        self._ensure_pump(indicate=False)

    async def wait_stopped(self) -> None:
        """``StopSignal``: returns once the user has stopped the answer in Slack, which shows
        on the native stream only (see ``STOP_CHECK_INTERVAL``); the tool loop cancels the
        running calls then."""
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_CHECK_INTERVAL):
                    await self._stopped.wait()
            live = self._draft.live
            if self._stopped.is_set() or self._draft.final is not None:
                continue
            if self._error is not None:
                # Slack refused this answer already: asking again would start the pump anew.
                # The turn learns of the failure from its next call to the sink.
                await self._stopped.wait()
                return
            if live is not None and live.native and self._steps.touch_running():
                self._changed.set()
                self._ensure_pump(indicate=False)

    async def finish(self, text: str) -> str | None:
        draft = self._draft
        draft.reconcile(text, correct=True)
        if (draft.nothing_shown() or self._steps) and not normalise(draft.raw):
            draft.raw = t(EMPTY_ANSWER)
        if isinstance(self._error, TurnStopped):
            # The user pressed stop as the model finished: the message keeps what it shows.
            raise DeliveryError("the user stopped the answer", code="stopped_by_user")
        self._endings.on = True
        return await self._close()

    async def fail(self, notice: str, partial_text: str) -> str | None:
        draft = self._draft
        if isinstance(self._error, TurnStopped):
            # The user stopped the stream: it keeps what it showed; the note follows it.
            self._error = None
            if draft.live is not None and draft.live.native:
                self._calls.stream_closed()
            draft.restart(notice)
            return await self._close()
        if isinstance(self._error, DeliveryError):
            self._error = None  # try to say so in a new message
            draft.restart(notice)
            return await self._close()
        draft.reconcile(partial_text)
        visible = normalise(draft.raw)
        draft.raw = visible + "\n\n" + notice if visible else notice
        return await self._close()

    # --- the pump ------------------------------------------------------------------------
    def _ensure_pump(self, *, indicate: bool) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(indicate=indicate))

    async def _close(self) -> str | None:
        self._raise_if_failed()  # Slack refused this answer already: say so, don't retry it
        loop = asyncio.get_running_loop()
        self._draft.final = self._draft.raw
        self._deadline = loop.time() + self._final_deadline
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Shutdown is cancelling this turn: a short last try, then let it go.
            self._deadline = min(self._deadline, loop.time() + SHUTDOWN_WAIT)
        self._finishing.set()
        self._changed.set()
        self._text_ready.set()
        self._ensure_pump(indicate=False)
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            self._task.cancel()
            raise
        self._raise_if_failed()
        await self._indicator.clear()
        if self._endings.later is not None and self._background is not None:
            later = asyncio.create_task(
                self._endings.add_later(
                    self._calls,
                    channel=self._message.channel_id,
                    deadline=loop.time() + self._final_deadline,
                )
            )
            self._background.add(later)
            later.add_done_callback(self._background.discard)
        return self._draft.first_ts

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _pump(self, *, indicate: bool) -> None:
        draft = self._draft
        try:
            await self._calls.resolve()
            if indicate and not self._resumed:
                await self._indicator.show()
            while draft.final is None:
                if not self._has_news():
                    if self._reasoning_pending():
                        await self._indicator.reasoning()
                        continue
                    self._changed.clear()
                    if draft.final is None and not self._has_news():
                        await self._changed.wait()
                    continue
                try:
                    if (draft.messages or draft.live is not None) and not self._first_text():
                        if not await self._until_next_update():
                            continue  # the final text arrived meanwhile
                        # An update still waiting for its slot when the final text comes is
                        # dropped: the final text replaces it.
                        with contextlib.suppress(Dropped):
                            await self._calls.unless(
                                self._finishing, lambda: self._step(Priority.UPDATE)
                            )
                    else:
                        await self._step(Priority.FIRST)
                except TooLate:
                    continue  # this update waited too long: the next one shows more
                except Expired:
                    logger.info("native stream expired; continuing in a new message")
                    self._messages.abandon_live()
            if draft.correction is not None:
                await self._messages.rewrite(draft.correction, deadline=self._deadline)
            else:
                await self._deliver_final()
        except (DeliveryError, TurnStopped) as exc:
            self._error = exc
            if isinstance(exc, TurnStopped):
                self._stopped.set()
        except Exception as exc:  # never lose a failure inside the task
            logger.exception("answer delivery failed")
            self._error = DeliveryError(f"delivery failed: {type(exc).__name__}", code="internal")

    def _first_text(self) -> bool:
        """The open message shows only steps so far, and text is ready: it goes at once, as
        an answer's first text does."""
        live = self._draft.live
        return live is not None and live.known and not live.shown and self._draft.has_news()

    def _has_news(self) -> bool:
        return self._draft.has_news() or self._steps.news()

    def _reasoning_pending(self) -> bool:
        return (
            self._reasoning and self._draft.nothing_shown() and self._indicator.reasoning_pending()
        )

    async def _until_next_update(self) -> bool:
        """Wait out the update interval; False if the final text arrived meanwhile."""
        loop = asyncio.get_running_loop()
        wait = self._last_shown_at + self._flush_interval - loop.time()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._finishing.wait()
        return self._draft.final is None

    async def _deliver_final(self) -> None:
        rescued = False
        while True:
            if not self._draft.chunks() and self._draft.live is None:
                return
            await self._messages.record()
            try:
                await self._step(Priority.FINAL, final=True)
            except Expired:
                if rescued:
                    raise DeliveryError(
                        "the answer could not be finished within the deadline", code="ratelimited"
                    ) from None
                # The message could not be finished in time: the rest goes in a new one.
                logger.warning("deadline passed finishing a message; the rest follows in a new one")
                rescued = True
                self._messages.abandon_live()
                self._deadline = max(
                    self._deadline, asyncio.get_running_loop().time() + RESCUE_WAIT
                )

    async def _step(self, priority: Priority, *, final: bool = False) -> None:
        """Bring Slack one call closer to the text: open a message, grow it, or close it."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline if final or priority == Priority.FIRST else None
        if priority == Priority.FIRST:
            deadline = loop.time() + self._final_deadline
        if self._draft.live is None:
            await self._messages.open(priority, final=final, deadline=deadline)
        elif final or len(self._draft.chunks()) > 1:
            await self._messages.finish_live(priority, deadline=deadline)
        else:
            await self._messages.grow(priority, deadline=deadline)
        self._last_shown_at = loop.time()


class LiveReplySinks:
    """Opens one ``LiveReplySink`` per turn; each resolves its team's client (the team's bot
    token) when the turn starts, so ``open()`` stays synchronous."""

    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        native_streaming: bool = True,
        flush_interval: float = 1.0,
        final_deadline: float = 600.0,
        journal: DeliveryJournal | None = None,
        endings: Callable[[IncomingMessage], Endings] | None = None,
        loading_messages: Callable[[IncomingMessage], Awaitable[Sequence[str]]] | None = None,
    ) -> None:
        """``endings``: the blocks a finished answer to a message ends with (the feedback
        buttons); ``loading_messages``: the workspace's loading messages for a message."""
        self._workspaces = workspaces
        self._native_streaming = native_streaming
        self._flush_interval = flush_interval
        self._final_deadline = final_deadline
        self._journal = journal
        self._endings = endings
        self._loading_messages = loading_messages
        self._background: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Cancel the courtesy work still waiting for a slot (buttons added after the text)."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def open(self, message: IncomingMessage, *, resume: ResumeState | None = None) -> LiveReplySink:
        return LiveReplySink(
            workspaces=self._workspaces,
            message=message,
            native_streaming=self._native_streaming,
            flush_interval=self._flush_interval,
            final_deadline=self._final_deadline,
            journal=self._journal,
            resume=resume,
            endings=self._endings(message) if self._endings else (),
            loading_messages=(
                functools.partial(self._loading_messages, message)
                if self._loading_messages
                else None
            ),
            background=self._background,
        )
