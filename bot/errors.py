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
    ├── DeliveryError                  a Slack call failed (``code``, ``method``, ``status``,
    │   │                              ``retry_after``)
    │   ├── SlackRefusedError          Slack answered and said no (``code`` is its error string)
    │   │   └── SlackRateLimitedError  HTTP 429 (``retry_after``)
    │   ├── SlackUnreachableError      no answer: refused, reset, DNS, TLS, a broken body
    │   ├── SlackTimeoutError          no answer in time, or no slot in the rate budget in time
    │   └── NotInstalledError          the workspace removed the app: nothing can be delivered
    └── ContextError                   the model input could not be built (Slack refused the
                                       thread's history, the workspace is gone, …)

Foreign exceptions (httpx, SQLAlchemy, slack_sdk) are wrapped in one place each, with ``raise
X(...) from exc`` (slack_sdk's, aiohttp's and the OS's in ``bot.slack.failures``), so callers
only branch on these types and their codes, never on message strings. Every ``ModelError``
carries a short machine ``code`` that is stored on the turn, and a ``meaning``
(:class:`ErrorMeaning`): what the failure means whatever shape it came in. Relays rewrite codes
(``"code": "400"``, ``bad_response_status_code``) and report failures inside a 200 stream, so
the type says how the failure arrived and ``meaning`` what it means;
``bot.model.error_meaning`` is the one place that decides it, and ``bot.user_messages`` picks
the user-facing sentence from it.
"""

from __future__ import annotations

import enum

__all__ = [
    "BotError",
    "ChainNotFoundError",
    "ConfigError",
    "ContextError",
    "ContextTooLongError",
    "DeliveryError",
    "ErrorMeaning",
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
    "NotInstalledError",
    "QuotaExceededError",
    "ResponseFailedError",
    "ResponseIncompleteError",
    "SlackRateLimitedError",
    "SlackRefusedError",
    "SlackTimeoutError",
    "SlackUnreachableError",
    "StreamProtocolError",
]


class ErrorMeaning(enum.StrEnum):
    """What a model failure means, however the endpoint or a relay worded it."""

    LOST_CHAIN = "lost_chain"
    """The endpoint does not know ``previous_response_id`` (any more)."""
    CONTEXT_LENGTH = "context_length"
    """The conversation is longer than the model's context window."""
    UNKNOWN_MODEL = "unknown_model"
    """The model (or Azure deployment) does not exist or has no route at the endpoint."""
    RATE_LIMIT = "rate_limit"
    """Too many requests or tokens right now; waiting helps."""
    QUOTA = "quota"
    """The account's quota, credit or budget is used up; waiting does not help."""
    AUTH = "auth"
    """The key was refused or may not do this."""
    CONTENT_FILTER = "content_filter"
    """The endpoint's content policy refused the request."""
    BAD_SETTING = "bad_setting"
    """A parameter from the channel's settings was refused (temperature, max tokens, ...)."""
    UNSUPPORTED_TOOL = "unsupported_tool"
    """A tool in the request was refused (a hosted tool the endpoint or model lacks)."""
    SERVER = "server"
    """The endpoint failed on its side."""
    UNKNOWN = "unknown"
    """Nothing in the answer says what went wrong."""


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
    default_meaning = ErrorMeaning.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        meaning: ErrorMeaning | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.request_id = request_id
        self.meaning = meaning or self.default_meaning


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
        meaning: ErrorMeaning | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, meaning=meaning)
        self.status_code = status_code
        self.param = param
        self.error_type = error_type
        self.retry_after = retry_after


class ModelBadRequestError(ModelHTTPError):
    default_code = "bad_request"


class ChainNotFoundError(ModelBadRequestError):
    """The endpoint no longer knows ``previous_response_id``: the chain must be rebuilt."""

    default_code = "previous_response_not_found"
    default_meaning = ErrorMeaning.LOST_CHAIN


class ContextTooLongError(ModelBadRequestError):
    default_code = "context_length_exceeded"
    default_meaning = ErrorMeaning.CONTEXT_LENGTH


class ModelAuthError(ModelHTTPError):
    default_code = "unauthorized"
    default_meaning = ErrorMeaning.AUTH


class ModelNotFoundError(ModelHTTPError):
    default_code = "model_not_found"
    default_meaning = ErrorMeaning.UNKNOWN_MODEL


class ModelRateLimitError(ModelHTTPError):
    default_code = "rate_limited"
    default_meaning = ErrorMeaning.RATE_LIMIT


class QuotaExceededError(ModelRateLimitError):
    default_code = "insufficient_quota"
    default_meaning = ErrorMeaning.QUOTA


class ModelServerError(ModelHTTPError):
    default_code = "server_error"
    default_meaning = ErrorMeaning.SERVER


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
        meaning: ErrorMeaning | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, meaning=meaning)
        self.response_id = response_id
        self.partial_text = partial_text


class ResponseFailedError(ModelStreamError):
    """An ``error`` event or ``response.failed`` ended the stream (or a 200 JSON body said
    ``failed``). ``meaning`` says what it means (e.g. ``CONTEXT_LENGTH`` inside the stream)."""

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
    """A Slack call failed: a reply could not be delivered, a lookup or a view not made.

    ``code`` is Slack's error string (``channel_not_found``, ``ratelimited``, …) or one of
    ours (``slack_unreachable``, ``timeout``, ``not_installed``); ``method`` the Web API
    method when known; ``status`` the HTTP status of Slack's answer when there was one;
    ``retry_after`` the seconds Slack asked to wait (a 429 only).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        method: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.method = method
        self.status = status
        self.retry_after = retry_after


class SlackRefusedError(DeliveryError):
    """Slack answered and refused: ``ok: false`` (or an HTTP error status) with its error
    string as ``code``."""


class SlackRateLimitedError(SlackRefusedError):
    """HTTP 429: Slack asks to wait ``retry_after`` seconds (its ``Retry-After``, at least 1)."""

    retry_after: float


class SlackUnreachableError(DeliveryError):
    """No answer from Slack: connection refused or reset, DNS, TLS, a body that could not be
    read (``code`` is ``slack_unreachable``)."""


class SlackTimeoutError(DeliveryError):
    """No answer in time: the request's own timeout, or the call's deadline for its slot in
    the workspace's rate budget passed (``code`` is ``timeout``)."""


class NotInstalledError(DeliveryError):
    """The workspace has no installation (any more): no reply can reach it."""

    def __init__(self, team_id: str) -> None:
        super().__init__(f"the app is not installed in workspace {team_id}", code="not_installed")
        self.team_id = team_id


class ContextError(BotError):
    """What the model should see could not be read. ``code`` is the source's error string
    (Slack's, e.g. ``not_in_channel`` or ``missing_scope``; ``not_installed``; or
    ``slack_unreachable``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
