"""Reads a thread's messages back from Slack (``conversations.replies``, all pages).

Used when the model endpoint has lost a chain: the Slack thread is the transcript, so the
conversation can be rebuilt from it. The bot's own messages become ``assistant`` turns; other
bots' messages and non-human subtypes are left out.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import HistoryMessage
from bot.slack.events import HUMAN_SUBTYPES, strip_mention
from bot.slack.identity import BotIdentity

__all__ = ["SlackThreadHistory"]

PAGE_SIZE = 200
MAX_PAGES = 50  # a runaway pagination (or a hostile proxy) cannot loop forever


class SlackThreadHistory:
    def __init__(self, client: AsyncWebClient, identity: BotIdentity) -> None:
        self._client = client
        self._identity = identity

    async def messages(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> list[HistoryMessage]:
        result: list[HistoryMessage] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {"channel": channel_id, "ts": thread_ts, "limit": PAGE_SIZE}
            if cursor:
                kwargs["cursor"] = cursor
            page = await self._client.conversations_replies(**kwargs)
            for raw in page.get("messages") or []:
                message = self._convert(raw)
                if message is not None:
                    result.append(message)
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return result

    def _convert(self, raw: dict[str, Any]) -> HistoryMessage | None:
        ts = raw.get("ts")
        text = _full_text(raw)
        if not isinstance(ts, str) or text is None:
            return None
        is_ours = raw.get("user") == self._identity.user_id or (
            self._identity.bot_id is not None and raw.get("bot_id") == self._identity.bot_id
        )
        if is_ours:
            return HistoryMessage(role="assistant", text=text, ts=ts)
        if raw.get("bot_id") or raw.get("subtype") not in HUMAN_SUBTYPES:
            return None
        return HistoryMessage(role="user", text=strip_mention(text, self._identity.user_id), ts=ts)


def _full_text(raw: dict[str, Any]) -> str | None:
    """The whole text of a message: our answers carry it in ``markdown`` blocks (their
    ``text`` is only a shortened plain fallback); other messages in ``text``."""
    blocks = raw.get("blocks")
    if isinstance(blocks, list):
        parts = [
            str(b.get("text", ""))
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "markdown"
        ]
        if parts:
            return "\n".join(parts)
    text = raw.get("text")
    return text if isinstance(text, str) else None
