"""What the model sees of a Slack conversation: the current message, the thread's earlier
messages when the bot joins a thread mid-way, and the service's stored transcript turned back
into input items (``replay``: attachments are read again from Slack's file hosts).

Every message goes through the same conversion: Slack markup to plain text with display names,
the author's name in front (in channels; not in DMs), attachments to input parts. The thread is
read with ``conversations.replies`` (all pages); the newest earlier messages are kept first,
within a character budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.conversation import IncomingMessage, TurnInput
from bot.slack.events import HUMAN_SUBTYPES, strip_mention
from bot.slack.files import FileReader
from bot.slack.identity import BotIdentity
from bot.slack.markup import mentioned_user_ids, text_from_blocks, to_plain_text
from bot.slack.users import UserDirectory
from bot.slack.workspaces import WorkspaceClients
from storage.conversation_state import TranscriptRecord

__all__ = ["SlackContext"]

PAGE_SIZE = 200
MAX_PAGES = 50  # a runaway pagination cannot loop forever


class SlackContext:
    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        users: UserDirectory,
        files: FileReader,
        history_chars: int = 40_000,
    ) -> None:
        self._workspaces = workspaces
        self._users = users
        self._files = files
        self._history_chars = history_chars

    async def current(self, message: IncomingMessage) -> TurnInput:
        item, notices = await self._user_item(
            text=message.text,
            user_id=message.user_id,
            files=message.files,
            attribute=not message.is_direct,
            team_id=message.team_id,
        )
        return TurnInput(items=[item], notices=notices)

    async def earlier(self, message: IncomingMessage) -> TurnInput:
        """The thread's messages before ``message``, oldest first, newest kept first within
        the budget."""
        raw = [
            m for m in await self._replies(message) if _ts_key(m.get("ts")) < _ts_key(message.ts)
        ]
        identity = await self._workspaces.identity(message.team_id)
        kept: list[dict[str, Any]] = []
        used = 0
        for entry in reversed(raw):
            item = await self._history_item(
                entry, attribute=not message.is_direct, identity=identity
            )
            if item is None:
                continue
            size = _size(item)
            if kept and used + size > self._history_chars:
                break
            kept.append(item)
            used += size
        kept.reverse()
        return TurnInput(items=kept, notices=[])

    async def replay(
        self, message: IncomingMessage, entries: Sequence[TranscriptRecord]
    ) -> TurnInput:
        """Stored transcript entries as input items, in order: the bot's answers as assistant
        messages, user messages with their attachments read again (one that cannot be read
        any more is left out silently: the text says what it was about)."""
        items: list[dict[str, Any]] = []
        for entry in entries:
            if entry.role == "assistant":
                items.append({"role": "assistant", "content": entry.text})
                continue
            read = (
                await self._files.read(entry.files, team_id=message.team_id)
                if entry.files
                else None
            )
            if read is None or not read.parts:
                items.append({"role": "user", "content": entry.text})
            else:
                parts = [{"type": "input_text", "text": entry.text}, *read.parts]
                items.append({"role": "user", "content": parts})
        return TurnInput(items=items, notices=[])

    async def _replies(self, message: IncomingMessage) -> list[dict[str, Any]]:
        client = await self._workspaces.client(message.team_id)
        result: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {
                "channel": message.channel_id,
                "ts": message.thread_ts,
                "limit": PAGE_SIZE,
            }
            if cursor:
                kwargs["cursor"] = cursor
            page = await client.conversations_replies(**kwargs)
            result.extend(m for m in page.get("messages") or [] if isinstance(m, dict))
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return result

    async def _history_item(
        self, raw: Mapping[str, Any], *, attribute: bool, identity: BotIdentity
    ) -> dict[str, Any] | None:
        is_ours = raw.get("user") == identity.user_id or (
            identity.bot_id is not None and raw.get("bot_id") == identity.bot_id
        )
        if is_ours:
            text = _full_text(raw)
            return {"role": "assistant", "content": text} if text.strip() else None
        if raw.get("bot_id") or raw.get("subtype") not in HUMAN_SUBTYPES:
            return None
        user_id = raw.get("user")
        if not isinstance(user_id, str):
            return None
        text = str(raw.get("text") or "") or text_from_blocks(raw.get("blocks") or [])
        files = [f for f in raw.get("files") or [] if isinstance(f, dict)]
        item, _ = await self._user_item(
            text=strip_mention(text, identity.user_id),
            user_id=user_id,
            files=files,
            attribute=attribute,
            team_id=identity.team_id,
        )
        return item

    async def _user_item(
        self,
        *,
        text: str,
        user_id: str,
        files: Sequence[Mapping[str, Any]],
        attribute: bool,
        team_id: str,
    ) -> tuple[dict[str, Any], list[str]]:
        ids = mentioned_user_ids(text)
        names = await self._users.names([*ids, user_id] if attribute else ids, team_id=team_id)
        plain = to_plain_text(text, names).strip()
        if not plain and not files:
            plain = "(mentioned you without writing anything else)"
        if attribute:
            plain = f"{names[user_id]}: {plain}" if plain else f"{names[user_id]}:"
        read = await self._files.read(files, team_id=team_id) if files else None
        if read is None or not read.parts:
            content: str | list[dict[str, Any]] = plain
        else:
            content = [{"type": "input_text", "text": plain}, *read.parts]
        return {"role": "user", "content": content}, (read.notices if read else [])


def _full_text(raw: Mapping[str, Any]) -> str:
    """Our answers carry their whole text in ``markdown`` blocks (``text`` is a shortened
    plain fallback); native streams in ``text``."""
    blocks = raw.get("blocks")
    if isinstance(blocks, list):
        parts = [
            str(b.get("text", ""))
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "markdown"
        ]
        if parts:
            return "\n".join(parts)
    return str(raw.get("text") or "")


def _size(item: Mapping[str, Any]) -> int:
    content = item.get("content")
    if isinstance(content, str):
        return len(content)
    total = 0
    for part in content or []:
        # An image or a PDF costs the model about as much as a page of text, whatever its
        # encoded size.
        total += len(str(part.get("text") or "")) if part.get("type") == "input_text" else 1_000
    return total


def _ts_key(ts: object) -> tuple[int, int]:
    if not isinstance(ts, str):
        return (0, 0)
    seconds, _, fraction = ts.partition(".")
    try:
        return int(seconds), int(fraction or 0)
    except ValueError:
        return (0, 0)
