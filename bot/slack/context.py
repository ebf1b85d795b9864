"""What the model sees of a Slack conversation: the current message, the thread's earlier
messages when the bot joins a thread mid-way, and the service's stored transcript turned back
into input items (``replay``: attachments are read again from Slack's file hosts).

Every message goes through the same conversion: Slack markup to plain text with display names,
the author's name in front (in channels; not in DMs), attachments to input parts. The thread is
read with ``conversations.replies``; the newest earlier messages are kept first, within a
character budget.

One message cannot make the bot call Slack without bound (each cap keeps the NEWEST):

* at most ``MAX_PAGES`` pages of the thread are read, and at most ``max_messages`` earlier
  messages are converted;
* display names: at most ``MAX_NAME_LOOKUPS`` people not already cached are looked up per
  message, and per rebuilt thread; the others are shown by their id;
* attachments of earlier messages: at most ``max_thread_files`` files and
  ``max_thread_bytes`` bytes (by Slack's declared sizes) in all; older ones are named, unread.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.conversation import IncomingMessage, TurnInput
from bot.slack.events import HUMAN_SUBTYPES, strip_mention
from bot.slack.failures import slack_failures
from bot.slack.files import FileReader
from bot.slack.identity import BotIdentity
from bot.slack.markup import mentioned_user_ids, text_from_blocks, to_plain_text
from bot.slack.users import Allowance, UserDirectory
from bot.slack.workspaces import WorkspaceClients
from storage.conversation_state import TranscriptRecord

__all__ = ["SlackContext"]

logger = logging.getLogger(__name__)

PAGE_SIZE = 200
MAX_PAGES = 10
"""Pages of ``conversations.replies`` read per turn (Tier 3, and 1 a minute for some apps)."""
MAX_NAME_LOOKUPS = 25
"""People not yet cached whose names one message (or one rebuilt thread) may look up."""


@dataclass
class _FileAllowance:
    files: int
    bytes: int


class SlackContext:
    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        users: UserDirectory,
        files: FileReader,
        history_chars: int = 40_000,
        max_messages: int = 200,
        max_thread_files: int = 10,
        max_thread_bytes: int = 20 * 1024 * 1024,
        max_file_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self._workspaces = workspaces
        self._users = users
        self._files = files
        self._history_chars = history_chars
        self._max_messages = max_messages
        self._max_thread_files = max_thread_files
        self._max_thread_bytes = max_thread_bytes
        self._max_file_bytes = max_file_bytes

    async def current(self, message: IncomingMessage) -> TurnInput:
        item, notices = await self._user_item(
            text=message.text,
            user_id=message.user_id,
            files=message.files,
            attribute=not message.is_direct,
            team_id=message.team_id,
            names=Allowance(MAX_NAME_LOOKUPS),
        )
        return TurnInput(items=[item], notices=notices)

    async def earlier(self, message: IncomingMessage) -> TurnInput:
        """The thread's messages before ``message``, oldest first, newest kept first within
        the budget."""
        raw = await self._replies(message)
        identity = await self._workspaces.identity(message.team_id)
        names = Allowance(MAX_NAME_LOOKUPS)
        files = _FileAllowance(self._max_thread_files, self._max_thread_bytes)
        kept: list[dict[str, Any]] = []
        used = 0
        for entry in reversed(raw):
            item = await self._history_item(
                entry,
                attribute=not message.is_direct,
                identity=identity,
                names=names,
                files=files,
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
        """The newest ``max_messages`` messages before ``message`` among the first
        ``MAX_PAGES`` pages of the thread, oldest first."""
        client = await self._workspaces.client(message.team_id)
        newest: deque[dict[str, Any]] = deque(maxlen=self._max_messages)
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {
                "channel": message.channel_id,
                "ts": message.thread_ts,
                "limit": PAGE_SIZE,
            }
            if cursor:
                kwargs["cursor"] = cursor
            with slack_failures("conversations.replies"):
                page = await client.conversations_replies(**kwargs)
            newest.extend(
                m
                for m in page.get("messages") or []
                if isinstance(m, dict) and _ts_key(m.get("ts")) < _ts_key(message.ts)
            )
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        else:
            if cursor:
                logger.info("thread longer than %d pages: reading the first ones", MAX_PAGES)
        return list(newest)

    async def _history_item(
        self,
        raw: Mapping[str, Any],
        *,
        attribute: bool,
        identity: BotIdentity,
        names: Allowance,
        files: _FileAllowance,
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
        attached = [f for f in raw.get("files") or [] if isinstance(f, dict)]
        readable, skipped = self._within(attached, files)
        if skipped:
            listed = ", ".join(str(f.get("name") or f.get("title") or "a file") for f in skipped)
            text += f"\n[not read, over this turn's attachment limit: {listed}]"
        item, _ = await self._user_item(
            text=strip_mention(text, identity.user_id),
            user_id=user_id,
            files=readable,
            attribute=attribute,
            team_id=identity.team_id,
            names=names,
        )
        return item

    def _within(
        self, attached: list[dict[str, Any]], allowance: _FileAllowance
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The files that still fit the turn's attachment caps (newest messages come first),
        and the rest. A file with no declared size counts as the largest one allowed."""
        readable: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for file in attached:
            size = file.get("size")
            cost = size if isinstance(size, int) and size >= 0 else self._max_file_bytes
            cost = min(cost, self._max_file_bytes)
            if allowance.files >= 1 and cost <= allowance.bytes:
                allowance.files -= 1
                allowance.bytes -= cost
                readable.append(file)
            else:
                skipped.append(file)
        return readable, skipped

    async def _user_item(
        self,
        *,
        text: str,
        user_id: str,
        files: Sequence[Mapping[str, Any]],
        attribute: bool,
        team_id: str,
        names: Allowance,
    ) -> tuple[dict[str, Any], list[str]]:
        # The author first, then the people mentioned: beyond the allowance, ids are shown.
        wanted = [user_id, *mentioned_user_ids(text)] if attribute else mentioned_user_ids(text)
        known = await self._users.names(wanted, team_id=team_id, allowance=names)
        plain = to_plain_text(text, known).strip()
        if not plain and not files:
            plain = "(mentioned you without writing anything else)"
        if attribute:
            author = known.get(user_id, user_id)
            plain = f"{author}: {plain}" if plain else f"{author}:"
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
