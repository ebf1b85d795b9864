"""A pane thread's title: set once, after its first answer, from the question.

No model call: the question's first line, Slack markup made plain and cut at a word, names
the conversation well enough in the pane's history list, costs nothing and cannot fail in a
way the person would see. ``claim_title`` makes it once per thread across replicas.
"""

from __future__ import annotations

import logging
import re
from typing import Final, Protocol

from bot.conversation import IncomingMessage, TurnOutcome
from bot.errors import DeliveryError
from bot.i18n import t
from bot.slack.failures import slack_failures
from bot.slack.workspaces import WorkspaceClients

__all__ = ["MAX_TITLE_CHARS", "PaneTitles", "title_from"]

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS: Final = 60
_LINK = re.compile(r"<([^<>|]*)\|([^<>]*)>")  # <target|label> → label
_TAG = re.compile(r"<[@#!]?([^<>]*)>")  # <@U1>, <#C1>, <https://…> → the bare target
_SPACE = re.compile(r"\s+")


def title_from(text: str) -> str:
    """A short title for a conversation that starts with ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    plain = _TAG.sub(r"\1", _LINK.sub(r"\2", first))
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    plain = _SPACE.sub(" ", plain).strip(" *_~`>")
    if not plain:
        return t("New conversation")
    if len(plain) <= MAX_TITLE_CHARS:
        return plain
    cut = plain[: MAX_TITLE_CHARS - 1]
    space = cut.rfind(" ")
    if space > MAX_TITLE_CHARS // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


class _Claims(Protocol):
    async def claim_title(self, *, channel_id: str, thread_ts: str) -> bool: ...


class PaneTitles:
    """The hook ``EventIntake`` calls after each answered message."""

    def __init__(self, *, threads: _Claims, workspaces: WorkspaceClients) -> None:
        self._threads = threads
        self._workspaces = workspaces

    async def after_answer(self, message: IncomingMessage, outcome: TurnOutcome) -> None:
        """After the first completed answer in a pane thread: ``assistant.threads.setTitle``
        (once per thread; other threads cost one conditional update that changes nothing)."""
        if outcome is not TurnOutcome.COMPLETED or not message.is_direct:
            return
        if not await self._threads.claim_title(
            channel_id=message.channel_id, thread_ts=message.thread_ts
        ):
            return
        try:
            client = await self._workspaces.client(message.team_id)
            with slack_failures("assistant.threads.setTitle"):
                await client.assistant_threads_setTitle(
                    channel_id=message.channel_id,
                    thread_ts=message.thread_ts,
                    title=title_from(message.text),
                )
        except DeliveryError as exc:
            logger.warning("could not set the pane thread's title: %s", exc.code)
