"""Slack's text escaping, both ways: ``&``, ``<`` and ``>`` travel as ``&amp;``, ``&lt;`` and
``&gt;`` (in slash-command text, and in any mrkdwn we post, where a bare ``<`` would start a
link, a mention or a ``<!channel>`` broadcast)."""

from __future__ import annotations

import re

__all__ = ["escape", "unescape"]

_ENTITIES = re.compile(r"&(amp|lt|gt);")
_CHARACTERS = {"amp": "&", "lt": "<", "gt": ">"}


def unescape(text: str) -> str:
    """Undo Slack's escaping once, in one pass (so a typed ``&lt;``, sent as ``&amp;lt;``,
    stays ``&lt;``)."""
    return _ENTITIES.sub(lambda m: _CHARACTERS[m.group(1)], text)


def escape(text: str) -> str:
    """``text`` (a stored value, something a person typed) shown literally in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
