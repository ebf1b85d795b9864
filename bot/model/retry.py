"""Retry policy as pure functions: what to retry, and how long to wait.

Kept apart from the client so tests can pass a policy with zero delays and check the decisions
without a network (the shape of openai-python's ``_should_retry`` / ``_calculate_retry_timeout``).
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.errors import ErrorMeaning

__all__ = ["RetryPolicy", "retry_after_seconds", "should_retry"]

# Retrying these cannot help: the request or the account is wrong, not the moment.
_NEVER_RETRY_CODES = frozenset({"insufficient_quota"})
_NEVER_RETRY_MEANINGS = frozenset(
    {
        ErrorMeaning.QUOTA,
        ErrorMeaning.UNKNOWN_MODEL,
        ErrorMeaning.LOST_CHAIN,
        ErrorMeaning.CONTEXT_LENGTH,
        ErrorMeaning.AUTH,
        ErrorMeaning.CONTENT_FILTER,
    }
)


def should_retry(
    status_code: int | None, error_code: str | None, meaning: ErrorMeaning | None = None
) -> bool:
    """Whether a failed attempt is worth repeating.

    ``status_code`` is ``None`` for a connection error or connect timeout (no answer at all).
    Retried: those, 408 (request timeout), 409 (lock conflict), 429 and any 5xx. Never retried:
    other 4xx (400, 401, 403, 404, 413, 422, ...), ``insufficient_quota`` whatever its status,
    because a billing problem does not fix itself in seconds, and any answer whose ``meaning``
    says the request itself is wrong (a relay's 503 "no available channel for model", a 500
    that wraps a lost chain or a context overflow).
    """
    if error_code in _NEVER_RETRY_CODES or meaning in _NEVER_RETRY_MEANINGS:
        return False
    if status_code is None:
        return True
    return status_code in (408, 409, 429) or 500 <= status_code <= 599


def retry_after_seconds(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """The server's requested wait: ``retry-after-ms`` first, then ``retry-after`` as seconds or
    as an HTTP date. ``None`` when absent or unreadable; never negative.

    ``headers`` should be case-insensitive (``httpx.Headers``); a plain dict must use lowercase.
    """
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always UTC
        when = when.replace(tzinfo=datetime.UTC)
    return max(when.timestamp() - now(), 0.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry.

    ``max_retries`` counts retries after the first attempt. Delays are capped exponential backoff
    with full jitter (a uniform pick in ``[0, backoff]``, so many clients hit by the same outage
    spread out); a server's ``retry-after`` replaces the backoff, capped at ``max_retry_after``.
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: bool = True
    # Injected so tests can make the jitter deterministic.
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    @classmethod
    def no_delay(cls, max_retries: int = 2) -> RetryPolicy:
        """Retries without waiting, for tests."""
        return cls(max_retries=max_retries, base_delay=0.0, max_delay=0.0, max_retry_after=0.0)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_retry_after)
        # The exponent is bounded so a silly attempt number cannot overflow.
        backoff = min(self.base_delay * 2.0 ** min(max(attempt - 1, 0), 30), self.max_delay)
        return backoff * self.random() if self.jitter else backoff
