"""The service's one error tree.

    BotError
    ├── ConfigError                    a setting is missing or malformed (start-up stops)
    ├── ModelError                     anything that went wrong talking to the model endpoint
    │   ├── ModelConnectionError       refused, DNS failure, connection reset before an answer
    │   ├── ModelTimeoutError          connect timeout, idle stream, overall cap (``kind``)
    │   ├── ModelHTTPError             the endpoint answered with an HTTP error status
    │   │   ├── ModelBadRequestError   400 / 413 / 422 not covered below
    │   │   │   ├── ChainNotFoundError      ``previous_response_not_found`` (and relay variants)
    │   │   │   └── ContextTooLongError     ``context_length_exceeded``
    │   │   ├── ModelAuthError         401 / 403
    │   │   ├── ModelNotFoundError     404 or ``model_not_found``
    │   │   ├── ModelRateLimitError    429
    │   │   │   └── QuotaExceededError ``insufficient_quota`` (never retried)
    │   │   └── ModelServerError       5xx
    │   └── ModelStreamError           the answer started but did not finish well
    │       ├── ResponseFailedError    ``error`` event / ``response.failed``
    │       ├── ResponseIncompleteError ``response.incomplete`` (``reason``)
    │       └── StreamProtocolError    malformed SSE/JSON, stream ended without a terminal event
    ├── DeliveryError                  the reply could not be delivered to Slack
    └── ContextError                   the model input could not be built (Slack refused the
                                       thread's history, the workspace is gone, …)

Foreign exceptions (httpx, SQLAlchemy, slack_sdk) are wrapped where they are caught, with
``raise X(...) from exc``, so callers only branch on these types. Every ``ModelError`` carries a
short machine ``code`` that is stored on the turn and used to pick the user-facing sentence
(see ``bot.user_messages``).
"""

from __future__ import annotations

__all__ = [
    "BotError",
    "ChainNotFoundError",
    "ConfigError",
    "ContextError",
    "ContextTooLongError",
    "DeliveryError",
    "ModelAuthError",
    "ModelBadRequestError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelNotFoundError",
    "ModelRateLimitError",
    "ModelServerError",
    "ModelStreamError",
    "ModelTimeoutError",
    "QuotaExceededError",
    "ResponseFailedError",
    "ResponseIncompleteError",
    "StreamProtocolError",
]


class BotError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(BotError):
    """A setting is missing or malformed. ``str(exc)`` is one plain line naming it."""


class ModelError(BotError):
    """Talking to the model endpoint failed.

    ``code`` is a short stable identifier (the endpoint's own error code when it sent one,
    otherwise one of ours such as ``connection_error``); ``request_id`` is the endpoint's
    ``x-request-id`` when known.
    """

    default_code = "model_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.request_id = request_id


class ModelConnectionError(ModelError):
    """No answer could be had: connection refused, DNS failure, reset before any byte."""

    default_code = "connection_error"


class ModelTimeoutError(ModelError):
    """A timeout fired. ``kind`` is ``connect``, ``idle`` (between stream events) or ``total``.

    When it fires after the answer had started, ``partial_text`` holds what had arrived, so
    the reply can be finished with a note instead of being lost.
    """

    default_code = "timeout"

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        request_id: str | None = None,
        partial_text: str = "",
        response_id: str | None = None,
    ) -> None:
        super().__init__(message, code=f"timeout_{kind}", request_id=request_id)
        self.kind = kind
        self.partial_text = partial_text
        self.response_id = response_id


class ModelHTTPError(ModelError):
    """The endpoint answered with an HTTP error status."""

    default_code = "http_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id)
        self.status_code = status_code
        self.param = param
        self.error_type = error_type
        self.retry_after = retry_after


class ModelBadRequestError(ModelHTTPError):
    default_code = "bad_request"


class ChainNotFoundError(ModelBadRequestError):
    """The endpoint no longer knows ``previous_response_id``: the chain must be rebuilt."""

    default_code = "previous_response_not_found"


class ContextTooLongError(ModelBadRequestError):
    default_code = "context_length_exceeded"


class ModelAuthError(ModelHTTPError):
    default_code = "unauthorized"


class ModelNotFoundError(ModelHTTPError):
    default_code = "model_not_found"


class ModelRateLimitError(ModelHTTPError):
    default_code = "rate_limited"


class QuotaExceededError(ModelRateLimitError):
    default_code = "insufficient_quota"


class ModelServerError(ModelHTTPError):
    default_code = "server_error"


class ModelStreamError(ModelError):
    """The answer started but did not end well. ``partial_text`` is what had arrived."""

    default_code = "stream_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        response_id: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, code=code, request_id=request_id)
        self.response_id = response_id
        self.partial_text = partial_text


class ResponseFailedError(ModelStreamError):
    """An ``error`` event or ``response.failed`` ended the stream."""

    default_code = "response_failed"


class ResponseIncompleteError(ModelStreamError):
    """``response.incomplete``: ``reason`` is e.g. ``max_output_tokens`` or ``content_filter``."""

    default_code = "response_incomplete"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None,
        request_id: str | None = None,
        response_id: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(
            message,
            code=f"incomplete_{reason}" if reason else "response_incomplete",
            request_id=request_id,
            response_id=response_id,
            partial_text=partial_text,
        )
        self.reason = reason


class StreamProtocolError(ModelStreamError):
    """The stream was malformed, out of order, or ended without a terminal event."""

    default_code = "stream_protocol_error"


class DeliveryError(BotError):
    """A reply could not be delivered to Slack. ``code`` is Slack's error string."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class ContextError(BotError):
    """What the model should see could not be read. ``code`` is the source's error string
    (Slack's, e.g. ``not_in_channel`` or ``missing_scope``; ``not_installed``; or
    ``slack_unreachable``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
