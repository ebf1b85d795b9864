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
    ModelAuthError,
    ModelBadRequestError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelServerError,
    QuotaExceededError,
)
from bot.model.retry import retry_after_seconds

__all__ = ["error_from_response", "redact"]

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
    return text or None


def _parse_error_body(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, code, param, type) from the usual shapes:
    ``{"error": {message, type, param, code}}``, ``{"error": "text"}``, a flat
    ``{message, code, ...}`` and FastAPI's ``{"detail": ...}``."""
    try:
        data = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return None, None, None, None
    if not isinstance(data, dict):
        return None, None, None, None
    error: Any = data.get("error", data)
    if isinstance(error, str):
        return error, None, None, None
    if not isinstance(error, dict):
        return None, None, None, None
    message = error.get("message")
    if message is None and isinstance(error.get("detail"), str):
        message = error["detail"]
    return (
        _str_or_none(message),
        _str_or_none(error.get("code")),
        _str_or_none(error.get("param")),
        _str_or_none(error.get("type")),
    )


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
    scrubbed from the message in case the endpoint echoes them.
    """
    message, code, param, error_type = _parse_error_body(body)
    if message is None:
        message = f"the model endpoint answered {_status_text(status_code)}"
    message = redact(message, secrets)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "code": code,
        "param": param,
        "error_type": error_type,
        "request_id": headers.get("x-request-id"),
        "retry_after": retry_after_seconds(headers),
    }
    is_4xx = 400 <= status_code <= 499
    lost_chain = code == "previous_response_not_found" or (
        param == "previous_response_id" and "not found" in message.lower()
    )
    if is_4xx and lost_chain:
        return ChainNotFoundError(message, **kwargs)
    if is_4xx and code == "context_length_exceeded":
        return ContextTooLongError(message, **kwargs)
    if status_code == 413:
        # Too large to accept: settings can't fix that, a shorter message or new thread can.
        kwargs["code"] = code or "request_too_large"
        return ContextTooLongError(message, **kwargs)
    if code == "insufficient_quota" and status_code in (402, 403, 429):
        return QuotaExceededError(message, **kwargs)
    if status_code in (401, 403):
        return ModelAuthError(message, **kwargs)
    if status_code == 404 or code == "model_not_found":
        # OpenAI answers an unknown model with 400 + model_not_found, others with 404.
        return ModelNotFoundError(message, **kwargs)
    if status_code == 429:
        return ModelRateLimitError(message, **kwargs)
    if 500 <= status_code <= 599:
        return ModelServerError(message, **kwargs)
    if is_4xx:
        return ModelBadRequestError(message, **kwargs)
    if 300 <= status_code <= 399:
        # Never followed: the Authorization header must not travel to another host.
        kwargs["code"] = code or "redirect_not_followed"
        return ModelHTTPError(
            f"the model endpoint answered with a redirect ({_status_text(status_code)}); "
            "redirects are not followed, check the base URL",
            **kwargs,
        )
    return ModelHTTPError(message, **kwargs)
