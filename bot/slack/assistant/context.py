"""Where the person is: what the model is told about the channel they are viewing while they
talk to the bot in the assistant pane, and "summarise this channel".

Wraps the context source (``bot.slack.context.SlackContext``) and adds, for a message in a
pane thread whose pane reported a channel:

- the channel's name, in a short context line before the message, but only when the asking
  person is a member of it (``bot.slack.membership``: fails closed): a channel the person
  cannot read is never named, to the model or to them;
- when the message asks to summarise or catch up on "this channel" (or "here"): the channel's
  last messages with their authors (``conversations.history``, one page, the newest kept first
  within the same character budget as a thread's history), only when the bot is a member too
  (``conversations.info``). Otherwise the person gets a short notice and the model is told the
  channel cannot be read, so it says so rather than guessing.

Slack failures here are left to ``GuardedContext`` (the turn ends with a note), except the
channel lookup, where a refusal (``channel_not_found`` for a private channel the bot is not
in) simply means "not readable".

Also: a pane thread's earlier messages are never read from Slack. The service saw the thread
start and every message in it, so its own transcript holds the conversation; the only thing
before the first message is the root Slack made (``assistant_app_thread``), and
``conversations.replies`` is 1 call a minute for apps outside the Marketplace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from bot.channel_settings.schema import DEFAULT_SUGGESTED_PROMPTS
from bot.conversation import ContextSource, IncomingMessage, TurnInput
from bot.errors import SlackRefusedError
from bot.i18n import N_, SUPPORTED, t, translations
from bot.slack.events import HUMAN_SUBTYPES
from bot.slack.failures import slack_failures
from bot.slack.markup import mentioned_user_ids, text_from_blocks, to_plain_text
from bot.slack.membership import ChannelMembership
from bot.slack.users import UserDirectory
from bot.slack.workspaces import WorkspaceClients
from storage.conversation_state import TranscriptRecord
from storage.records import AssistantThreadRecord

__all__ = ["CANNOT_READ", "NOT_A_MEMBER", "PaneContext", "asks_for_channel_summary"]

HISTORY_LIMIT: Final = 100
"""Messages asked of ``conversations.history`` (one page: Tier 3, shared with every answer)."""
MAX_AUTHORS: Final = 30
"""Distinct people named in a summary's input (``users.info``, cached); others by id."""

# Notices the person reads (catalogue texts, bot.i18n); the _note()s are for the model and
# stay English.
NOT_A_MEMBER: Final = N_(
    "I can only read a channel that both you and I are members of, so I can't summarise the "
    "one you're viewing."
)
CANNOT_READ: Final = N_("I'm not a member of {channel}: invite me there and ask again.")

_SUMMARY = re.compile(
    r"\b(summari[sz]e|summary|recap|tl;?dr|catch (me )?up|what did i miss|what'?s (new|happening"
    r"|going on))\b",
    re.IGNORECASE,
)
_HERE = re.compile(r"\b(this|the|current)\s+(channel|conversation|discussion)\b|\bhere\b", re.I)
_CATCH_UP = re.compile(r"\b(catch (me )?up|what did i miss)\b", re.IGNORECASE)


def asks_for_channel_summary(text: str) -> bool:
    """Whether ``text`` asks about the channel being viewed ("Summarise this channel", "catch
    me up", "what's happening here?")."""
    if text.strip().casefold() in _SUMMARY_PROMPTS:
        return True  # the default prompt, as offered in any language
    return bool(_CATCH_UP.search(text)) or bool(_SUMMARY.search(text) and _HERE.search(text))


_SUMMARY_PROMPTS: Final = frozenset(
    translations(language).gettext(DEFAULT_SUGGESTED_PROMPTS[0]).casefold()
    for language in SUPPORTED
)
""""Summarise this channel" in every language the pane offers it in."""


class _PaneThreads(Protocol):
    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadRecord | None: ...


def _note(text: str) -> dict[str, Any]:
    """Context for the model, as a user-role item (every Responses endpoint takes those),
    marked as coming from Slack rather than from the person."""
    return {"role": "user", "content": f"[Slack context, not written by the person] {text}"}


