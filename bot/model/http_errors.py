"""The one place where an HTTP error answer becomes an error of ``bot.errors``.

The body is parsed as JSON whatever its content-type claims (DeepSeek sends its JSON errors as
``application/octet-stream``); an HTML page or garbage gives a message built from the status, so
no markup ever reaches a user or a log line.
"""

from __future__ import annotations

import http
import json
from collections.abc import Iterable, Mapping
from typing import Any

from bot.errors import (
    ChainNotFoundError,
    ContextTooLongError,
    ErrorMeaning,
    ModelAuthError,
    ModelBadRequestError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelServerError,
    QuotaExceededError,
)
from bot.model.error_meaning import ErrorFacts, canonical_code, classify, is_vague_code
from bot.model.retry import retry_after_seconds

__all__ = ["error_fields", "error_from_response", "redact"]

# Error messages are for logs and the turn record; a relay that dumps a page into ``message``
# should not fill them.
_MAX_MESSAGE = 500


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _str_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    # LiteLLM's proxy writes a missing type or param as the string "None".
    return text if text and text not in ("None", "null") else None


def error_fields(data: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, code, param, type) of an error object in the usual shapes:
    ``{"error": {message, type, param, code}}``, ``{"error": "text"}``, a flat
    ``{message, code, ...}``, FastAPI's ``{"detail": ...}`` (LiteLLM's
    ``{"detail": {"error": "…"}}`` too) and a bare JSON string."""
    if isinstance(data, str):
        return _str_or_none(data), None, None, None
    if not isinstance(data, dict):
        return None, None, None, None
    error: Any = data.get("error", data)
    if isinstance(error, str):
        return _str_or_none(error), None, None, None
    if not isinstance(error, dict):
        return None, None, None, None
    message = error.get("message")
    detail = error.get("detail")
    if message is None and isinstance(detail, str):
        message = detail
    elif message is None and isinstance(detail, dict):
        return error_fields(detail)
    return (
        _str_or_none(message),
        _str_or_none(error.get("code")),
        _str_or_none(error.get("param")),
        _str_or_none(error.get("type")),
    )


def _parse_error_body(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        data = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return None, None, None, None
    return error_fields(data)


def _status_text(status_code: int) -> str:
    try:
        phrase = http.HTTPStatus(status_code).phrase
    except ValueError:
        return f"HTTP {status_code}"
    return f"HTTP {status_code} {phrase}"


def error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Iterable[str] = (),
) -> ModelHTTPError:
    """The typed error for an HTTP error answer.

    ``headers`` should be case-insensitive (``httpx.Headers``). ``secrets`` (the API key) are
    scrubbed from the message in case the endpoint echoes them. What the error means comes from
    ``bot.model.error_meaning`` (code, type, param, status and message, in the shapes relays
    use); the class follows from the meaning and the status.
    """
    message, code, param, error_type = _parse_error_body(body)
    parsed_message = message
    if message is None:
        message = f"the model endpoint answered {_status_text(status_code)}"
    message = redact(message, secrets)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    meaning = classify(
        ErrorFacts(
            status=status_code, code=code, type=error_type, param=param, message=parsed_message
        )
    )
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "code": canonical_code(code, meaning) if 400 <= status_code <= 599 else code,
        "param": param,
        "error_type": error_type,
        "request_id": headers.get("x-request-id"),
        "retry_after": retry_after_seconds(headers),
        "meaning": meaning,
    }
    if 300 <= status_code <= 399:
        # Never followed: the Authorization header must not travel to another host.
        kwargs["code"] = code or "redirect_not_followed"
        kwargs["meaning"] = ErrorMeaning.UNKNOWN
        return ModelHTTPError(
            f"the model endpoint answered with a redirect ({_status_text(status_code)}); "
            "redirects are not followed, check the base URL",
            **kwargs,
        )
    if status_code == 413:
        # Too large to accept: settings can't fix that, a shorter message or new thread can.
        kwargs["code"] = code if code and not is_vague_code(code) else "request_too_large"
        kwargs["meaning"] = ErrorMeaning.CONTEXT_LENGTH
        return ContextTooLongError(message, **kwargs)
    error_class = _CLASSES.get(meaning)
    if error_class is not None and 400 <= status_code <= 599:
        return error_class(message, **kwargs)
    if 500 <= status_code <= 599:
        return ModelServerError(message, **kwargs)
    if 400 <= status_code <= 499:
        return ModelBadRequestError(message, **kwargs)
    return ModelHTTPError(message, **kwargs)


# The class for each meaning; the others are a bad request (4xx) or a server error (5xx).
_CLASSES: dict[ErrorMeaning, type[ModelHTTPError]] = {
    ErrorMeaning.LOST_CHAIN: ChainNotFoundError,
    ErrorMeaning.CONTEXT_LENGTH: ContextTooLongError,
    ErrorMeaning.QUOTA: QuotaExceededError,
    ErrorMeaning.RATE_LIMIT: ModelRateLimitError,
    ErrorMeaning.AUTH: ModelAuthError,
    ErrorMeaning.UNKNOWN_MODEL: ModelNotFoundError,
}
