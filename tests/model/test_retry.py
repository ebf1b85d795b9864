"""Retry decisions and delays, as pure functions."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from bot.model.retry import RetryPolicy, retry_after_seconds, should_retry


@pytest.mark.parametrize("status", [None, 408, 409, 429, 500, 502, 503, 504, 599])
def test_transient_failures_are_retried(status: int | None) -> None:
    assert should_retry(status, None)


@pytest.mark.parametrize("status", [300, 307, 400, 401, 403, 404, 413, 422, 499])
def test_request_and_account_errors_are_not_retried(status: int) -> None:
    assert not should_retry(status, None)


@pytest.mark.parametrize("status", [None, 429, 500])
def test_insufficient_quota_is_never_retried(status: int | None) -> None:
    assert not should_retry(status, "insufficient_quota")


def test_rate_limit_code_on_429_is_retried() -> None:
    assert should_retry(429, "rate_limit_exceeded")


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = httpx.Headers({"Retry-After-Ms": "250", "Retry-After": "7"})
    assert retry_after_seconds(headers) == 0.25


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after-ms": "junk", "retry-after": "2"}, 2.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_values(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers)) == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=lambda: now) == pytest.approx(30)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert retry_after_seconds({"retry-after": past}, now=lambda: now) == 0.0


def test_backoff_is_exponential_and_capped_without_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, jitter=False)
    assert [policy.delay(n, None) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(10_000, None) == 8.0  # no overflow


def test_full_jitter_picks_within_the_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, random=lambda: 0.25)
    assert policy.delay(3, None) == 1.0  # 0.25 * 4


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert policy.delay(1, 12.5) == 12.5
    assert policy.delay(1, 3600.0) == 60.0
    assert policy.delay(1, -1.0) == 0.0


def test_no_delay_policy_for_tests() -> None:
    policy = RetryPolicy.no_delay(max_retries=3)
    assert policy.max_retries == 3
    assert policy.delay(1, None) == 0.0
    assert policy.delay(2, 5.0) == 0.0


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.base_delay, policy.max_delay) == (2, 0.5, 8.0)
    assert 0.0 <= policy.delay(1, None) <= 0.5