class PaneContext:
    def __init__(
        self,
        inner: ContextSource,
        *,
        threads: _PaneThreads,
        workspaces: WorkspaceClients,
        membership: ChannelMembership,
        users: UserDirectory,
        history_chars: int = 40_000,
    ) -> None:
        self._inner = inner
        self._threads = threads
        self._workspaces = workspaces
        self._membership = membership
        self._users = users
        self._history_chars = history_chars

    async def _pane(self, message: IncomingMessage) -> AssistantThreadRecord | None:
        if not message.is_direct or message.ts == message.thread_ts:
            return None  # pane messages are DM thread replies (the root is Slack's)
        return await self._threads.find(channel_id=message.channel_id, thread_ts=message.thread_ts)

    async def current(self, message: IncomingMessage) -> TurnInput:
        base = await self._inner.current(message)
        pane = await self._pane(message)
        channel = pane.viewing if pane is not None else None
        if channel is None:
            return base
        wants_summary = asks_for_channel_summary(message.text)
        if not await self._membership.is_member(message.user_id, channel, team_id=message.team_id):
            if not wants_summary:
                return base
            note = _note(
                "The person asked about the channel they are viewing, which cannot be read "
                "for them. Say briefly that you cannot read it; do not guess its name or "
                "content."
            )
            return TurnInput([note, *base.items], [*base.notices, t(NOT_A_MEMBER)])
        info = await self._channel(channel, team_id=message.team_id)
        name = f"#{info['name']}" if info and info.get("name") else f"<#{channel}>"
        items = [_note(f"The person is viewing the Slack channel {name} ({channel}).")]
        notices = list(base.notices)
        if wants_summary:
            if info is not None and info.get("is_member"):
                items.append(await self._history(channel, name, team_id=message.team_id))
            else:
                items.append(
                    _note(
                        f"You are not a member of {name}, so its messages cannot be read. "
                        "Say so briefly and suggest inviting you; do not guess its content."
                    )
                )
                notices.append(t(CANNOT_READ, channel=f"<#{channel}>"))
        return TurnInput([*items, *base.items], notices)

    async def earlier(self, message: IncomingMessage) -> TurnInput:
        if await self._pane(message) is not None:
            return TurnInput(items=[], notices=[])  # see the module docstring
        return await self._inner.earlier(message)

    async def replay(
        self, message: IncomingMessage, entries: Sequence[TranscriptRecord]
    ) -> TurnInput:
        return await self._inner.replay(message, entries)

    async def _channel(self, channel: str, *, team_id: str) -> Mapping[str, Any] | None:
        """``conversations.info``'s channel, or None where Slack will not show it to the bot."""
        client = await self._workspaces.client(team_id)
        try:
            with slack_failures("conversations.info"):
                response = await client.conversations_info(channel=channel)
        except SlackRefusedError as exc:
            if exc.code in ("channel_not_found", "not_in_channel"):
                return None
            raise
        found = response.get("channel")
        return found if isinstance(found, dict) else None

    async def _history(self, channel: str, name: str, *, team_id: str) -> dict[str, Any]:
        """The channel's last messages, oldest first, newest kept first within the budget."""
        client = await self._workspaces.client(team_id)
        with slack_failures("conversations.history"):
            response = await client.conversations_history(channel=channel, limit=HISTORY_LIMIT)
        raw = [
            m
            for m in response.get("messages") or []
            if isinstance(m, dict)
            and m.get("subtype") in HUMAN_SUBTYPES
            and isinstance(m.get("user"), str)
        ]
        authors: list[str] = []
        for entry in raw:  # newest first, as Slack answers: recent authors get their names
            text = str(entry.get("text") or "")
            for user in (entry["user"], *mentioned_user_ids(text)):
                if user not in authors and len(authors) < MAX_AUTHORS:
                    authors.append(user)
        names = await self._users.names(authors, team_id=team_id)
        lines: list[str] = []
        used = 0
        for entry in raw:
            text = str(entry.get("text") or "") or text_from_blocks(entry.get("blocks") or [])
            plain = " ".join(to_plain_text(text, names).split())
            if not plain:
                continue
            line = f"{names.get(entry['user'], entry['user'])}: {plain}"
            if lines and used + len(line) > self._history_chars:
                break
            lines.append(line)
            used += len(line) + 1
        lines.reverse()
        if not lines:
            return _note(f"{name} has no messages to summarise.")
        return _note(
            f"The last {len(lines)} messages of {name}, oldest first (author: text):\n"
            + "\n".join(lines)
        )
