"""A turn's answer as the user watches it: status at once, then text that grows, then the
exact whole answer, split over several messages only when one cannot hold it.

Two ways to show growing text:
- Slack's native text streaming (``chat.startStream`` / ``appendStream`` / ``stopStream``).
  startStream and stopStream are Tier 2 (~20 per minute per workspace), so a shared
  ``StreamBudget`` reserves both calls before a stream starts; when it is spent, or Slack
  refuses the stream, the answer uses the fallback instead of failing.
- The fallback: ``chat.postMessage`` then ``chat.update``.

Either way updates are coalesced: a message changes at most once per ``flush_interval``
(about once a second). A native stream that expires (``message_not_in_streaming_state``)
keeps what it showed and the rest continues in a fallback message: nothing lost, nothing twice.

Every Slack failure leaves as ``DeliveryError``.

A finished answer's last message carries the answer's *endings* (the feedback buttons, see
``bot.slack.feedback``): in ``chat.stopStream`` or the final ``chat.update``, so they cost no
call of their own; where Slack refuses one ending's blocks the next is tried, and the answer
is never lost to its buttons. The thread status is cleared explicitly whatever the outcome.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import IncomingMessage, TurnStopped
from bot.errors import DeliveryError
from bot.slack.render import MAX_MARKDOWN_CHARS, message_payload
from bot.slack.workspaces import WorkspaceClients

__all__ = ["LiveReplySink", "LiveReplySinks", "StreamBudget", "cut_for_message"]

logger = logging.getLogger(__name__)

# Room kept free in every message for a closing code fence added at a split.
_FENCE_RESERVE = 16
MESSAGE_LIMIT = MAX_MARKDOWN_CHARS - _FENCE_RESERVE
EMPTY_ANSWER = "_(The model returned an empty answer.)_"
THINKING_STATUS = "is thinking…"
REASONING_STATUS = "is reasoning…"
LOADING_MESSAGES = ["Reading the thread…", "Thinking it through…", "Writing an answer…"]
WORKING_REACTION = "hourglass_flowing_sand"
# What Slack answers when it will not take a message's blocks: try the next ending.
_REFUSED_BLOCKS = frozenset({"invalid_blocks", "invalid_blocks_format", "invalid_arguments"})

Blocks = Sequence[dict[str, Any]]
Endings = Sequence[Blocks]
"""Blocks to end a finished answer with, best first (see the module docstring)."""

_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")


class StreamBudget:
    """Per-workspace budget for Tier-2 stream methods: ``limit`` calls per ``window`` s.

    A native stream costs two calls (start and stop), reserved together so a stream that
    starts can always be stopped.
    """

    def __init__(
        self, *, limit: int = 18, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def try_reserve(self, team_id: str, calls: int = 2) -> bool:
        now = self._clock()
        history = self._calls.setdefault(team_id, deque())
        while history and now - history[0] >= self._window:
            history.popleft()
        if len(history) + calls > self._limit:
            return False
        history.extend([now] * calls)
        return True


def cut_for_message(text: str, *, limit: int, keep: int = 0) -> tuple[str, str]:
    """Split ``text`` (longer than ``limit``) into what fits in this message and the rest.

    The cut falls after ``keep`` characters (already shown and not to be taken back), at the
    last paragraph break, else line break, else space, else hard at ``limit``. A code fence
    open at the cut is closed at the end of the first part and reopened (same opening line)
    at the start of the rest, so a code block is never cut through.
    """
    window = text[:limit]
    cut = -1
    for separator in ("\n\n", "\n", " "):
        found = window.rfind(separator, keep)
        if found > keep:
            cut = found + len(separator)
            break
    if cut <= keep:
        cut = max(limit, keep)
    first, rest = text[:cut], text[cut:]
    opening = _open_fence(first)
    if opening is not None:
        marker = _FENCE.match(opening)
        assert marker is not None
        first = first + ("" if first.endswith("\n") else "\n") + marker.group(1)
        rest = opening + "\n" + rest
    return first, rest


def _open_fence(text: str) -> str | None:
    """The opening line of a code fence left open at the end of ``text``, if any."""
    opening: str | None = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        if opening is None:
            opening = line
        else:
            opener = _FENCE.match(opening)
            assert opener is not None
            fence = match.group(1)
            closes = fence[0] == opener.group(1)[0] and len(fence) >= len(opener.group(1))
            if closes and line.strip() == fence:
                opening = None
    return opening


def _api_name(method: str) -> str:
    """``chat_appendStream`` → ``chat.appendStream``, as Slack and its docs name it."""
    return method.replace("_", ".", 1)


def _delivery_error(method: str, exc: Exception) -> DeliveryError:
    if isinstance(exc, SlackApiError):
        code = str(exc.response.get("error") or "slack_api_error")
        return DeliveryError(f"{method} failed: {code}", code=code)
    return DeliveryError(f"{method} failed: {type(exc).__name__}", code="slack_unreachable")


_SLACK_ERRORS = (SlackApiError, SlackClientError, aiohttp.ClientError, OSError, TimeoutError)


class _LiveMessage(Protocol):
    ts: str | None

    async def show(self, text: str) -> None:
        """Make the message show ``text`` (which extends what it showed before)."""

    async def close(self, text: str, endings: Endings = ()) -> None:
        """Show ``text`` for good, followed by the first of ``endings`` Slack takes."""


class _UpdatedMessage:
    """The fallback: one ``chat.postMessage``, then ``chat.update`` with the full text."""

    def __init__(self, client: AsyncWebClient, message: IncomingMessage) -> None:
        self._client = client
        self._message = message
        self.ts: str | None = None
        self._shown = ""

    async def show(self, text: str, ending: Blocks = ()) -> None:
        if self.ts is not None and text == self._shown and not ending:
            return
        payload = message_payload(text)
        payload["blocks"] = [*payload["blocks"], *ending]
        try:
            if self.ts is None:
                response = await self._client.chat_postMessage(
                    channel=self._message.channel_id,
                    thread_ts=self._message.thread_ts,
                    unfurl_links=False,
                    unfurl_media=False,
                    **payload,
                )
                self.ts = str(response["ts"])
            else:
                await self._client.chat_update(
                    channel=self._message.channel_id, ts=self.ts, **payload
                )
        except _SLACK_ERRORS as exc:
            method = "chat.postMessage" if self.ts is None else "chat.update"
            raise _delivery_error(method, exc) from exc
        self._shown = text

    async def close(self, text: str, endings: Endings = ()) -> None:
        for ending in endings:
            try:
                await self.show(text, ending)
                return
            except DeliveryError as exc:
                if exc.code not in _REFUSED_BLOCKS:
                    raise
                logger.info("Slack refused an answer ending (%s); trying the next", exc.code)
        await self.show(text)


class _StreamUnavailable(Exception):
    """Slack would not stream this message; use the fallback."""


class _StreamExpired(Exception):
    """The native stream ended under us; ``shown`` is what it holds."""

    def __init__(self, shown: str) -> None:
        super().__init__("stream expired")
        self.shown = shown


class _NativeStream:
    """Slack's native streaming: append-only text in one message."""

    def __init__(self, client: AsyncWebClient, message: IncomingMessage) -> None:
        self._client = client
        self._message = message
        self.ts: str | None = None
        self._shown = ""
        self.stopped = False

    async def show(self, text: str) -> None:
        addition = text[len(self._shown) :]
        if self.ts is not None and not addition:
            return
        if self.ts is None:
            try:
                response = await self._client.chat_startStream(
                    channel=self._message.channel_id,
                    thread_ts=self._message.thread_ts,
                    recipient_user_id=self._message.user_id,
                    recipient_team_id=self._message.team_id,
                    markdown_text=text,
                )
            except _SLACK_ERRORS as exc:
                raise _StreamUnavailable(str(exc)) from exc
            self.ts = str(response["ts"])
        else:
            await self._call("chat_appendStream", markdown_text=addition)
        self._shown = text

    async def close(self, text: str, endings: Endings = ()) -> None:
        if self.ts is None:
            await self.show(text)
        addition = text[len(self._shown) :]
        arguments: dict[str, Any] = {"markdown_text": addition} if addition else {}
        for ending in endings:
            try:
                await self._call("chat_stopStream", **arguments, blocks=list(ending))
                self._shown = text
                return
            except DeliveryError as exc:
                if exc.code not in _REFUSED_BLOCKS:
                    raise
                logger.info("Slack refused an answer ending (%s); trying the next", exc.code)
        await self._call("chat_stopStream", **arguments)
        self._shown = text

    async def _call(self, method: str, **kwargs: Any) -> None:
        try:
            await getattr(self._client, method)(
                channel=self._message.channel_id, ts=self.ts, **kwargs
            )
        except SlackApiError as exc:
            if exc.response.get("error") == "message_not_in_streaming_state":
                raise _StreamExpired(self._shown) from exc
            if exc.response.get("error") == "stopped_by_user":
                self.stopped = True
                raise TurnStopped from exc
            raise _delivery_error(_api_name(method), exc) from exc
        except _SLACK_ERRORS as exc:
            raise _delivery_error(_api_name(method), exc) from exc


