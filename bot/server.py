"""The HTTP edge: one aiohttp server for Slack's Request URL and the operator endpoints.

``POST /slack/events`` (Events API, slash commands and interactivity, verified by Bolt),
``GET /healthz`` (the process runs), ``GET /readyz`` (database answers, migrations applied),
``GET /metrics`` (Prometheus text). With a multi-workspace install (Bolt's OAuth flow set),
also ``GET /slack/install`` and ``GET /slack/oauth_redirect``: a person's browser opens them,
so they carry no Slack signature; the flow's one-time ``state`` guards them instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.metrics import CONTENT_TYPE, Metrics
from bot.slack.listeners.ack_window import RECEIVED_AT

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
    signing_secret: str | None = None,
    oauth_flow: AsyncOAuthFlow | None = None,
) -> web.Application:
    """``readiness`` returns ``None`` when ready, else a short reason. ``oauth_flow`` (a
    multi-workspace install, either mode) serves the install pages."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

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
            received_at = time.monotonic()  # Slack's 3-second window counts from here
            raw = await request.read()
            # The signature is checked on the raw bytes BEFORE anything parses them, so an
            # unsigned body, however malformed, costs one HMAC and gets a 401 (Bolt checks
            # again, as a second layer).
            if verifier is not None and not _signed(verifier, raw, request):
                return web.json_response({"error": "invalid request"}, status=401)
            try:
                bolt_request = AsyncBoltRequest(
                    body=raw.decode("utf-8"),
                    query=request.query_string,
                    headers=request.headers,  # type: ignore[arg-type]
                    context={RECEIVED_AT: received_at},
                )
            except (
                UnicodeDecodeError,
                ValueError,
                RecursionError,
                TypeError,
                LookupError,
                AttributeError,
            ):
                return web.json_response({"error": "malformed request body"}, status=400)
            body = bolt_request.body
            if not isinstance(body, dict) or not isinstance(body.get("event", {}), dict):
                return web.json_response({"error": "malformed request body"}, status=400)
            bolt_response = await bolt.async_dispatch(bolt_request)
            return await to_aiohttp_response(bolt_response)

        app.router.add_post("/slack/events", slack_events)

    if oauth_flow is not None:
        flow = oauth_flow

        async def oauth_install(request: web.Request) -> web.Response:
            bolt_response = await flow.handle_installation(_browser_request(request))
            return await to_aiohttp_response(bolt_response)

        async def oauth_redirect(request: web.Request) -> web.Response:
            bolt_response = await flow.handle_callback(_browser_request(request))
            return await to_aiohttp_response(bolt_response)

        app.router.add_get(flow.install_path, oauth_install)
        app.router.add_get(flow.redirect_uri_path, oauth_redirect)
    return app


def _browser_request(request: web.Request) -> AsyncBoltRequest:
    """A GET from a browser (no body): query and headers (the state cookie) only."""
    return AsyncBoltRequest(
        body="",
        query=request.query_string,
        headers=request.headers,  # type: ignore[arg-type]
    )


def _signed(verifier: SignatureVerifier, raw: bytes, request: web.Request) -> bool:
    try:
        return verifier.is_valid_request(raw, dict(request.headers))
    except (ValueError, TypeError):  # e.g. a timestamp header that is not a number
        return False
