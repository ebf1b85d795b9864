"""The Responses-API model client: the service's HTTP edge to the model endpoint.

``ResponsesClient`` posts to ``{base_url}/responses``; the conversation core only sees the plain
types below and the errors of ``bot.errors``. The client (and with it httpx) is loaded on first
use: importing ``bot.model.types`` or ``bot.model.error_meaning``, as the core does, must not
load the HTTP stack, and Python runs this file before any submodule.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from bot.model.types import (
    Completed,
    ModelEvent,
    ModelResult,
    ReasoningDelta,
    ResponseRequest,
    TextDelta,
    Usage,
)

if TYPE_CHECKING:
    from bot.model.client import ResponsesClient
    from bot.model.retry import RetryPolicy

__all__ = [
    "Completed",
    "ModelEvent",
    "ModelResult",
    "ReasoningDelta",
    "ResponseRequest",
    "ResponsesClient",
    "RetryPolicy",
    "TextDelta",
    "Usage",
]

_LAZY: Final = {"ResponsesClient": "bot.model.client", "RetryPolicy": "bot.model.retry"}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'bot.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once found, an ordinary module attribute
    return value
