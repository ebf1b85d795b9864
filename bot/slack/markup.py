"""Slack's message markup → the plain text a model should read.

``<@U123>`` → ``@Display Name``, ``<#C123|general>`` → ``#general``, ``<https://x|label>`` →
``label (https://x)``, ``<!here>`` → ``@here``, ``&amp; &lt; &gt;`` decoded. Pure functions;
names come from the caller (``UserDirectory`` looks them up).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["mentioned_user_ids", "text_from_blocks", "to_plain_text"]

_TOKEN = re.compile(r"<([^<>]+)>")
_USER = re.compile(r"^@([UW][A-Z0-9]+)(?:\|([^>]*))?$")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def mentioned_user_ids(text: str) -> list[str]:
    """User ids mentioned in ``text``, in order, without repeats."""
    found = [m.group(1) for m in (_USER.match(t) for t in _TOKEN.findall(text)) if m]
    return list(dict.fromkeys(found))


def _replace(token: str, names: Mapping[str, str]) -> str:
    user = _USER.match(token)
    if user:
        name = names.get(user.group(1)) or user.group(2) or user.group(1)
        return f"@{name}"
    if token.startswith("#"):
        channel, _, label = token[1:].partition("|")
        return f"#{label or channel}"
    if token.startswith("!"):
        command, _, label = token[1:].partition("|")
        if command.startswith("subteam^"):
            return label or "@group"
        if command.startswith("date^"):
            return label or command
        return _SPECIAL.get(command, label or f"@{command}")
    url, _, label = token.partition("|")
    if label and label != url:
        return f"{label} ({url})"
    return url.removeprefix("mailto:")


def to_plain_text(text: str, names: Mapping[str, str] | None = None) -> str:
    names = names or {}
    converted = _TOKEN.sub(lambda m: _replace(m.group(1), names), text)
    # Slack escapes only these three; decode &amp; last so "&amp;lt;" stays "&lt;".
    return converted.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def text_from_blocks(blocks: Iterable[Any]) -> str:
    """The text of ``rich_text`` blocks, for messages whose ``text`` is empty. Mentions come
    back in Slack's markup (``<@U…>``), so ``to_plain_text`` handles them like ``text``."""
    parts: list[str] = []

    def walk(element: Any) -> None:
        if not isinstance(element, dict):
            return
        kind = element.get("type")
        if kind == "text":
            parts.append(str(element.get("text", "")))
        elif kind == "user":
            parts.append(f"<@{element.get('user_id', '')}>")
        elif kind == "channel":
            parts.append(f"<#{element.get('channel_id', '')}>")
        elif kind == "link":
            url, label = str(element.get("url", "")), element.get("text")
            parts.append(f"<{url}|{label}>" if label else f"<{url}>")
        elif kind == "broadcast":
            parts.append(f"<!{element.get('range', 'here')}>")
        elif kind == "emoji":
            parts.append(f":{element.get('name', '')}:")
        for child in element.get("elements") or []:
            walk(child)
        if kind in {"rich_text_section", "rich_text_preformatted", "rich_text_quote"}:
            parts.append("\n")

    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "rich_text":
            walk(block)
    return "".join(parts).strip()
