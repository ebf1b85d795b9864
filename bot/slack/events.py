"""Slack event payloads → ``IncomingMessage``, or ``None`` when no model call may follow.

One guarantee: only a human's new message can become a turn. Bots (by ``bot_id``, the bot's
own messages included), edits, deletions and other subtypes return ``None``; ``file_share``
and ``thread_broadcast`` are human messages and are kept. The text and the files' fields of
a kept message are safe to encode anywhere: lone surrogates and NUL are replaced (see
``bot.text_safety``), so they can be stored and sent to the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.conversation import IncomingMessage
from bot.slack.markup import mentioned_user_ids, text_from_blocks
from bot.text_safety import clean_text, scrub

__all__ = ["HUMAN_SUBTYPES", "from_app_mention", "from_message", "strip_mention"]

HUMAN_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


def _mention(bot_user_id: str) -> str:
    """``<@BOT>`` or ``<@BOT|name>``."""
    return rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>"


def strip_mention(text: str, bot_user_id: str) -> str:
    """Remove ``<@BOT>`` and ``<@BOT|name>`` and tidy the whitespace left behind."""
    stripped = re.sub(_mention(bot_user_id), " ", text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip()


def mentions(text: str, bot_user_id: str) -> bool:
    return re.search(_mention(bot_user_id), text) is not None


def _from_a_person(event: Mapping[str, Any], kind: str, bot_user_id: str) -> bool:
    """An event of type ``kind`` carrying a human's new message (never the bot's own)."""
    return event.get("type") == kind and _is_human(event) and event.get("user") != bot_user_id


def _is_human(event: Mapping[str, Any]) -> bool:
    subtype = event.get("subtype")
    return (
        (subtype is None or isinstance(subtype, str))
        and subtype in HUMAN_SUBTYPES
        and isinstance(event.get("text", ""), str)
        and not event.get("bot_id")
        and not event.get("bot_profile")
        and "edited" not in event
        and isinstance(event.get("user"), str)
        and isinstance(event.get("ts"), str)
        and isinstance(event.get("channel"), str)
    )


def _incoming(
    event: Mapping[str, Any],
    team_id: str,
    bot_user_id: str,
    event_id: str | None,
    *,
    mentions_bot: bool,
    is_direct: bool,
) -> IncomingMessage:
    """The turn for a human message; a top-level message starts a thread at itself."""
    ts = clean_text(event["ts"])
    thread_ts = event.get("thread_ts")
    raw_text = str(event.get("text") or "") or text_from_blocks(_list(event.get("blocks")))
    others = [u for u in mentioned_user_ids(raw_text) if u != bot_user_id]
    return IncomingMessage(
        team_id=clean_text(team_id),
        channel_id=clean_text(event["channel"]),
        thread_ts=clean_text(thread_ts) if isinstance(thread_ts, str) else ts,
        ts=ts,
        user_id=clean_text(event["user"]),
        text=clean_text(strip_mention(raw_text, bot_user_id)),
        event_id=clean_text(event_id) if isinstance(event_id, str) else None,
        mentions_bot=mentions_bot,
        is_direct=is_direct,
        starts_thread=not isinstance(thread_ts, str),
        mentions_others=bool(others),
        files=tuple(scrub(f) for f in _list(event.get("files")) if isinstance(f, dict)),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def from_app_mention(
    event: Mapping[str, Any], *, team_id: str, bot_user_id: str, event_id: str | None
) -> IncomingMessage | None:
    """A mention in a channel: answered in the mention's thread, or in a new one at it."""
    if not _from_a_person(event, "app_mention", bot_user_id):
        return None
    return _incoming(event, team_id, bot_user_id, event_id, mentions_bot=True, is_direct=False)


def from_message(
    event: Mapping[str, Any], *, team_id: str, bot_user_id: str, event_id: str | None
) -> IncomingMessage | None:
    """A plain message: a DM to the bot, or a candidate follow-up in a channel thread."""
    if not _from_a_person(event, "message", bot_user_id):
        return None
    is_direct = event.get("channel_type") == "im"
    if not is_direct and mentions(str(event.get("text") or ""), bot_user_id):
        # Slack also sends this message as app_mention; that listener answers it.
        return None
    return _incoming(event, team_id, bot_user_id, event_id, mentions_bot=False, is_direct=is_direct)
