"""One guarantee: reading what the model sees fails only as ``ContextError``.

Slack can refuse ``conversations.replies`` (``not_in_channel``, ``missing_scope``), be
unreachable, or the workspace can be uninstalled while a message waits; the conversation layer
then closes the turn with a note instead of leaving it pending. This is the one place where
those Slack failures are translated for the model-input path; anything else is a bug of ours
and stays what it is (the turn reports an internal error).
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.conversation import ContextSource, IncomingMessage, TurnInput
from bot.errors import ContextError
from bot.slack.workspaces import WorkspaceNotInstalled
from storage.conversation_state import TranscriptRecord

__all__ = ["GuardedContext"]


_SLACK_FAILURES = (
    WorkspaceNotInstalled,
    SlackApiError,
    SlackClientError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


class GuardedContext:
    def __init__(self, inner: ContextSource) -> None:
        self._inner = inner

    async def current(self, message: IncomingMessage) -> TurnInput:
        try:
            return await self._inner.current(message)
        except _SLACK_FAILURES as exc:
            raise _context_error(exc) from exc

    async def earlier(self, message: IncomingMessage) -> TurnInput:
        try:
            return await self._inner.earlier(message)
        except _SLACK_FAILURES as exc:
            raise _context_error(exc) from exc

    async def replay(
        self, message: IncomingMessage, entries: Sequence[TranscriptRecord]
    ) -> TurnInput:
        try:
            return await self._inner.replay(message, entries)
        except _SLACK_FAILURES as exc:
            raise _context_error(exc) from exc


def _context_error(exc: Exception) -> ContextError:
    if isinstance(exc, WorkspaceNotInstalled):
        return ContextError(str(exc), code="not_installed")
    if isinstance(exc, SlackApiError):
        code = str(exc.response.get("error") or "slack_api_error")
        return ContextError(f"Slack refused to give the thread: {code}", code=code)
    return ContextError(
        f"Slack could not be reached: {type(exc).__name__}", code="slack_unreachable"
    )
