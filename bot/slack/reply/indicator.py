"""The working indicator: while the model works, the thread says so.

The thread status (``assistant.threads.setStatus``, with the workspace's loading messages)
is asked for at once, or a reaction on the person's message where Slack refuses the status.
It never delays text: it is dropped, unsent, as soon as text is ready to show (a status set
after the reply would linger). A reasoning model's status says so when a slot is free right
now. Whatever the outcome, ``clear`` takes the status and the reaction away again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.channel_settings.schema import DEFAULT_LOADING_MESSAGES
from bot.conversation import IncomingMessage, TurnStopped
from bot.errors import DeliveryError
from bot.i18n import N_, t
from bot.slack.budget import Priority
from bot.slack.reply.calls import Dropped, Expired, ReplyCalls, TooLate

__all__ = [
    "LOADING_MESSAGES",
    "REASONING_STATUS",
    "THINKING_STATUS",
    "WORKING_REACTION",
    "WorkingIndicator",
]

logger = logging.getLogger(__name__)

# Catalogue texts (bot.i18n), shown in the language of the person answered.
THINKING_STATUS = N_("is thinking…")
REASONING_STATUS = N_("is reasoning…")
LOADING_MESSAGES = list(DEFAULT_LOADING_MESSAGES)
WORKING_REACTION = "hourglass_flowing_sand"
INDICATOR_WAIT = 60.0
"""Seconds the status may wait for its slot. It is dropped, unsent, as soon as text is ready
to show (a status set after the reply would linger), so under load it never delays text."""


class WorkingIndicator:
    def __init__(
        self,
        *,
        calls: ReplyCalls,
        message: IncomingMessage,
        text_ready: asyncio.Event,
        loading_messages: Callable[[], Awaitable[Sequence[str]]] | None = None,
    ) -> None:
        self._calls = calls
        self._message = message
        self._text_ready = text_ready
        self._loading_messages = loading_messages
        self.status_shown = False
        self._reasoning_shown = False
        self._reacted = False

    async def show(self) -> None:
        """The thread status (or a reaction where it is refused), unless text came first."""
        deadline = asyncio.get_running_loop().time() + INDICATOR_WAIT
        status = self._status(t(THINKING_STATUS), loading_messages=await self._loading())

        async def call(method: str, arguments: dict[str, Any]) -> None:
            await self._calls.call(method, arguments.copy, Priority.NORMAL, deadline)

        try:
            await self._calls.unless(
                self._text_ready, lambda: call("assistant.threads.setStatus", status)
            )
        except (Dropped, TooLate):
            return  # busy: the text will show work soon enough
        except (DeliveryError, Expired, TurnStopped) as exc:
            logger.info("thread status refused (%s); using a reaction", _code(exc))
        else:
            self.status_shown = True
            return
        try:
            await self._calls.unless(
                self._text_ready, lambda: call("reactions.add", self._reaction())
            )
            self._reacted = True
        except (Dropped, DeliveryError, Expired, TurnStopped) as exc:
            logger.info("could not show a working reaction either (%s)", _code(exc))

    async def reasoning(self) -> None:
        """Say the model is reasoning, if a status slot is free right now (a courtesy: once,
        while ``reasoning_pending``)."""
        self._reasoning_shown = True
        budget = self._calls.budget()
        if budget is not None and not budget.try_acquire("assistant.threads.setStatus"):
            return
        with contextlib.suppress(DeliveryError):
            await self._calls.now("assistant.threads.setStatus", self._status(t(REASONING_STATUS)))

    def reasoning_pending(self) -> bool:
        """A status is shown and does not say "reasoning" yet."""
        return self.status_shown and not self._reasoning_shown

    async def clear(self) -> None:
        """Take the status and the reaction away, whatever the answer's outcome."""
        if self._calls.client is None:
            return
        if self.status_shown:
            # Slack clears the status when the bot posts in the thread; said explicitly, it
            # also clears when nothing new was posted (a stream that ended, a note in place).
            self.status_shown = False
            await self._undo("assistant.threads.setStatus", self._status(""), "the thread status")
        if self._reacted:
            await self._undo("reactions.remove", self._reaction(), "the working reaction")

    async def _undo(self, method: str, arguments: dict[str, Any], what: str) -> None:
        try:
            await self._calls.call(method, arguments.copy, Priority.NORMAL, None)
        except (DeliveryError, Expired, TurnStopped):
            logger.info("could not take away %s", what)

    def _status(self, text: str, **extra: Any) -> dict[str, Any]:
        message = self._message
        return {
            "channel_id": message.channel_id,
            "thread_ts": message.thread_ts,
            "status": text,
            **extra,
        }

    def _reaction(self) -> dict[str, Any]:
        message = self._message
        return {"channel": message.channel_id, "timestamp": message.ts, "name": WORKING_REACTION}

    async def _loading(self) -> list[str]:
        """The workspace's loading messages (the ``loading_messages`` setting)."""
        # The defaults are catalogue texts, shown in the reader's language; a message an admin
        # typed is not in the catalogue and is shown as typed.
        chosen = LOADING_MESSAGES
        if self._loading_messages is not None:
            try:
                chosen = list(await self._loading_messages()) or LOADING_MESSAGES
            except Exception as exc:  # a courtesy: the defaults do as well
                logger.info(
                    "loading messages unavailable (%s); using the defaults", type(exc).__name__
                )
        return [t(text) for text in chosen]


def _code(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError):
        return exc.code
    return "stopped_by_user" if isinstance(exc, TurnStopped) else type(exc).__name__
