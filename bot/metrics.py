"""Prometheus metrics, on a registry owned by the service (never the global default, so two
services in one test process don't share counters).

Besides the ``Metrics`` registry this module holds the small adapters that feed it without the
measured code knowing about Prometheus:

- ``InstrumentedModelClient`` wraps the model client (same ``stream(request)``) and measures
  the time to the first delta, the whole call, and the tokens of the ``Completed`` result;
- ``SlackApiObserver`` is a slack_sdk retry handler that never retries: placed first in a
  client's ``retry_handlers`` it sees every HTTP attempt (429s included, before the real
  rate-limit handler retries them) and counts it by Slack method;
- ``TimedThreadLocks`` wraps the cross-replica thread lock to time the wait for it (the
  in-process ``KeyedLocks`` reports its own waits through ``on_wait``).

The metric names are listed in README ("Metrics and dashboards") and used by
``docs/grafana-dashboard.json``: rename one and both must change.

Error labels come from outside (an endpoint's error code, Slack's ``error``): they are reduced
to a fixed set of known codes, anything else counting as ``other`` (``bot.redaction``), so an
endpoint can neither mint unbounded time series nor put a token into ``/metrics``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing, asynccontextmanager
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.errors import ModelError
from bot.model.types import Completed, ModelEvent, ReasoningDelta, ResponseRequest, TextDelta
from bot.redaction import bounded_code
from storage.records import ToolCallRecord

__all__ = [
    "CONTENT_TYPE",
    "KNOWN_MODEL_ERROR_CODES",
    "KNOWN_SLACK_ERRORS",
    "InstrumentedModelClient",
    "Metrics",
    "SlackApiObserver",
    "TimedThreadLocks",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

KNOWN_MODEL_ERROR_CODES: frozenset[str] = frozenset(
    {
        # the service's own (bot.errors, bot.model)
        "model_error", "connection_error", "timeout", "timeout_connect", "timeout_first_byte",
        "timeout_idle", "timeout_total", "http_error", "bad_request", "unauthorized",
        "model_not_found", "rate_limited", "server_error", "stream_error", "response_failed",
        "response_incomplete", "incomplete_max_output_tokens", "incomplete_content_filter",
        "stream_protocol_error", "stream_interrupted", "no_result", "request_too_large",
        "redirect_not_followed",
        # OpenAI's documented codes that relays pass on
        "previous_response_not_found", "context_length_exceeded", "insufficient_quota",
        "rate_limit_exceeded", "invalid_api_key", "invalid_request_error", "invalid_prompt",
        "invalid_value", "unsupported_parameter", "unsupported_value", "invalid_image",
        "invalid_image_url", "image_too_large", "content_filter", "vector_store_timeout",
    }
)  # fmt: skip
"""Model error codes kept as metric labels; any other counts as ``other``."""
KNOWN_SLACK_ERRORS: frozenset[str] = frozenset(
    {
        "ratelimited", "not_in_channel", "channel_not_found", "is_archived", "msg_too_long",
        "no_text", "invalid_blocks", "invalid_blocks_format", "invalid_arguments",
        "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
        "missing_scope", "not_allowed_token_type", "user_not_found", "users_not_found",
        "thread_not_found", "message_not_found", "cant_update_message", "edit_window_closed",
        "message_not_in_streaming_state", "streaming_state_conflict", "already_reacted",
        "no_reaction", "expired_trigger_id", "invalid_trigger_id", "view_too_large",
        "hash_conflict", "not_found", "team_access_not_granted", "restricted_action",
        "fatal_error", "internal_error", "request_timeout", "service_unavailable",
        "connection_error", "unknown",
    }
)  # fmt: skip
"""Slack error codes kept as metric labels (besides ``http_<status>``); others: ``other``."""

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 600)
_LOCK_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # --- Slack events and turns
        self.events_received = Counter(
            "slackbot_events_received",
            "Slack events received, by event type.",
            ["type"],
            registry=r,
        )
        self.feedback = Counter(
            "slackbot_feedback",
            "Votes on answers (👍 good, 👎 bad), by model; a changed vote counts again.",
            ["model", "value"],
            registry=r,
        )
        self.events_handled = Counter(
            "slackbot_events_handled",
            "Slack message events finished with, by event type and outcome (ignored, "
            "duplicate, completed, failed, ...). A mention arrives as app_mention and as "
            "message, so one of the two is always a duplicate.",
            ["type", "outcome"],
            registry=r,
        )
        self.turns = Counter(
            "slackbot_turns",
            "Messages handled, by outcome (ignored, duplicate, completed, failed, ...).",
            ["outcome"],
            registry=r,
        )
        self.turns_in_flight = Gauge(
            "slackbot_turns_in_flight", "Turns being answered now.", registry=r
        )
        self.turn_seconds = Histogram(
            "slackbot_turn_seconds",
            "Time from event to finished answer.",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
            registry=r,
        )
        self.lock_wait_seconds = Histogram(
            "slackbot_thread_lock_wait_seconds",
            "Time a turn waited for its thread's lock: 'process' (turns of one thread in this "
            "replica) or 'database' (another replica's turn, PostgreSQL only).",
            ["lock"],
            buckets=_LOCK_BUCKETS,
            registry=r,
        )
        # --- the model endpoint
        self.model_first_delta_seconds = Histogram(
            "slackbot_model_time_to_first_delta_seconds",
            "Time from sending a model request to its first text or reasoning delta.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "slackbot_model_duration_seconds",
            "Time of one model call from request to its end, by outcome (completed, failed, "
            "stopped: the consumer closed the stream early).",
            ["model", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_errors = Counter(
            "slackbot_model_errors",
            "Failed model calls, by the error's code (rate_limited, timeout_idle, ...).",
            ["model", "code"],
            registry=r,
        )
        self.model_tokens = Counter(
            "slackbot_model_tokens",
            "Tokens reported by the model endpoint, by model and kind (input, cached, "
            "output, reasoning; cached is part of input, reasoning part of output).",
            ["model", "kind"],
            registry=r,
        )
        # --- conversation state
        self.conversation_recoveries = Counter(
            "slackbot_conversation_recoveries",
            "Chained turns sent again from the transcript, by reason: lost_chain (the endpoint "
            "lost previous_response_id), refused (a 4xx naming nothing else), continuity (the "
            "endpoint answered without the chain).",
            ["reason"],
            registry=r,
        )
        self.transcript_switches = Counter(
            "slackbot_conversation_transcript_switches",
            "Times an endpoint+model was found to ignore previous_response_id and switched to "
            "transcripts, by what found it (probe, continuity).",
            ["source"],
            registry=r,
        )
        # --- the Slack Web API
        self.slack_calls = Counter(
            "slackbot_slack_api_calls",
            "Slack Web API HTTP requests, by method (every attempt, retries included).",
            ["method"],
            registry=r,
        )
        self.slack_rate_limited = Counter(
            "slackbot_slack_api_rate_limited",
            "Slack Web API answers with HTTP 429, by method.",
            ["method"],
            registry=r,
        )
        self.slack_errors = Counter(
            "slackbot_slack_api_errors",
            "Slack Web API failures other than 429, by method and error: Slack's error code "
            "for ok=false answers, http_<status> for other statuses, connection_error.",
            ["method", "error"],
            registry=r,
        )

        self.slack_queue_wait_seconds = Histogram(
            "slackbot_slack_queue_wait_seconds",
            "Time a Slack Web API call waited for its slot in the workspace's rate budget, by "
            "method and priority (first, final, normal, update); 429s waited out included.",
            ["method", "priority"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )

        self.tool_calls = Counter(
            "slackbot_tool_calls_total",
            "Tool calls made for turns, by MCP server, tool and how they ended (ok, tool_error, "
            "timeout, unavailable, protocol_error, rejected, denied, cancelled).",
            ["server", "tool", "status"],
            registry=r,
        )
        self.tool_call_seconds = Histogram(
            "slackbot_tool_call_seconds",
            "Time one tool call took, by MCP server.",
            ["server"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )

    def tool_called(self, record: ToolCallRecord) -> None:
        """One tool call ended (an ``on_tool_call`` for ``ConversationService``)."""
        # A name the model made up (no server) is not a label: it would grow without bound.
        server = record.server or "unknown"
        tool = record.tool if record.server else "unknown"
        self.tool_calls.labels(server=server, tool=tool, status=record.status).inc()
        self.tool_call_seconds.labels(server=server).observe(record.duration_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def event_handled(self, event_type: str, outcome: str) -> None:
        """One Slack message event finished with (``slackbot_turns`` and the by-type view)."""
        self.events_handled.labels(type=event_type, outcome=outcome).inc()
        self.turns.labels(outcome=outcome).inc()

    def conversation_recovered(self, reason: str) -> None:
        self.conversation_recoveries.labels(reason=reason).inc()

    def transcript_switched(self, source: str) -> None:
        self.transcript_switches.labels(source=source).inc()

    def slack_queue_waited(self, method: str, priority: object, seconds: float) -> None:
        """A ``WaitObserver`` for the Slack rate budgets (``bot.slack.budget``)."""
        name = getattr(priority, "name", str(priority)).lower()
        self.slack_queue_wait_seconds.labels(method=method, priority=name).observe(seconds)

    def lock_waited(self, lock: str) -> Callable[[float], None]:
        """An ``on_wait`` callback for ``KeyedLocks`` / ``TimedThreadLocks``."""
        histogram = self.lock_wait_seconds.labels(lock=lock)
        return histogram.observe


# ------------------------------------------------------------------------------ the model


class StreamingModel(Protocol):
    def stream(self, request: ResponseRequest) -> AsyncGenerator[ModelEvent, None]: ...


class InstrumentedModelClient:
    """The model client, measured: same ``stream(request)`` as ``ResponsesClient``."""

    def __init__(self, inner: StreamingModel, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def stream(self, request: ResponseRequest) -> AsyncGenerator[ModelEvent, None]:
        m = self._metrics
        model = request.model
        started = time.monotonic()
        first = True
        outcome = "stopped"  # the consumer closed the stream before its end
        try:
            async with aclosing(self._inner.stream(request)) as events:
                async for event in events:
                    if first and isinstance(event, TextDelta | ReasoningDelta):
                        first = False
                        m.model_first_delta_seconds.labels(model=model).observe(
                            time.monotonic() - started
                        )
                    elif isinstance(event, Completed):
                        _count_tokens(m, model, event)
                    yield event
            outcome = "completed"
        except ModelError as exc:
            outcome = "failed"
            m.model_errors.labels(
                model=model, code=bounded_code(exc.code, KNOWN_MODEL_ERROR_CODES)
            ).inc()
            raise
        finally:
            m.model_seconds.labels(model=model, outcome=outcome).observe(time.monotonic() - started)


def _count_tokens(m: Metrics, model: str, event: Completed) -> None:
    usage = event.result.usage
    for kind, value in (
        ("input", usage.input_tokens),
        ("cached", usage.cached_tokens),
        ("output", usage.output_tokens),
        ("reasoning", usage.reasoning_tokens),
    ):
        m.model_tokens.labels(model=model, kind=kind).inc(max(0, value))


# ------------------------------------------------------------------------------ Slack


class SlackApiObserver(AsyncRetryHandler):
    """Counts every Slack Web API attempt; never asks for a retry.

    slack_sdk asks each retry handler in order, after every attempt (answer or exception),
    whether to retry, and stops at the first that says yes. First in the list, this one sees
    every attempt and always says no, so the handlers after it keep their behaviour. Bolt
    copies the handler list into the per-request clients it makes, so their calls count too.
    """

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self._metrics = metrics

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        with contextlib.suppress(Exception):  # counting must never break a Slack call
            self._observe(request, response, error)
        return False

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return False

    def _observe(
        self, request: HttpRequest, response: HttpResponse | None, error: Exception | None
    ) -> None:
        m = self._metrics
        method = slack_method(request.url)
        m.slack_calls.labels(method=method).inc()
        if response is None:
            if error is not None:
                m.slack_errors.labels(method=method, error="connection_error").inc()
            return
        status = response.status_code
        if status == 429:
            m.slack_rate_limited.labels(method=method).inc()
        elif status >= 300:
            # A status is a bounded number; one outside HTTP's range counts as "other".
            label = f"http_{status}" if 300 <= status <= 599 else "other"
            m.slack_errors.labels(method=method, error=label).inc()
        elif isinstance(response.body, dict) and response.body.get("ok") is False:
            code = response.body.get("error") or "unknown"
            m.slack_errors.labels(method=method, error=bounded_code(code, KNOWN_SLACK_ERRORS)).inc()


def slack_method(url: str) -> str:
    """``https://slack.com/api/chat.postMessage?x=1`` → ``chat.postMessage``."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    # Keep the label set bounded even if a URL is odd: method names are dotted words.
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._" for c in name):
        return "other"
    return name


# ------------------------------------------------------------------------------ thread locks


class ThreadLockProvider(Protocol):
    def hold(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> AbstractAsyncContextManager[None]: ...


class TimedThreadLocks:
    """The cross-replica thread lock, with the wait for it reported to ``on_wait``."""

    def __init__(self, inner: ThreadLockProvider, on_wait: Callable[[float], None]) -> None:
        self._inner = inner
        self._on_wait = on_wait

    @asynccontextmanager
    async def hold(self, *, team_id: str, channel_id: str, thread_ts: str) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            started = time.monotonic()
            try:
                await stack.enter_async_context(
                    self._inner.hold(team_id=team_id, channel_id=channel_id, thread_ts=thread_ts)
                )
            finally:  # a wait that ended in a timeout was a wait too
                self._on_wait(time.monotonic() - started)
            yield
