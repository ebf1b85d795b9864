"""A finished answer's endings: the blocks its last message ends with (the feedback buttons,
``bot.slack.feedback``), best first.

They ride in the call that finishes the last message (``chat.stopStream``, or its final
``chat.postMessage`` / ``chat.update``), so they cost no call of their own; where Slack
refuses one ending's blocks the next is tried, and last none: an answer is never lost to its
buttons. Notes carry none (``on`` stays off). A last message whose text Slack already holds
whole gets them later, at the lowest priority (``add_later``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from bot.conversation import IncomingMessage, TurnStopped
from bot.errors import DeliveryError
from bot.slack.budget import Priority
from bot.slack.render import message_payload
from bot.slack.reply.calls import Expired, ReplyCalls
from bot.slack.reply.steps import with_lead

__all__ = [
    "REFUSED_BLOCKS",
    "AnswerEndings",
    "Blocks",
    "Ending",
    "Endings",
    "blocks_argument",
    "post_arguments",
    "update_arguments",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Blocks = Sequence[dict[str, Any]]
Endings = Sequence[Blocks]
"""Blocks to end a finished answer with, best first."""

REFUSED_BLOCKS = frozenset({"invalid_blocks", "invalid_blocks_format", "invalid_arguments"})
"""What Slack answers when it will not take a message's blocks: try the next ending."""

Ending = Callable[[], Blocks]
"""The ending to send with, asked when the call's slot comes (``AnswerEndings.tried``)."""


def post_arguments(
    message: IncomingMessage, text: str, ending: Blocks, *, lead: Blocks = ()
) -> dict[str, Any]:
    """``chat.postMessage``'s arguments: ``lead`` (the steps' lines), ``text`` in
    ``message``'s thread, then ``ending``."""
    return {
        "channel": message.channel_id,
        "thread_ts": message.thread_ts,
        "unfurl_links": False,
        "unfurl_media": False,
        **with_lead(_with_blocks(message_payload(text), ending), lead),
    }


def update_arguments(
    channel: str, ts: str, text: str, ending: Blocks, *, lead: Blocks = ()
) -> dict[str, Any]:
    """``chat.update``'s arguments: message ``ts`` shows ``lead`` (the steps' lines, which an
    update must repeat: it replaces every block), ``text``, then ``ending``."""
    return {
        "channel": channel,
        "ts": ts,
        **with_lead(_with_blocks(message_payload(text), ending), lead),
    }


def blocks_argument(ending: Blocks) -> dict[str, Any]:
    """``chat.stopStream``'s blocks argument for ``ending`` (none without one)."""
    return {"blocks": list(ending)} if ending else {}


def _with_blocks(payload: dict[str, Any], ending: Blocks) -> dict[str, Any]:
    if not ending:
        return payload
    return {**payload, "blocks": [*payload["blocks"], *ending]}


class AnswerEndings:
    def __init__(self, endings: Endings) -> None:
        self._endings = endings
        self.on = False
        """A finished answer (not a note): its last message carries the endings."""
        self.shown = False
        self.later: tuple[str, str, Blocks] | None = None
        """(ts, text, lead) of a last message Slack holds whole, still without its endings."""

    def wanted(self) -> bool:
        return self.on and bool(self._endings)

    async def tried(
        self, last: bool | Callable[[], bool], send: Callable[[Ending], Awaitable[T]]
    ) -> T:
        """``send`` with the first ending Slack takes if the message is the answer's last
        (``last``, or ``last()`` asked when the slot comes: the final text may have arrived
        meanwhile), else with none."""
        choices: list[Blocks] = []
        attempt = 0

        def ending() -> Blocks:
            if not choices:
                wanted = (last() if callable(last) else last) and self.wanted()
                choices.extend([*self._endings, ()] if wanted else [()])
            return choices[attempt]

        while True:
            try:
                result = await send(ending)
            except DeliveryError as exc:
                if exc.code not in REFUSED_BLOCKS or attempt + 1 >= len(choices):
                    raise
                logger.info("Slack refused an answer ending (%s); trying the next", exc.code)
                attempt += 1
            else:
                if choices and choices[attempt]:
                    self.shown = True
                return result

    async def add_later(self, calls: ReplyCalls, *, channel: str, deadline: float) -> None:
        """Give the finished message in ``later`` its endings when the workspace's
        ``chat.update`` budget has room: a courtesy, never at the expense of another
        answer's text."""
        if self.later is None:
            return
        ts, text, lead = self.later

        async def update(ending: Ending) -> Any:
            return await calls.call(
                "chat.update",
                lambda: update_arguments(channel, ts, text, ending(), lead=lead),
                Priority.UPDATE,
                deadline,
            )

        try:
            await self.tried(True, update)
        except (DeliveryError, TurnStopped, Expired) as exc:
            logger.info("could not add the feedback buttons: %s", type(exc).__name__)
