"""The one place where Slack failures become ours.

slack_sdk raises ``SlackApiError`` when Slack answers ``ok: false`` (or an HTTP error), other
``SlackClientError``s when a request cannot be made, and lets aiohttp's errors, the OS's and
timeouts through. Every Slack call our code makes fails only as ``bot.errors.DeliveryError``
(or a subclass), carrying what callers branch on:

    SlackApiError, HTTP 429              → SlackRateLimitedError  code, status, retry_after
    SlackApiError, any other             → SlackRefusedError      code (Slack's), status
    TimeoutError (the request's, or the
      call's wait for its rate slot)     → SlackTimeoutError      code "timeout"
    aiohttp.ClientError, OSError, other
      SlackClientError                   → SlackUnreachableError  code "slack_unreachable"
    a workspace without the app          → NotInstalledError      code "not_installed" (as is)

each with the Web API ``method`` and raised ``from`` the original. ``slack_failures`` is the
block our calls are made in (``bot.slack.client``'s ``scheduled_call`` and ``send_now`` use
it themselves); ``reading_context`` turns the same failures into ``ContextError`` where the
model's input is read. A test holds every other module to catching only our types.

``bot.slack.client.ScheduledWebClient`` itself keeps raising slack_sdk's errors: Bolt (its
OAuth flow, its authorization) and slack_sdk's Socket Mode client call it too and catch
``SlackApiError`` themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.errors import (
    ContextError,
    DeliveryError,
    NotInstalledError,
    SlackRateLimitedError,
    SlackRefusedError,
    SlackTimeoutError,
    SlackUnreachableError,
)

__all__ = ["reading_context", "retry_after", "slack_failure", "slack_failures"]

_FOREIGN = (SlackClientError, aiohttp.ClientError, OSError, TimeoutError)
"""What a Slack call can raise besides our own errors (``SlackApiError`` is a client error)."""


def slack_failure(exc: BaseException, *, method: str | None = None) -> DeliveryError | None:
    """``exc`` as our error; ``None`` when it is no Slack failure (a bug of ours stays what
    it is)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, SlackApiError):
        return _refused(exc, method)
    name = method or "a Slack call"
    # Before aiohttp's: its ServerTimeoutError is a TimeoutError too.
    if isinstance(exc, TimeoutError):
        return SlackTimeoutError(
            f"{name} failed: no answer in time ({type(exc).__name__})",
            code="timeout",
            method=method,
        )
    if isinstance(exc, _FOREIGN):
        return SlackUnreachableError(
            f"{name} failed: Slack could not be reached ({type(exc).__name__})",
            code="slack_unreachable",
            method=method,
        )
    return None


@contextmanager
def slack_failures(method: str | None = None) -> Iterator[None]:
    """Slack calls made inside this block fail only as ``DeliveryError`` (see the module
    docstring). ``method`` names the call where the failure does not (``None``: read from
    Slack's answer where there is one)."""
    try:
        yield
    except DeliveryError:
        raise
    except _FOREIGN as exc:
        mapped = slack_failure(exc, method=method)
        assert mapped is not None  # every foreign failure maps
        raise mapped from exc


@contextmanager
def reading_context() -> Iterator[None]:
    """What the model sees is read inside this block: a Slack failure leaves as
    ``ContextError`` with Slack's code (``not_in_channel``, ``missing_scope``, …),
    ``not_installed`` or ``slack_unreachable``; anything else is a bug and stays what it is."""
    try:
        with slack_failures():
            yield
    except NotInstalledError as exc:
        raise ContextError(str(exc), code="not_installed") from exc
    except SlackRefusedError as exc:
        raise ContextError(f"Slack refused to give the thread: {exc.code}", code=exc.code) from exc
    except DeliveryError as exc:
        cause = type(exc.__cause__ or exc).__name__
        raise ContextError(
            f"Slack could not be reached: {cause}", code="slack_unreachable"
        ) from exc


def retry_after(exc: BaseException) -> float | None:
    """Seconds Slack asked to wait, for a 429 (ours or slack_sdk's, whose callers include
    Bolt's); ``None`` for any other failure."""
    if isinstance(exc, DeliveryError):
        return exc.retry_after
    if isinstance(exc, SlackApiError):
        return _retry_after(exc.response)
    return None


def _retry_after(response: Any) -> float | None:
    if getattr(response, "status_code", None) != 429:
        return None
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(1.0, float(value)) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


def _refused(exc: SlackApiError, method: str | None) -> SlackRefusedError:
    response = exc.response
    try:
        code = str(response.get("error") or "slack_api_error")
    except (AttributeError, ValueError):  # a binary body (ValueError) or no answer object
        code = "slack_api_error"
    status = getattr(response, "status_code", None)
    method = method or _method_of(response)
    message = f"{method or 'a Slack call'} failed: {code}"
    wait = _retry_after(response)
    if wait is not None:
        return SlackRateLimitedError(
            message, code=code, retry_after=wait, method=method, status=status
        )
    return SlackRefusedError(message, code=code, method=method, status=status)


def _method_of(response: Any) -> str | None:
    """The Web API method of an answer (``…/api/users.info`` → ``users.info``)."""
    url = getattr(response, "api_url", None)
    if not isinstance(url, str) or "/" not in url:
        return None
    return url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or None
