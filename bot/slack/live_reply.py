"""A turn's answer as the user watches it: status at once, then text that grows, then the
exact whole answer, split over several messages only when one cannot hold it.

The model is never made to wait for Slack: ``delta`` only adds to the text, and one delivery
task per answer (the pump) shows it, one Slack call at a time, each waiting for its slot in
the workspace's rate budget (``bot.slack.budget``) at the priority of what it carries:

1. the **first visible text** goes as soon as the first delta arrives (``Priority.FIRST``);
2. **intermediate updates** follow at most once per ``flush_interval``, each asking for a slot
   at ``Priority.UPDATE`` and sending the LATEST text when the slot comes, so under load every
   message gets its fair share of what the budget has left, down to none;
3. the **final text** (``Priority.FINAL``) replaces a pending update; a 429 is waited out
   until ``final_deadline`` (10 minutes by default). If the message cannot be finished by then,
   the rest of the answer goes in a new message. ``finish`` returns only once Slack holds the
   whole answer.

Two ways to show growing text:
- Slack's native streaming (``chat.startStream`` / ``appendStream`` / ``stopStream``), chosen
  per answer only when the Tier-2 budget has a start slot now and a stop slot for every stream
  open (``RateBudget.try_open_stream``), so neither call is refused for rate; a refused or
  expired stream continues in the fallback without losing or repeating text;
- the fallback: ``chat.postMessage`` then ``chat.update`` with the whole message each time.

Every message is a chunk of the one splitter (``render.chunk_markdown``): an answer of ``n``
characters takes at most ``ceil(n / limit) + 2`` messages, whatever the model writes. Text is
sent only up to where a broadcast mention could still be completed by the next delta
(``render.stream_safe_length``); the client neutralises the mentions themselves.

While the final text is delivered, the sink notes each message it opens in a
``DeliveryJournal`` (the turn's row), so that after a restart ``resume`` can finish the same
messages instead of posting the answer twice.

A finished answer's last message carries the answer's *endings* (the feedback buttons, see
``bot.slack.feedback``): in ``chat.stopStream`` or its final ``chat.postMessage`` /
``chat.update``, so they cost no call of their own; where Slack refuses one ending's blocks
the next is tried, and the answer is never lost to its buttons. Notes (``fail``) carry none.
The thread status is cleared explicitly whatever the outcome.

Every Slack failure leaves as ``DeliveryError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import IncomingMessage, TurnStopped
from bot.errors import DeliveryError
from bot.slack.budget import Priority, RateBudget, retry_after
from bot.slack.client import ScheduledWebClient, scheduled_call, send_now
from bot.slack.render import (
    MAX_MARKDOWN_CHARS,
    Chunk,
    chunk_markdown,
    live_room,
    message_payload,
    normalise,
    reopen_at,
    stream_payload,
    stream_safe_length,
)
from bot.slack.workspaces import WorkspaceClients

__all__ = ["DeliveryJournal", "LiveReplySink", "LiveReplySinks", "ResumeState"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MESSAGE_LIMIT = MAX_MARKDOWN_CHARS
EMPTY_ANSWER = "_(The model returned an empty answer.)_"
THINKING_STATUS = "is thinking…"
REASONING_STATUS = "is reasoning…"
LOADING_MESSAGES = ["Reading the thread…", "Thinking it through…", "Writing an answer…"]
WORKING_REACTION = "hourglass_flowing_sand"
INDICATOR_WAIT = 60.0
"""Seconds the status may wait for its slot. It is dropped, unsent, as soon as text is ready
to show (a status set after the reply would linger), so under load it never delays text."""
RESCUE_WAIT = 120.0
"""Extra seconds for the new message that carries the rest when the deadline has passed."""
SHUTDOWN_WAIT = 5.0
"""Seconds a note may take when the turn is being cancelled by shutdown."""

_SLACK_ERRORS = (SlackApiError, SlackClientError, aiohttp.ClientError, OSError)
# What Slack answers when it will not take a message's blocks: try the next ending.
_REFUSED_BLOCKS = frozenset({"invalid_blocks", "invalid_blocks_format", "invalid_arguments"})

Blocks = Sequence[dict[str, Any]]
Endings = Sequence[Blocks]
"""Blocks to end a finished answer with, best first (see the module docstring)."""


class DeliveryJournal(Protocol):
    """Where a final answer's progress is noted (the turn's row), keyed by the user message."""

    async def record_delivery(
        self, *, team_id: str, channel_id: str, user_ts: str, state: str
    ) -> None: ...


@dataclass(frozen=True)
class ResumeState:
    """Where a final answer's delivery was when the process stopped (``DeliveryJournal``)."""

    ts: str | None
    """The message being finished, if one was open."""
    native: bool
    start: int
    head: str
    waste: int
    first_ts: str | None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | None) -> ResumeState | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                ts=data.get("ts"),
                native=bool(data.get("native")),
                start=int(data.get("start", 0)),
                head=str(data.get("head", "")),
                waste=int(data.get("waste", 0)),
                first_ts=data.get("first_ts"),
            )
        except (ValueError, TypeError, AttributeError):
            return None


