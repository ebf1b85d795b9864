"""The Slack Web API clients: built here, and nowhere else.

``make_slack_client`` builds the client every part of the bot posts through (the bot token,
``SLACK_API_URL``, connection resets retried, calls counted, the workspace's rate budget);
``plain_client`` the bare one ``doctor`` checks an app-level token with.

``ScheduledWebClient`` is slack_sdk's ``AsyncWebClient`` with two guarantees added at the one
place every request passes (``api_call``):

- **no broadcasts**: every text field of every request (``text``, ``markdown_text``, block and
  stream chunk texts) goes through ``neutralise_broadcasts``, whoever built it (answers,
  notices, file names, echoed user text), so nothing the bot posts notifies a whole channel;
- **scheduled within Slack's rate limits**: each call waits for its slot in its workspace's
  ``RateBudget`` at the priority of the caller's context (``slack_priority``), and a 429 is
  waited out (``Retry-After``) until the priority's deadline instead of being retried blind.

``scheduled_call`` is for callers that want to build the payload only when the slot is theirs
(a growing answer sends its latest text, not the text it had when it asked). It and
``send_now`` fail only as ``bot.errors.DeliveryError`` (``bot.slack.failures``); the client's
own methods raise slack_sdk's errors, which Bolt and Socket Mode expect, so our code calls
them inside ``slack_failures``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.errors import ConfigError
from bot.metrics import Metrics, SlackApiObserver
from bot.slack.budget import Priority, RateBudget, RateBudgets
from bot.slack.failures import slack_failures
from bot.slack.render import neutralise_payload

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = [
    "ScheduledWebClient",
    "UnscheduledRateLimitRetry",
    "make_slack_client",
    "plain_client",
    "scheduled_call",
    "send_now",
    "slack_priority",
]

REQUEST_TIMEOUT = 30
"""Seconds one Web API request may take (slack_sdk's own default)."""


def make_slack_client(
    settings: Settings,
    *,
    token: str | None = None,
    anonymous: bool = False,
    retry_rate_limits: bool = True,
    metrics: Metrics | None = None,
    budgets: RateBudgets | None = None,
) -> AsyncWebClient:
    """A Slack Web API client: bot token, ``SLACK_API_URL``, connection resets retried, and
    every text it posts cleared of broadcast mentions (``ScheduledWebClient``). With
    ``budgets`` (the service's), every call is scheduled in its workspace's rate budget and
    429s go back to that budget; without, 429s are retried after ``Retry-After`` unless
    ``retry_rate_limits`` is off. With ``metrics``, every request and 429 is counted by
    method (the observer goes first).

    The token is ``token`` (a workspace's installation), else ``SLACK_BOT_TOKEN``;
    ``anonymous`` makes a client with no token (Bolt's in a multi-workspace install)."""
    if token is None and not anonymous:
        if settings.slack_bot_token is None:
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set (multi-workspace install): name the workspace "
                "with --team"
            )
        token = settings.slack_bot_token.get_secret_value()
    handlers: list[Any] = [SlackApiObserver(metrics)] if metrics is not None else []
    handlers.append(AsyncConnectionErrorRetryHandler(max_retry_count=2))
    if retry_rate_limits or budgets is not None:
        # Only requests outside any budget use it (Bolt's per-request clients copy it).
        handlers.append(UnscheduledRateLimitRetry(max_retry_count=3))
    return ScheduledWebClient(
        budget=budgets.for_token(token) if budgets is not None and token else None,
        token=token,
        base_url=settings.slack_api_url,
        timeout=REQUEST_TIMEOUT,
        retry_handlers=handlers,
    )


def plain_client(*, base_url: str) -> AsyncWebClient:
    """A client with no token, no retries and no schedule: for a call that carries its own
    token once (``doctor``'s check of the app-level token)."""
    return AsyncWebClient(base_url=base_url, timeout=REQUEST_TIMEOUT)


_PRIORITY: ContextVar[Priority] = ContextVar("slack_priority", default=Priority.NORMAL)
_WAIT: ContextVar[float | None] = ContextVar("slack_wait", default=None)
_SCHEDULED: ContextVar[bool] = ContextVar("slack_call_scheduled", default=False)


@contextmanager
def slack_priority(priority: Priority, *, wait: float | None = None) -> Iterator[None]:
    """Slack calls made inside this block wait for their slot at ``priority``, for at most
    ``wait`` seconds if given (then ``TimeoutError``), else the priority's deadline."""
    token = _PRIORITY.set(priority)
    wait_token = _WAIT.set(wait)
    try:
        yield
    finally:
        _WAIT.reset(wait_token)
        _PRIORITY.reset(token)


class ScheduledWebClient(AsyncWebClient):
    """See the module docstring. ``budget=None`` (no token yet) only neutralises."""

    def __init__(self, *, budget: RateBudget | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budget = budget

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict[str, Any] | None = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
    ) -> AsyncSlackResponse:
        json = neutralise_payload(json) if json is not None else None
        params = neutralise_payload(params) if params is not None else None
        if isinstance(data, dict):
            data = neutralise_payload(data)

        async def send() -> AsyncSlackResponse:
            token = _SCHEDULED.set(True)
            try:
                return await super(ScheduledWebClient, self).api_call(
                    api_method,
                    http_verb=http_verb,
                    files=files,
                    data=data,
                    params=params,
                    json=json,
                    headers=headers,
                    auth=auth,
                )
            finally:
                _SCHEDULED.reset(token)

        if self.budget is None or _SCHEDULED.get():
            return await send()  # a scheduled_call already holds the slot
        channel = _channel_of(json, data, params)
        return await self.budget.run(api_method, send, channel=channel, priority=_PRIORITY.get())


def _channel_of(*sources: Any) -> str | None:
    for source in sources:
        if isinstance(source, dict):
            value = source.get("channel") or source.get("channel_id")
            if value:
                return str(value)
    return None


async def scheduled_call(
    client: AsyncWebClient,
    method: str,
    build: Callable[[], dict[str, Any]],
    *,
    priority: Priority,
    deadline: float | None = None,
    channel: str | None = None,
) -> AsyncSlackResponse:
    """Call ``method`` with the arguments ``build()`` returns once the slot is ours (again
    after each 429), waiting at ``priority`` until ``deadline`` (loop time). ``channel``
    picks the budget of per-channel methods (``chat.postMessage``). Fails only as
    ``DeliveryError``: a 429 past the deadline as ``SlackRateLimitedError``, no slot by
    then as ``SlackTimeoutError``."""
    budget = client.budget if isinstance(client, ScheduledWebClient) else None

    async def send() -> AsyncSlackResponse:
        return await send_now(client, method, build())

    if budget is None:
        return await send()
    with slack_failures(method):  # the deadline passing while it waits: SlackTimeoutError
        return await budget.run(method, send, channel=channel, priority=priority, deadline=deadline)


async def send_now(
    client: AsyncWebClient, method: str, arguments: dict[str, Any]
) -> AsyncSlackResponse:
    """Call ``method`` at once: the caller already took its slot (``RateBudget.try_acquire``)."""
    token = _SCHEDULED.set(True)
    try:
        with slack_failures(method):
            return await client.api_call(method, json=arguments)
    finally:
        _SCHEDULED.reset(token)


class UnscheduledRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 retry, for the requests that no budget schedules (Bolt makes its own
    client per request and copies our retry handlers into it): a scheduled call's 429 goes
    back to its budget instead, which pauses the method for everyone."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if _SCHEDULED.get():
            return False
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )
