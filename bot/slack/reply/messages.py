"""The answer's messages in Slack, one call at a time: open a message (a native stream, or a
post), grow it, finish it, and rewrite them all when the final text replaces the draft.

Each move reads the ``Draft`` when its slot comes, so it sends the latest text, and updates
it once Slack holds what was sent. A message is opened natively only when the Tier-2 budget
has a start slot now and a stop slot for every stream open (``RateBudget.try_open_stream``);
a refused stream continues as ``chat.postMessage`` + ``chat.update`` without losing or
repeating text.

The answer's steps (``steps``) ride in the same calls: task cards in a native stream, lines
above the text in a posted message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.conversation import IncomingMessage
from bot.errors import DeliveryError, SlackRateLimitedError
from bot.i18n import t
from bot.slack.budget import Priority
from bot.slack.render import chunk_markdown, normalise, stream_payload
from bot.slack.reply.calls import Expired, ReplyCalls
from bot.slack.reply.draft import EMPTY_ANSWER, Draft
from bot.slack.reply.endings import (
    AnswerEndings,
    Ending,
    blocks_argument,
    post_arguments,
    update_arguments,
)
from bot.slack.reply.journal import DeliveryJournal
from bot.slack.reply.steps import DISPLAY_MODE, Batch, Steps

__all__ = ["AnswerMessages"]

logger = logging.getLogger(__name__)


class AnswerMessages:
    def __init__(
        self,
        *,
        calls: ReplyCalls,
        draft: Draft,
        endings: AnswerEndings,
        message: IncomingMessage,
        native_streaming: bool,
        journal: DeliveryJournal | None,
        steps: Steps | None = None,
    ) -> None:
        self._calls = calls
        self._draft = draft
        self._steps = steps if steps is not None else Steps()
        self._endings = endings
        self._message = message
        self._native_streaming = native_streaming
        self._journal = journal

    async def open(self, priority: Priority, *, final: bool, deadline: float | None) -> None:
        """A new message with the text so far (natively streamed when the budget allows)."""
        draft, message = self._draft, self._message
        budget = self._calls.budget()
        steps = self._steps
        if not final and self._native_streaming and budget is not None and budget.try_open_stream():
            text = draft.candidate()
            batch = steps.take()
            try:
                response = await self._calls.now(
                    "chat.startStream",
                    {
                        "channel": message.channel_id,
                        "thread_ts": message.thread_ts,
                        "recipient_user_id": message.user_id,
                        "recipient_team_id": message.team_id,
                        "task_display_mode": DISPLAY_MODE,
                        **_stream_content(text, batch),
                    },
                )
            except DeliveryError as exc:
                budget.stream_closed()
                if isinstance(exc, SlackRateLimitedError):
                    # Over budget after all (another replica?): tell the budget.
                    budget.pause("chat.startStream", exc.retry_after)
                logger.info("native streaming refused (%s); using chat.update", exc.code)
            else:
                draft.opened(str(response["ts"]), native=True, shown=text)
                steps.delivered(batch, ts=str(response["ts"]), native=True)
                return
        # What the post shows, and whether it is the answer's last message, is decided when
        # the slot comes (the final text may have arrived while it waited): a short answer
        # then goes out whole, buttons included, in one call.
        decided: dict[str, Any] = {}

        def build(ending: Ending) -> dict[str, Any]:
            chunks = draft.chunks()
            closing = draft.final is not None or len(chunks) > 1
            text = chunks[0].text if closing and chunks else draft.candidate()
            batch = steps.take()
            decided.update(text=text, chunk=chunks[0] if closing and chunks else None, batch=batch)
            return post_arguments(message, text, ending(), lead=steps.lead(None, batch))

        async def post(ending: Ending) -> Any:
            return await self._calls.call(
                "chat.postMessage", lambda: build(ending), priority, deadline,
                channel=message.channel_id,
            )  # fmt: skip

        def last() -> bool:
            return draft.final is not None and draft.is_last_chunk()

        response = await self._endings.tried(last, post)
        draft.opened(str(response["ts"]), native=False, shown=decided["text"])
        steps.delivered(decided["batch"], ts=str(response["ts"]), native=False)
        if decided["chunk"] is not None:
            draft.advance(decided["chunk"])

    async def grow(self, priority: Priority, *, deadline: float | None) -> None:
        """The open message shows more of the text."""
        draft, channel = self._draft, self._message.channel_id
        live = draft.live
        assert live is not None
        steps = self._steps
        shown: dict[str, str] = {}
        taken: dict[str, Batch] = {}

        def latest() -> str:
            shown["text"] = draft.candidate()
            return shown["text"]

        def batch() -> Batch:
            taken["batch"] = steps.take()
            return taken["batch"]

        if live.native:
            if len(draft.candidate()) <= len(live.shown) and not steps.news():
                return
            await self._calls.call(
                "chat.appendStream",
                lambda: {
                    "channel": channel,
                    "ts": live.ts,
                    **_stream_content(latest()[len(live.shown) :], batch()),
                },
                priority,
                deadline,
            )
        else:
            await self._calls.call(
                "chat.update",
                lambda: update_arguments(
                    channel, live.ts, latest(), (), lead=steps.lead(live.ts, batch())
                ),
                priority,
                deadline,
            )
        live.shown = shown["text"]
        steps.delivered(taken["batch"], ts=live.ts, native=live.native)

    async def finish_live(self, priority: Priority, *, deadline: float | None) -> None:
        """The open message gets its whole chunk, for good; the next one starts after it."""
        draft, endings, channel = self._draft, self._endings, self._message.channel_id
        live = draft.live
        assert live is not None
        chunks = draft.chunks()
        chunk = chunks[0] if chunks else None
        text = chunk.text if chunk else live.shown
        last = draft.final is not None and draft.is_last_chunk()
        steps = self._steps
        taken: dict[str, Batch] = {}

        def batch() -> Batch:
            taken["batch"] = steps.take()
            return taken["batch"]

        if live.native and live.known and text.startswith(live.shown):
            rest = text[len(live.shown) :]

            async def stop(ending: Ending) -> Any:
                return await self._calls.call(
                    "chat.stopStream",
                    lambda: {
                        "channel": channel,
                        "ts": live.ts,
                        **_stream_content(rest, batch()),
                        **blocks_argument(ending()),
                    },
                    priority,
                    deadline,
                )

            await endings.tried(last, stop)
            steps.delivered(taken["batch"], ts=live.ts, native=True)
            self._calls.stream_closed()
        elif not live.native and live.shown == text and not steps.news():
            # The last update already showed exactly this: nothing to send for the text. The
            # buttons alone are not worth a Tier-3 update ahead of other answers' text: they
            # follow later, at the lowest priority (``AnswerEndings.add_later``).
            if last and endings.wanted() and not endings.shown:
                endings.later = (live.ts, text, steps.lead(live.ts))
        else:
            if live.native:
                # Resumed after a restart: what the stream shows is unknown. End it if it is
                # still open, then give the message its whole chunk.
                with contextlib.suppress(DeliveryError, Expired):
                    await self._calls.call(
                        "chat.stopStream",
                        lambda: {"channel": channel, "ts": live.ts},
                        priority,
                        deadline,
                    )

            async def update(ending: Ending) -> Any:
                return await self._calls.call(
                    "chat.update",
                    lambda: update_arguments(
                        channel, live.ts, text, ending(), lead=steps.lead(live.ts, batch())
                    ),
                    priority,
                    deadline,
                )

            await endings.tried(last, update)
            steps.delivered(taken["batch"], ts=live.ts, native=False)
        draft.live = None
        if chunk is not None:
            draft.advance(chunk)

    async def rewrite(self, text: str, *, deadline: float) -> None:
        """The final text replaces the streamed draft: each message of the answer gets its
        chunk (``chat.update``), extra chunks are posted, messages left over are deleted."""
        logger.info("the final answer differs from the streamed text; correcting the messages")
        draft, channel = self._draft, self._message.channel_id
        live = draft.live
        if live is not None and live.native:
            # End the stream as it stands; its message is then rewritten like any other.
            with contextlib.suppress(Expired, DeliveryError):
                await self._calls.call(
                    "chat.stopStream", lambda: {"channel": channel, "ts": live.ts},
                    Priority.FINAL, deadline,
                )  # fmt: skip
            self._calls.stream_closed()
        draft.live = None
        # Nothing is noted for a restart while rewriting: the held text is the final one, and
        # a resume posts it whole rather than guess which draft message holds what.
        if self._journal is not None:
            draft.start, draft.head, draft.waste = 0, "", 0
            await self.record()
        chunks = chunk_markdown(normalise(text) or t(EMPTY_ANSWER), limit=draft.limit)
        posted = list(draft.posted)
        try:
            for index, chunk in enumerate(chunks):
                is_last = index == len(chunks) - 1
                if index < len(posted):
                    update = self._final_update(posted[index], chunk.text, deadline)
                    await self._endings.tried(is_last, update)
                    continue
                response = await self._endings.tried(
                    is_last, self._final_post(chunk.text, deadline)
                )
                draft.posted.append(str(response["ts"]))
                draft.first_ts = draft.first_ts or str(response["ts"])
            for ts in posted[len(chunks) :]:
                arguments: dict[str, Any] = {"channel": channel, "ts": ts}
                await self._calls.call("chat.delete", arguments.copy, Priority.FINAL, deadline)
        except Expired as exc:
            raise DeliveryError(
                "the answer could not be corrected within the deadline", code="ratelimited"
            ) from exc

    def _final_update(
        self, ts: str, text: str, deadline: float
    ) -> Callable[[Ending], Awaitable[Any]]:
        channel = self._message.channel_id

        lead = self._steps.lead(ts)  # a posted message's step lines stay above its text

        async def update(ending: Ending) -> Any:
            return await self._calls.call(
                "chat.update",
                lambda: update_arguments(channel, ts, text, ending(), lead=lead),
                Priority.FINAL,
                deadline,
            )

        return update

    def _final_post(self, text: str, deadline: float) -> Callable[[Ending], Awaitable[Any]]:
        message = self._message

        async def post(ending: Ending) -> Any:
            return await self._calls.call(
                "chat.postMessage",
                lambda: post_arguments(message, text, ending()),
                Priority.FINAL,
                deadline,
                channel=message.channel_id,
            )

        return post

    def abandon_live(self) -> None:
        """The open message keeps what it shows; the rest continues in a new message."""
        live = self._draft.abandon_live()
        if live is not None and live.native:
            self._calls.stream_closed()

    async def record(self) -> None:
        """Note where delivery stands (the journal), for a restart to go on from."""
        if self._journal is None:
            return
        message = self._message
        try:
            await self._journal.record_delivery(
                team_id=message.team_id,
                channel_id=message.channel_id,
                user_ts=message.ts,
                state=self._draft.state().to_json(),
            )
        except Exception as exc:  # the journal is a safety net; delivery goes on without it
            logger.warning("could not note delivery progress: %s", type(exc).__name__)


def _stream_content(text: str, batch: Batch) -> dict[str, Any]:
    """A stream call's content: ``text`` alone as ``markdown_text``; with steps, everything as
    ``chunks``, the task cards first (the text written after them)."""
    if not batch:
        return stream_payload(text)
    chunks = Steps.chunks(batch)
    if text:
        chunks.append({"type": "markdown_text", "text": text})
    return {"chunks": chunks}
