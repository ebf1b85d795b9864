"""The HTTP edge: one aiohttp server for Slack's Request URL and the operator endpoints.

``POST /slack/events`` (Events API, slash commands and interactivity, verified by Bolt),
``GET /healthz`` (the process runs), ``GET /readyz`` (database answers, migrations applied),
``GET /metrics`` (Prometheus text).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.metrics import CONTENT_TYPE, Metrics

__all__ = ["MAX_BODY_BYTES", "build_web_app"]

logger = logging.getLogger(__name__)

# Slack's largest payloads (big modals, long messages) stay well under this; anything bigger
# is refused by aiohttp with 413 before it is parsed.
MAX_BODY_BYTES = 1024 * 1024

ReadinessCheck = Callable[[], Awaitable[str | None]]


def build_web_app(
    *,
    slack_app: AsyncApp | None,
    readiness: ReadinessCheck,
    metrics: Metrics,
    accepting: Callable[[], bool] = lambda: True,
) -> web.Application:
    """``readiness`` returns ``None`` when ready, else a short reason."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reason = await readiness()
        if reason is None and not accepting():
            reason = "shutting down"
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def metrics_endpoint(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)

    if slack_app is not None:
        bolt = slack_app

        async def slack_events(request: web.Request) -> web.Response:
            if not accepting():
                # Slack retries a 503 later, by which time another replica (or this one,
                # restarted) takes the event; nothing is lost.
                return web.json_response({"error": "shutting down"}, status=503)
            bolt_request = await to_bolt_request(request)
            bolt_response = await bolt.async_dispatch(bolt_request)
            return await to_aiohttp_response(bolt_response)

        app.router.add_post("/slack/events", slack_events)
    return app