class LiveReplySink:
    """One turn's answer; see the module docstring."""

    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        message: IncomingMessage,
        budget: StreamBudget | None,
        flush_interval: float = 1.0,
        limit: int = MESSAGE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        endings: Endings = (),
        loading_messages: Callable[[], Awaitable[Sequence[str]]] | None = None,
    ) -> None:
        self._workspaces = workspaces
        self._endings = endings
        self._loading_messages = loading_messages
        self._clients: tuple[AsyncWebClient, AsyncWebClient] | None = None
        self._message = message
        self._budget = budget
        self._flush_interval = flush_interval
        self._limit = limit
        self._clock = clock
        self._live: _LiveMessage | None = None
        self._live_text = ""
        self._pending = ""
        self._streamed = ""  # every delta so far, to reconcile with the final text
        self._correction: str | None = None  # a final text that differs from the stream
        self._posted: list[str] = []  # every message of this answer, in order
        self._first_ts: str | None = None
        self._last_flush = float("-inf")
        self._status_shown = False
        self._reacted = False
        self._reasoning_shown = False

    # --- the team's Slack clients, resolved on the first Slack call --------------------------
    async def _resolve(self) -> tuple[AsyncWebClient, AsyncWebClient]:
        if self._clients is None:
            team_id = self._message.team_id
            self._clients = (
                await self._workspaces.client(team_id),
                await self._workspaces.stream_client(team_id),
            )
        return self._clients

    @property
    def _client(self) -> AsyncWebClient:
        assert self._clients is not None, "resolved by every public method first"
        return self._clients[0]

    @property
    def _stream_client(self) -> AsyncWebClient:
        assert self._clients is not None, "resolved by every public method first"
        return self._clients[1]

    # --- ReplySink ---------------------------------------------------------------------------
    async def started(self) -> None:
        await self._resolve()
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._message.channel_id,
                thread_ts=self._message.thread_ts,
                status=THINKING_STATUS,
                loading_messages=await self._loading(),
            )
            self._status_shown = True
            return
        except _SLACK_ERRORS as exc:
            logger.info("thread status refused (%s); using a reaction", type(exc).__name__)
        try:
            await self._client.reactions_add(
                channel=self._message.channel_id, timestamp=self._message.ts, name=WORKING_REACTION
            )
            self._reacted = True
        except _SLACK_ERRORS as exc:
            raise _delivery_error("reactions.add", exc) from exc

    async def _loading(self) -> list[str]:
        """The workspace's loading messages (the ``loading_messages`` setting)."""
        if self._loading_messages is None:
            return LOADING_MESSAGES
        try:
            return list(await self._loading_messages()) or LOADING_MESSAGES
        except Exception as exc:  # a courtesy: the defaults do as well
            logger.info("loading messages unavailable (%s); using the defaults", type(exc).__name__)
            return LOADING_MESSAGES

    async def reasoning(self) -> None:
        await self._resolve()
        if self._status_shown and not self._reasoning_shown and self._first_ts is None:
            self._reasoning_shown = True
            try:
                await self._client.assistant_threads_setStatus(
                    channel_id=self._message.channel_id,
                    thread_ts=self._message.thread_ts,
                    status=REASONING_STATUS,
                )
            except _SLACK_ERRORS:
                logger.info("could not update the thread status to reasoning")

    async def delta(self, text: str) -> None:
        await self._resolve()
        self._pending += text
        self._streamed += text
        overflowing = len(self._live_text) + len(self._pending) > self._limit
        if overflowing or self._clock() - self._last_flush >= self._flush_interval:
            await self._flush()

    async def finish(self, text: str) -> str | None:
        await self._resolve()
        self._reconcile(text)
        if not self._streamed.strip():
            self._pending = EMPTY_ANSWER
        await self._flush(final=True, endings=self._endings)
        if self._correction is not None:
            await self._correct(self._correction)
        await self._clear_indicator()
        return self._first_ts

    async def fail(self, notice: str, partial_text: str) -> str | None:
        await self._resolve()
        if isinstance(self._live, _NativeStream) and self._live.stopped:
            # The user stopped this stream: it keeps what it showed; the note follows it.
            self._first_ts = self._first_ts or self._live.ts
            self._live, self._live_text, self._pending = None, "", ""
            self._streamed = partial_text
            await self._show(notice, close=True)
            await self._clear_indicator()
            return self._first_ts
        self._reconcile(partial_text)
        if self._streamed.strip():
            self._pending += "\n\n" + notice
        else:
            self._pending += notice
        await self._flush(final=True)
        await self._clear_indicator()
        return self._first_ts

    # --- internals ---------------------------------------------------------------------------
    def _reconcile(self, text: str) -> None:
        """Make sure everything in ``text`` gets shown, once. A final text that does not extend
        what was streamed (a relay streamed reasoning as answer text, a turn was answered
        again) replaces it once the stream is closed: the final response's text wins."""
        if text.startswith(self._streamed):
            rest = text[len(self._streamed) :]
            self._pending += rest
            self._streamed += rest
        elif text:
            self._correction = text

    async def _correct(self, text: str) -> None:
        """Rewrite this answer's messages to show ``text``: each message gets its share
        (``chat.update``), extra shares are posted, messages left over are deleted."""
        logger.info("the final answer differs from the streamed text; correcting the message")
        chunks: list[str] = []
        rest = text
        while len(rest) > self._limit:
            first, rest = cut_for_message(rest, limit=self._limit)
            chunks.append(first)
        chunks.append(rest)
        posted = list(self._posted)
        for index, chunk in enumerate(chunks):
            endings = self._endings if index == len(chunks) - 1 else ()
            if index < len(posted) and not endings:
                await self._call_or_fail(
                    "chat.update",
                    self._client.chat_update,
                    channel=self._message.channel_id,
                    ts=posted[index],
                    **message_payload(chunk),
                )
            else:
                message = _UpdatedMessage(self._client, self._message)
                message.ts = posted[index] if index < len(posted) else None
                await message.close(chunk, endings)
                if message.ts is not None:
                    self._remember(message.ts)
        for ts in posted[len(chunks) :]:
            await self._call_or_fail(
                "chat.delete", self._client.chat_delete, channel=self._message.channel_id, ts=ts
            )
        self._streamed = text

    @staticmethod
    async def _call_or_fail(method: str, call: Callable[..., Any], **kwargs: Any) -> None:
        try:
            await call(**kwargs)
        except _SLACK_ERRORS as exc:
            raise _delivery_error(method, exc) from exc

    def _remember(self, ts: str | None) -> None:
        if ts is not None and ts not in self._posted:
            self._posted.append(ts)

    async def _flush(self, *, final: bool = False, endings: Endings = ()) -> None:
        candidate = self._live_text + self._pending
        self._pending = ""
        while len(candidate) > self._limit:
            first, candidate = cut_for_message(
                candidate, limit=self._limit, keep=len(self._live_text)
            )
            await self._show(first, close=True)
        if candidate or final:
            await self._show(candidate, close=final, endings=endings)
        # Counted from when Slack answered, so a slow call cannot squeeze two edits together.
        self._last_flush = self._clock()

    async def _show(self, text: str, *, close: bool, endings: Endings = ()) -> None:
        if self._live is None:
            if not text:
                return
            self._live = self._new_message()
        try:
            if close:
                await self._live.close(text, endings)
            else:
                await self._live.show(text)
        except _StreamUnavailable:
            logger.info("native streaming refused; using chat.update")
            self._live = _UpdatedMessage(self._client, self._message)
            await self._show(text, close=close, endings=endings)
            return
        except _StreamExpired as expired:
            logger.info("native stream expired; continuing in a new message")
            self._remember(self._live.ts)
            self._first_ts = self._first_ts or self._live.ts
            self._live = _UpdatedMessage(self._client, self._message)
            self._live_text = ""
            await self._show(text[len(expired.shown) :], close=close, endings=endings)
            return
        self._remember(self._live.ts)
        self._first_ts = self._first_ts or self._live.ts
        if close:
            self._live, self._live_text = None, ""
        else:
            self._live_text = text

    def _new_message(self) -> _LiveMessage:
        if self._budget is not None and self._budget.try_reserve(self._message.team_id):
            return _NativeStream(self._stream_client, self._message)
        return _UpdatedMessage(self._client, self._message)

    async def _clear_indicator(self) -> None:
        if self._status_shown:
            # Slack clears the status when the bot posts in the thread; said explicitly, it
            # also clears when nothing new was posted (a stream that ended, a note in place).
            self._status_shown = False
            try:
                await self._client.assistant_threads_setStatus(
                    channel_id=self._message.channel_id,
                    thread_ts=self._message.thread_ts,
                    status="",
                )
            except _SLACK_ERRORS:
                logger.info("could not clear the thread status")
        if self._reacted:
            try:
                await self._client.reactions_remove(
                    channel=self._message.channel_id,
                    timestamp=self._message.ts,
                    name=WORKING_REACTION,
                )
            except _SLACK_ERRORS:
                logger.info("could not remove the working reaction")


class LiveReplySinks:
    """Opens one ``LiveReplySink`` per turn; each resolves its team's clients (the team's bot
    token) lazily, on its first Slack call, so ``open()`` stays synchronous."""

    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        native_streaming: bool = True,
        flush_interval: float = 1.0,
        endings: Callable[[IncomingMessage], Endings] | None = None,
        loading_messages: Callable[[IncomingMessage], Awaitable[Sequence[str]]] | None = None,
    ) -> None:
        """``endings``: the blocks a finished answer to a message ends with (the feedback
        buttons); ``loading_messages``: the workspace's loading messages for a message."""
        self._workspaces = workspaces
        self._budget = StreamBudget() if native_streaming else None
        self._flush_interval = flush_interval
        self._endings = endings
        self._loading_messages = loading_messages

    def open(self, message: IncomingMessage) -> LiveReplySink:
        return LiveReplySink(
            workspaces=self._workspaces,
            message=message,
            budget=self._budget,
            flush_interval=self._flush_interval,
            endings=self._endings(message) if self._endings else (),
            loading_messages=(
                functools.partial(self._loading_messages, message)
                if self._loading_messages
                else None
            ),
        )