def _api_name(method: str) -> str:
    return method.replace("_", ".", 1)


def _error_code(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or "slack_api_error")
    if isinstance(exc, TimeoutError):
        return "ratelimited"
    return "slack_unreachable"


def _delivery_error(method: str, exc: Exception) -> DeliveryError:
    code = _error_code(exc)
    return DeliveryError(f"{method} failed: {code}", code=code)


@dataclass
class _Live:
    """The message that may still change."""

    ts: str
    native: bool
    shown: str
    """What it shows (the chunk's head included, before neutralisation)."""


class _Expired(Exception):
    """The message can no longer be changed (its stream expired, or see ``_TooLate``)."""


class _TooLate(_Expired):
    """The call's deadline passed while it waited for its slot (429s included)."""


class LiveReplySink:
    """One turn's answer; see the module docstring."""

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
        self._workspaces = workspaces
        self._endings = endings
        self._with_endings_on = False  # only a finished answer (not a note) carries them
        self._endings_later: tuple[str, str] | None = None  # (ts, text) still without them
        self._endings_shown = False
        self._background = background  # the sinks' courtesy tasks (cancelled at shutdown)
        self._loading_messages = loading_messages
        self._message = message
        self._native_streaming = native_streaming
        self._flush_interval = flush_interval
        self._limit = limit
        self._final_deadline = final_deadline
        self._journal = journal
        self._client: AsyncWebClient | None = None
        self._raw = ""  # every delta so far (and the final text once known)
        self._final: str | None = None
        self._changed = asyncio.Event()
        self._text_ready = asyncio.Event()
        self._finishing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._start, self._head, self._waste = 0, "", 0
        self._live: _Live | None = None
        self._first_ts: str | None = None
        self._posted: list[str] = []  # every message of this answer, in order
        self._correction: str | None = None  # a final text that does not extend the stream
        self._messages = 0
        self._last_shown_at = float("-inf")
        self._sending = False
        self._status_shown = False
        self._reasoning = False
        self._reasoning_shown = False
        self._reacted = False
        self._deadline = 0.0
        self._resumed = resume
        if resume is not None:
            self._start, self._head, self._waste = resume.start, resume.head, resume.waste
            self._first_ts = resume.first_ts
            if resume.ts is not None:
                self._live = _Live(resume.ts, resume.native, shown="")

    # --- ReplySink -----------------------------------------------------------------------
    async def started(self) -> None:
        # Resolved here, not in the pump: a workspace that removed the app fails the turn
        # before any model call (``WorkspaceNotInstalled``).
        self._client = await self._workspaces.client(self._message.team_id)
        self._ensure_pump(indicate=True)

    async def reasoning(self) -> None:
        self._raise_if_failed()
        if not self._reasoning:
            self._reasoning = True
            self._changed.set()

    async def delta(self, text: str) -> None:
        self._raise_if_failed()
        self._raw += text
        self._changed.set()
        self._text_ready.set()
        self._ensure_pump(indicate=False)

    async def finish(self, text: str) -> str | None:
        self._reconcile(text, correct=True)
        if self._messages == 0 and self._live is None and not normalise(self._raw):
            self._raw = EMPTY_ANSWER
        if isinstance(self._error, TurnStopped):
            # The user pressed stop as the model finished: the message keeps what it shows.
            raise DeliveryError("the user stopped the answer", code="stopped_by_user")
        self._with_endings_on = True
        return await self._close()

    async def fail(self, notice: str, partial_text: str) -> str | None:
        if isinstance(self._error, TurnStopped):
            # The user stopped the stream: it keeps what it showed; the note follows it.
            self._error = None
            if self._live is not None and self._live.native:
                self._budget_stream_closed()
            self._live = None
            self._raw, self._start, self._head = notice, 0, ""
            return await self._close()
        if isinstance(self._error, DeliveryError):
            self._error = None  # try to say so in a new message
            self._live = None
            self._raw, self._start, self._head = notice, 0, ""
            return await self._close()
        self._reconcile(partial_text)
        visible = normalise(self._raw)
        self._raw = visible + "\n\n" + notice if visible else notice
        return await self._close()

    # --- the pump ------------------------------------------------------------------------
    def _ensure_pump(self, *, indicate: bool) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(indicate=indicate))

    async def _close(self) -> str | None:
        self._raise_if_failed()  # Slack refused this answer already: say so, don't retry it
        loop = asyncio.get_running_loop()
        self._final = self._raw
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
        await self._clear_indicator()
        if self._endings_later is not None and self._background is not None:
            task = asyncio.create_task(self._add_endings_later(*self._endings_later))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return self._first_ts

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _pump(self, *, indicate: bool) -> None:
        try:
            if self._client is None:
                self._client = await self._workspaces.client(self._message.team_id)
            if indicate and self._resumed is None:
                await self._indicate()
            while self._final is None:
                if not self._has_news():
                    if self._reasoning_pending():
                        await self._show_reasoning()
                        continue
                    self._changed.clear()
                    if self._final is None and not self._has_news():
                        await self._changed.wait()
                    continue
                try:
                    if self._messages or self._live is not None:
                        if not await self._until_next_update():
                            continue  # the final text arrived meanwhile
                        await self._race_final(lambda: self._step(Priority.UPDATE))
                    else:
                        await self._step(Priority.FIRST)
                except _TooLate:
                    continue  # this update waited too long: the next one shows more
                except _Expired:
                    logger.info("native stream expired; continuing in a new message")
                    self._abandon_live()
            if self._correction is not None:
                await self._rewrite(self._correction)
            else:
                await self._deliver_final()
        except (DeliveryError, TurnStopped) as exc:
            self._error = exc
        except Exception as exc:  # never lose a failure inside the task
            logger.exception("answer delivery failed")
            self._error = DeliveryError(f"delivery failed: {type(exc).__name__}", code="internal")

    def _has_news(self) -> bool:
        if self._live is None:
            # Something visible to open a message with (a held-back "@he" is not yet).
            return bool(self._candidate().strip()) or len(self._chunks()) > 1
        return len(self._candidate()) > len(self._live.shown) or len(self._chunks()) > 1

    async def _until_next_update(self) -> bool:
        """Wait out the update interval; False if the final text arrived meanwhile."""
        loop = asyncio.get_running_loop()
        wait = self._last_shown_at + self._flush_interval - loop.time()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._finishing.wait()
        return self._final is None

    async def _race_final(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run an update, but drop it while it waits for its slot if the final text comes."""
        task: asyncio.Task[None] = asyncio.create_task(step())
        finishing = asyncio.create_task(self._finishing.wait())
        try:
            await asyncio.wait({task, finishing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finishing.cancel()
        if not task.done() and not self._sending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _deliver_final(self) -> None:
        rescued = False
        while True:
            chunks = self._chunks()
            if not chunks and self._live is None:
                return
            await self._record()
            try:
                await self._step(Priority.FINAL, final=True)
            except _Expired:
                if rescued:
                    raise DeliveryError(
                        "the answer could not be finished within the deadline", code="ratelimited"
                    ) from None
                # The message could not be finished in time: the rest goes in a new one.
                logger.warning("deadline passed finishing a message; the rest follows in a new one")
                rescued = True
                self._abandon_live()
                self._deadline = max(
                    self._deadline, asyncio.get_running_loop().time() + RESCUE_WAIT
                )

    async def _rewrite(self, text: str) -> None:
        """The final text replaces the streamed draft: each message of the answer gets its
        chunk (``chat.update``), extra chunks are posted, messages left over are deleted."""
        logger.info("the final answer differs from the streamed text; correcting the messages")
        channel = self._message.channel_id
        deadline = self._deadline
        live = self._live
        if live is not None and live.native:
            # End the stream as it stands; its message is then rewritten like any other.
            with contextlib.suppress(_Expired, DeliveryError):
                await self._call(
                    "chat.stopStream", lambda: {"channel": channel, "ts": live.ts},
                    Priority.FINAL, deadline,
                )  # fmt: skip
            self._budget_stream_closed()
        self._live = None
        # Nothing is noted for a restart while rewriting: the held text is the final one, and
        # a resume posts it whole rather than guess which draft message holds what.
        if self._journal is not None:
            self._start, self._head, self._waste = 0, "", 0
            await self._record()
        chunks = chunk_markdown(normalise(text) or EMPTY_ANSWER, limit=self._limit)
        posted = list(self._posted)

        def arguments(**values: Any) -> Callable[[], dict[str, Any]]:
            return lambda: {"channel": channel, **values}

        try:
            for index, chunk in enumerate(chunks):
                last = index == len(chunks) - 1
                if index < len(posted):
                    ts = posted[index]

                    async def update(ending: Blocks, text: str = chunk.text, ts: str = ts) -> Any:
                        payload = _with_blocks(message_payload(text), ending)
                        return await self._call(
                            "chat.update", arguments(ts=ts, **payload), Priority.FINAL, deadline
                        )

                    await self._ending_tried(last, update)
                    continue

                async def post(ending: Blocks, text: str = chunk.text) -> Any:
                    return await self._call(
                        "chat.postMessage",
                        arguments(
                            thread_ts=self._message.thread_ts,
                            unfurl_links=False,
                            unfurl_media=False,
                            **_with_blocks(message_payload(text), ending),
                        ),
                        Priority.FINAL,
                        deadline,
                        channel=channel,
                    )

                response = await self._ending_tried(last, post)
                self._posted.append(str(response["ts"]))
                self._first_ts = self._first_ts or str(response["ts"])
            for ts in posted[len(chunks) :]:
                await self._call("chat.delete", arguments(ts=ts), Priority.FINAL, deadline)
        except _Expired as exc:
            raise DeliveryError(
                "the answer could not be corrected within the deadline", code="ratelimited"
            ) from exc

    # --- one Slack call --------------------------------------------------------------------
    def _text(self) -> str:
        return normalise(self._final if self._final is not None else self._raw)

    def _chunks(self) -> list[Chunk]:
        keep = len(self._live.shown) - len(self._head) if self._live and self._live.native else 0
        return chunk_markdown(
            self._text(),
            limit=self._limit,
            start=self._start,
            head=self._head,
            waste=self._waste,
            keep=max(0, keep),
        )

    def _candidate(self) -> str:
        """What the open message may show now, while the answer still grows."""
        text = self._text()
        chunks = self._chunks()
        if not chunks:
            return self._live.shown if self._live else ""
        if len(chunks) > 1:
            first = chunks[0]
            return first.text[: len(first.text) - len(first.closing)]
        body = text[self._start :]
        if self._live is None or self._live.native:
            room = live_room(
                text, limit=self._limit, start=self._start, head=self._head, waste=self._waste
            )
            body = body[:room]
        body = body[: stream_safe_length(body)]
        return self._head + body if body.strip() else (self._live.shown if self._live else "")

    async def _step(self, priority: Priority, *, final: bool = False) -> None:
        """Bring Slack one call closer to the text: open a message, grow it, or close it."""
        assert self._client is not None
        deadline = self._deadline if final or priority == Priority.FIRST else None
        if priority == Priority.FIRST:
            deadline = asyncio.get_running_loop().time() + self._final_deadline
        if self._live is None:
            await self._open(priority, final=final, deadline=deadline)
        elif final or len(self._chunks()) > 1:
            await self._finish_live(priority, deadline=deadline)
        else:
            await self._grow(priority, deadline=deadline)
        self._last_shown_at = asyncio.get_running_loop().time()

    async def _open(self, priority: Priority, *, final: bool, deadline: float | None) -> None:
        budget = self._budget()
        if not final and self._native_streaming and budget is not None and budget.try_open_stream():
            text = self._candidate()
            try:
                response = await send_now(
                    self._client_or_fail(),
                    "chat.startStream",
                    {
                        "channel": self._message.channel_id,
                        "thread_ts": self._message.thread_ts,
                        "recipient_user_id": self._message.user_id,
                        "recipient_team_id": self._message.team_id,
                        **stream_payload(text),
                    },
                )
            except _SLACK_ERRORS as exc:
                budget.stream_closed()
                wait = retry_after(exc) if isinstance(exc, SlackApiError) else None
                if wait is not None:  # over budget after all (another replica?): tell it
                    budget.pause("chat.startStream", wait)
                logger.info("native streaming refused (%s); using chat.update", _error_code(exc))
            else:
                self._opened(str(response["ts"]), native=True, shown=text)
                return
        decided: dict[str, Any] = {}
        # Which endings to try is decided when the slot comes (the final text may have arrived
        # while this post waited): a short answer then goes out whole, buttons included, in
        # one call.
        choices: list[Blocks] = []
        attempt = 0

        def build() -> dict[str, Any]:
            self._sending = True
            chunks = self._chunks()
            closing = self._final is not None or len(chunks) > 1
            text = chunks[0].text if closing and chunks else self._candidate()
            if not choices:
                last = self._final is not None and len(chunks) <= 1
                choices.extend([*self._endings, ()] if last and self._ending_wanted() else [()])
            ending = choices[attempt]
            decided.update(
                text=text, chunk=chunks[0] if closing and chunks else None, ending=bool(ending)
            )
            return {
                "channel": self._message.channel_id,
                "thread_ts": self._message.thread_ts,
                "unfurl_links": False,
                "unfurl_media": False,
                **_with_blocks(message_payload(text), ending),
            }

        while True:
            try:
                response = await self._call(
                    "chat.postMessage", build, priority, deadline, channel=self._message.channel_id
                )
                break
            except DeliveryError as exc:
                if attempt + 1 >= len(choices) or exc.code not in _REFUSED_BLOCKS:
                    raise
                logger.info("Slack refused an answer ending (%s); trying the next", exc.code)
                attempt += 1
        self._endings_shown = self._endings_shown or decided["ending"]
        self._opened(str(response["ts"]), native=False, shown=decided["text"])
        if decided["chunk"] is not None:
            self._advance(decided["chunk"])

    async def _grow(self, priority: Priority, *, deadline: float | None) -> None:
        live = self._live
        assert live is not None
        shown: dict[str, str] = {}
        if live.native:

            def build_append() -> dict[str, Any]:
                self._sending = True
                text = self._candidate()
                shown["text"] = text
                return {
                    "channel": self._message.channel_id,
                    "ts": live.ts,
                    **stream_payload(text[len(live.shown) :]),
                }

            if len(self._candidate()) <= len(live.shown):
                return
            await self._call("chat.appendStream", build_append, priority, deadline)
        else:

            def build_update() -> dict[str, Any]:
                self._sending = True
                text = self._candidate()
                shown["text"] = text
                return {"channel": self._message.channel_id, "ts": live.ts, **message_payload(text)}

            await self._call("chat.update", build_update, priority, deadline)
        live.shown = shown["text"]

    async def _finish_live(self, priority: Priority, *, deadline: float | None) -> None:
        live = self._live
        assert live is not None
        chunk = self._chunks()[0] if self._chunks() else None
        text = chunk.text if chunk else live.shown
        last = self._final is not None and self._is_last_chunk()
        if live.native and live.shown and text.startswith(live.shown):
            rest = text[len(live.shown) :]

            async def stop(ending: Blocks) -> Any:
                def build_stop() -> dict[str, Any]:
                    self._sending = True
                    arguments = {"channel": self._message.channel_id, "ts": live.ts}
                    return {**arguments, **stream_payload(rest), **_blocks_argument(ending)}

                return await self._call("chat.stopStream", build_stop, priority, deadline)

            await self._ending_tried(last, stop)
            self._budget_stream_closed()
        elif not live.native and live.shown == text:
            # The last update already showed exactly this: nothing to send for the text. The
            # buttons alone are not worth a Tier-3 update ahead of other answers' text: they
            # follow later, at the lowest priority (see ``_add_endings_later``).
            if last and self._ending_wanted() and not self._endings_shown:
                self._endings_later = (live.ts, text)
        else:
            if live.native:
                # Resumed after a restart: what the stream shows is unknown. End it if it is
                # still open, then give the message its whole chunk.
                with contextlib.suppress(*_SLACK_ERRORS, DeliveryError, _Expired):
                    await self._call(
                        "chat.stopStream",
                        lambda: {"channel": self._message.channel_id, "ts": live.ts},
                        priority,
                        deadline,
                    )

            async def update(ending: Blocks) -> Any:
                return await self._call(
                    "chat.update",
                    lambda: {
                        "channel": self._message.channel_id,
                        "ts": live.ts,
                        **_with_blocks(message_payload(text), ending),
                    },
                    priority,
                    deadline,
                )

            await self._ending_tried(last, update)
        self._live = None
        if chunk is not None:
            self._advance(chunk)

    # --- the answer's endings (feedback buttons) -----------------------------------------
    async def _add_endings_later(self, ts: str, text: str) -> None:
        """Give a finished message (whose text Slack already holds whole) its endings, when
        the workspace's ``chat.update`` budget has room: a courtesy, never at the expense of
        another answer's text."""
        deadline = asyncio.get_running_loop().time() + self._final_deadline

        async def update(ending: Blocks) -> Any:
            return await self._call(
                "chat.update",
                lambda: {
                    "channel": self._message.channel_id,
                    "ts": ts,
                    **_with_blocks(message_payload(text), ending),
                },
                Priority.UPDATE,
                deadline,
            )

        try:
            await self._ending_tried(True, update)
        except (DeliveryError, TurnStopped, _Expired) as exc:
            logger.info("could not add the feedback buttons: %s", type(exc).__name__)

    def _is_last_chunk(self) -> bool:
        return len(self._chunks()) <= 1

    def _ending_wanted(self) -> bool:
        return self._with_endings_on and bool(self._endings)

    async def _ending_tried(self, last: bool, send: Callable[[Blocks], Awaitable[T]]) -> T:
        """``send`` with the first ending Slack takes (only for the answer's last message),
        else with none: an answer is never lost to its buttons."""
        choices: list[Blocks] = [*self._endings, ()] if last and self._ending_wanted() else [()]
        for ending in choices[:-1]:
            try:
                result = await send(ending)
            except DeliveryError as exc:
                if exc.code not in _REFUSED_BLOCKS:
                    raise
                logger.info("Slack refused an answer ending (%s); trying the next", exc.code)
            else:
                self._endings_shown = True
                return result
        return await send(choices[-1])

    async def _call(
        self,
        method: str,
        build: Callable[[], dict[str, Any]],
        priority: Priority,
        deadline: float | None,
        *,
        channel: str | None = None,
    ) -> Any:
        self._sending = False
        try:
            return await scheduled_call(
                self._client_or_fail(),
                method,
                build,
                priority=priority,
                deadline=deadline,
                channel=channel,
            )
        except SlackApiError as exc:
            code = exc.response.get("error")
            if code == "message_not_in_streaming_state":
                raise _Expired from exc
            if code == "stopped_by_user":
                raise TurnStopped from exc
            if exc.response.status_code == 429:
                raise _TooLate from exc  # the deadline passed waiting out 429s
            raise _delivery_error(method, exc) from exc
        except TimeoutError as exc:
            raise _TooLate from exc
        except _SLACK_ERRORS as exc:
            raise _delivery_error(method, exc) from exc
        finally:
            self._sending = False

    # --- state -----------------------------------------------------------------------------
    def _opened(self, ts: str, *, native: bool, shown: str) -> None:
        self._live = _Live(ts, native, shown)
        self._messages += 1
        self._posted.append(ts)
        self._first_ts = self._first_ts or ts

    def _advance(self, chunk: Chunk) -> None:
        """``chunk`` is in Slack for good: the next message starts after it."""
        self._live = None
        self._start, self._head, self._waste = chunk.end, chunk.reopen, chunk.waste

    def _abandon_live(self) -> None:
        """The open message keeps what it shows; the rest continues in a new message."""
        live = self._live
        if live is None:
            return
        if live.native:
            self._budget_stream_closed()
        shown_body = max(0, len(live.shown) - len(self._head))
        text = self._text()
        self._waste += self._limit - shown_body
        self._start += shown_body
        self._head = reopen_at(text, self._start, limit=self._limit) if shown_body else self._head
        self._live = None

    def _reconcile(self, text: str, *, correct: bool = False) -> None:
        """Make sure everything in ``text`` gets shown, once. With ``correct``, a final text
        that does not extend what was streamed (a relay streamed reasoning as answer text)
        replaces it: the final response's text wins."""
        if text.startswith(self._raw):
            self._raw = text
        elif text and correct:
            self._correction = text
        elif text:
            logger.warning("the text differs from the streamed text; keeping the stream")

    async def _record(self) -> None:
        if self._journal is None:
            return
        live = self._live
        state = ResumeState(
            ts=live.ts if live else None,
            native=bool(live and live.native),
            start=self._start,
            head=self._head,
            waste=self._waste,
            first_ts=self._first_ts,
        )
        try:
            await self._journal.record_delivery(
                team_id=self._message.team_id,
                channel_id=self._message.channel_id,
                user_ts=self._message.ts,
                state=state.to_json(),
            )
        except Exception as exc:  # the journal is a safety net; delivery goes on without it
            logger.warning("could not note delivery progress: %s", type(exc).__name__)

    def _budget(self) -> RateBudget | None:
        client = self._client
        return client.budget if isinstance(client, ScheduledWebClient) else None

    def _budget_stream_closed(self) -> None:
        budget = self._budget()
        if budget is not None:
            budget.stream_closed()

    def _client_or_fail(self) -> AsyncWebClient:
        assert self._client is not None, "set by the pump first"
        return self._client

    # --- the working indicator ----------------------------------------------------------------
    async def _indicate(self) -> None:
        """The thread status (or a reaction where it is refused), unless text came first."""
        deadline = asyncio.get_running_loop().time() + INDICATOR_WAIT
        message = self._message
        loading = await self._loading()

        def status() -> dict[str, Any]:
            self._sending = True
            return {
                "channel_id": message.channel_id,
                "thread_ts": message.thread_ts,
                "status": THINKING_STATUS,
                "loading_messages": loading,
            }

        def reaction() -> dict[str, Any]:
            self._sending = True
            return {
                "channel": message.channel_id,
                "timestamp": message.ts,
                "name": WORKING_REACTION,
            }

        async def call(method: str, build: Callable[[], dict[str, Any]]) -> None:
            await scheduled_call(
                self._client_or_fail(), method, build, priority=Priority.NORMAL, deadline=deadline
            )

        try:
            await self._before_text(lambda: call("assistant.threads.setStatus", status))
        except TimeoutError:
            return  # busy: the text will show work soon enough
        except _SLACK_ERRORS as exc:
            if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
                return
            logger.info("thread status refused (%s); using a reaction", _error_code(exc))
        else:
            self._status_shown = True
            return
        try:
            await self._before_text(lambda: call("reactions.add", reaction))
            self._reacted = True
        except (TimeoutError, *_SLACK_ERRORS) as exc:
            logger.info("could not show a working reaction either (%s)", _error_code(exc))

    async def _before_text(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``call`` unless text is ready to show first (then it is dropped, unsent)."""
        self._sending = False
        task: asyncio.Task[T] = asyncio.create_task(call())
        changed = asyncio.create_task(self._text_ready.wait())
        try:
            await asyncio.wait({task, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
        if not task.done() and not self._sending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise TimeoutError
        try:
            return await task
        finally:
            self._sending = False

    def _reasoning_pending(self) -> bool:
        return (
            self._reasoning
            and self._status_shown
            and not self._reasoning_shown
            and self._messages == 0
            and self._live is None
        )

    async def _show_reasoning(self) -> None:
        """Say the model is reasoning, if a status slot is free right now (a courtesy)."""
        self._reasoning_shown = True
        budget = self._budget()
        if budget is not None and not budget.try_acquire("assistant.threads.setStatus"):
            return
        with contextlib.suppress(*_SLACK_ERRORS):
            await send_now(
                self._client_or_fail(),
                "assistant.threads.setStatus",
                {
                    "channel_id": self._message.channel_id,
                    "thread_ts": self._message.thread_ts,
                    "status": REASONING_STATUS,
                },
            )

    async def _loading(self) -> list[str]:
        """The workspace's loading messages (the ``loading_messages`` setting)."""
        if self._loading_messages is None:
            return LOADING_MESSAGES
        try:
            return list(await self._loading_messages()) or LOADING_MESSAGES
        except Exception as exc:  # a courtesy: the defaults do as well
            logger.info("loading messages unavailable (%s); using the defaults", type(exc).__name__)
            return LOADING_MESSAGES

    async def _clear_indicator(self) -> None:
        if self._client is None:
            return
        message = self._message
        if self._status_shown:
            # Slack clears the status when the bot posts in the thread; said explicitly, it
            # also clears when nothing new was posted (a stream that ended, a note in place).
            self._status_shown = False
            try:
                await scheduled_call(
                    self._client,
                    "assistant.threads.setStatus",
                    lambda: {
                        "channel_id": message.channel_id,
                        "thread_ts": message.thread_ts,
                        "status": "",
                    },
                    priority=Priority.NORMAL,
                )
            except (TimeoutError, *_SLACK_ERRORS):
                logger.info("could not clear the thread status")
        if not self._reacted:
            return
        try:
            await scheduled_call(
                self._client,
                "reactions.remove",
                lambda: {
                    "channel": message.channel_id,
                    "timestamp": message.ts,
                    "name": WORKING_REACTION,
                },
                priority=Priority.NORMAL,
            )
        except (TimeoutError, *_SLACK_ERRORS):
            logger.info("could not remove the working reaction")


def _with_blocks(payload: dict[str, Any], ending: Blocks) -> dict[str, Any]:
    """A message payload with ``ending``'s blocks after its own."""
    if not ending:
        return payload
    return {**payload, "blocks": [*payload["blocks"], *ending]}


def _blocks_argument(ending: Blocks) -> dict[str, Any]:
    return {"blocks": list(ending)} if ending else {}


def _reaction_arguments(message: IncomingMessage) -> dict[str, Any]:
    return {"channel": message.channel_id, "timestamp": message.ts, "name": WORKING_REACTION}


class LiveReplySinks:
    """Opens one ``LiveReplySink`` per turn; each resolves its team's client (the team's bot
    token) lazily, in its delivery task, so ``open()`` stays synchronous."""

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
