"""Slack's 3-second window: when a request arrived, and how much of the window is left.

Every listener acknowledges before slow work (Bolt acknowledges events itself before their
listener runs; commands and actions call ``ack()`` first). The settings form's submission is
the exception: its acknowledgement carries the answer (errors on fields, or close), so its
work is bounded by what is left of the window instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["ACK_WINDOW", "RECEIVED_AT", "time_left", "too_late"]

RECEIVED_AT: Final = "received_at"
"""Context key: ``time.monotonic()`` when the HTTP edge received the request (``bot.server``
sets it; Socket Mode has none, and then a listener counts from its own start)."""
ACK_WINDOW: Final = 2.5
"""Seconds after receipt by which Slack must have our answer: its limit is 3 s from sending,
and the network takes its share."""


def time_left(context: Mapping[str, Any]) -> float:
    """Seconds left of the ``ACK_WINDOW`` of the request being handled."""
    received = context.get(RECEIVED_AT)
    if not isinstance(received, float):
        return ACK_WINDOW
    return ACK_WINDOW - (time.monotonic() - received)


def too_late(context: Mapping[str, Any]) -> bool:
    return time_left(context) <= 0
