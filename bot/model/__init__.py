"""The Responses-API model client: the service's HTTP edge to the model endpoint.

``ResponsesClient`` posts to ``{base_url}/responses``; the conversation core only sees the plain
types below and the errors of ``bot.errors``.
"""

from bot.model.client import ResponsesClient
from bot.model.retry import RetryPolicy
from bot.model.types import (
    Completed,
    ModelEvent,
    ModelResult,
    ReasoningDelta,
    ResponseRequest,
    TextDelta,
    Usage,
)

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
