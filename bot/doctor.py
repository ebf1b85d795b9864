"""``python -m bot doctor``: checks what usually goes wrong and says how to fix it.

One line per check: ``ok   <check>: <what works>``, ``warn <check>: <what could not be
checked>`` or ``FAIL <check>: <what is wrong>`` followed by an indented ``fix:`` line. The exit
code is 1 when any check failed (warnings do not count), else 0. Nothing secret is printed:
every line passes ``bot.redaction`` (the configured secrets and token shapes become
``[redacted]``; terminal control sequences are dropped), because error codes and messages
from Slack, the model endpoint and the database are quoted as they came.

Checks, in order: the settings load; the database answers and its migrations are current; the
bot token works (``auth.test``) and holds every bot scope of ``slack-app-manifest.yaml`` (Slack
lists a token's scopes in the ``x-oauth-scopes`` header of its answers), and the assistant pane's
scopes and events (the events from the manifest: Slack lets no bot token read an app's event
subscriptions); in Socket Mode, the
app token opens connections; the model endpoint answers ``GET /models`` with the key, and a
one-token, non-streamed, unstored response with ``DEFAULT_MODEL``; then, for ``DEFAULT_MODEL``
and each of ``ALLOWED_MODELS`` (the first few), what the endpoint does with it: whether it
keeps ``previous_response_id`` chains (a made-up id must be refused), accepts a trivial
function tool, and streams. Those results are stored with their time, as the service's own
probes are, so ``CONVERSATION_STATE=auto`` uses them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from bot.doctor_model import ModelChecks
from bot.doctor_report import CheckFailed, CheckWarning, Report
from bot.doctor_tools import ToolChecks
from bot.errors import (
    ConfigError,
    DeliveryError,
    SlackRefusedError,
)
from bot.redaction import Redactor
from bot.settings import Settings, load_settings
from bot.slack.failures import slack_failures

__all__ = [
    "ASSISTANT_EVENTS",
    "ASSISTANT_SCOPES",
    "MANIFEST_PATH",
    "manifest_bot_events",
    "manifest_bot_scopes",
    "manifest_flags",
    "run_doctor",
]

ASSISTANT_SCOPES = (
    "assistant:write",  # assistant.threads.setStatus / setSuggestedPrompts / setTitle
    "im:history",  # the person's messages in the pane (message.im)
    "channels:read",  # the name of the channel being viewed, and its members
    "groups:read",
    "channels:history",  # "summarise this channel"
    "groups:history",
)
ASSISTANT_EVENTS = ("assistant_thread_started", "assistant_thread_context_changed", "message.im")

# Each model costs three tiny calls; a long ALLOWED_MODELS list is checked in part.
MAX_MODELS_CHECKED = 5

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "slack-app-manifest.yaml"

_TOKEN_PAGE = "the app's OAuth & Permissions page (https://api.slack.com/apps)"


# ------------------------------------------------------------------------------ database


async def _database(settings: Settings) -> str:
    from storage.engine import create_engine, create_session_factory
    from storage.repositories import Store

    engine = create_engine(settings.database_url)
    try:
        store = Store(create_session_factory(engine))
        try:
            await store.ping()
        except Exception as exc:
            raise CheckFailed(
                f"the database does not answer ({type(exc).__name__}: {str(exc)[:200]})",
                "check DATABASE_URL (host, port, user, password, database name), that the "
                "database server runs and that this machine may connect to it",
            ) from None
        if not await store.schema_is_current():
            raise CheckFailed(
                "the database's migrations are not current",
                "run `python -m bot migrate` (the service also applies them when it starts)",
            )
    finally:
        await engine.dispose()
    return "database answers and its migrations are current"


# ------------------------------------------------------------------------------ Slack


def _manifest(path: Path) -> tuple[dict[tuple[str, ...], list[str]], dict[tuple[str, ...], str]]:
    """The manifest's lists of plain items and its scalars, by key path; read without a YAML
    library (the manifest is ours: block mappings, block sequences, plain scalars). Items that
    are mappings (``- title: …``) only mark their list as present."""
    lists: dict[tuple[str, ...], list[str]] = {}
    scalars: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings we are inside
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        text = line.strip()
        if text.startswith("- "):
            while stack and stack[-1][0] >= indent:
                stack.pop()
            items = lists.setdefault(tuple(key for _, key in stack), [])
            item = text[2:].strip()
            if ": " not in item and not item.endswith(":"):
                items.append(item.strip("\"'"))
            continue
        key, _, value = text.partition(":")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if value.strip() and not value.strip().startswith((">", "|")):
            scalars[(*(k for _, k in stack), key.strip())] = value.strip().strip("\"'")
        else:
            stack.append((indent, key.strip()))
    return lists, scalars


def manifest_bot_scopes(path: Path = MANIFEST_PATH) -> list[str]:
    """``oauth_config.scopes.bot`` of the app manifest."""
    return _manifest(path)[0].get(("oauth_config", "scopes", "bot"), [])


def manifest_bot_events(path: Path = MANIFEST_PATH) -> list[str]:
    """``settings.event_subscriptions.bot_events`` of the app manifest."""
    return _manifest(path)[0].get(("settings", "event_subscriptions", "bot_events"), [])


def manifest_flags(path: Path = MANIFEST_PATH) -> dict[str, bool]:
    """Whether the manifest turns on the Home tab and the assistant pane (with prompts)."""
    lists, scalars = _manifest(path)
    return {
        "home_tab": scalars.get(("features", "app_home", "home_tab_enabled")) == "true",
        "assistant_view": bool(scalars.get(("features", "assistant_view", "assistant_description")))
        and ("features", "assistant_view", "suggested_prompts") in lists,
    }


def _slack_refusal(error: str) -> CheckFailed:
    fixes = {
        "invalid_auth": "SLACK_BOT_TOKEN is not a valid token for this Slack: copy the Bot User "
        f"OAuth Token (xoxb-…) from {_TOKEN_PAGE}; check SLACK_API_URL if you use GovSlack or "
        "a proxy",
        "not_authed": "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…)",
        "token_revoked": "the token was revoked (the app was uninstalled or the token "
        f"rotated): reinstall the app and copy the new Bot User OAuth Token from {_TOKEN_PAGE}",
        "account_inactive": "the bot user or workspace is deactivated: reinstall the app and "
        f"copy the new Bot User OAuth Token from {_TOKEN_PAGE}",
        "token_expired": "the token expired (token rotation is on): turn token rotation off "
        f"or use a fresh token from {_TOKEN_PAGE}",
        "not_allowed_token_type": "SLACK_BOT_TOKEN must be the bot token (xoxb-…), not a user "
        "or app-level token",
    }
    return CheckFailed(
        f"Slack refused the bot token ({error})",
        fixes.get(error, f"copy the Bot User OAuth Token (xoxb-…) from {_TOKEN_PAGE}"),
    )


def _unreachable(what: str, exc: Exception, fix: str) -> CheckFailed:
    if isinstance(exc, DeliveryError) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # the network's own words, not our wrapper's
    return CheckFailed(f"could not reach {what} ({type(exc).__name__}: {str(exc)[:200]})", fix)


class _SlackChecks:
    def __init__(self, settings: Settings) -> None:
        from bot.slack.client import make_slack_client

        self.settings = settings
        # Without SLACK_BOT_TOKEN (multi-workspace install) the token checks are skipped.
        self.client = make_slack_client(settings, anonymous=settings.slack_bot_token is None)
        self.scopes_header: str | None = None
        self.token_ok = False

    async def token(self) -> str:
        try:
            with slack_failures("auth.test"):
                response = await self.client.auth_test()
        except SlackRefusedError as exc:
            raise _slack_refusal(exc.code) from None
        except Exception as exc:
            raise _unreachable(
                f"Slack at {self.settings.slack_api_url}",
                exc,
                "check SLACK_API_URL (default https://slack.com/api/) and the network or proxy",
            ) from None
        self.token_ok = True
        headers: Any = response.headers or {}
        header = _header(headers, "x-oauth-scopes")
        self.scopes_header = header
        return (
            f"the bot token works (bot user {response.get('user_id')} in workspace "
            f"{response.get('team_id')})"
        )

    async def scopes(self) -> str:
        if not MANIFEST_PATH.exists():
            raise CheckWarning(f"{MANIFEST_PATH.name} not found; scopes not checked")
        wanted = manifest_bot_scopes()
        if self.scopes_header is None:
            raise CheckWarning("Slack did not list the token's scopes; scopes not checked")
        granted = {s.strip() for s in self.scopes_header.split(",") if s.strip()}
        missing = [s for s in wanted if s not in granted]
        if missing:
            raise CheckFailed(
                f"the bot token lacks {len(missing)} scope(s) of {MANIFEST_PATH.name}: "
                + ", ".join(missing),
                "add them under OAuth & Permissions → Scopes → Bot Token Scopes (or paste "
                f"{MANIFEST_PATH.name} into the app's App Manifest page), reinstall the app to "
                "the workspace, and set SLACK_BOT_TOKEN to the token it shows",
            )
        return f"the bot token has all {len(wanted)} bot scopes of {MANIFEST_PATH.name}"

    async def assistant(self) -> str:
        """The assistant pane: its scopes on the token, its view and events in the manifest
        (Slack lets no bot token read the app's event subscriptions or features: the app has
        those of the manifest pasted into its App Manifest page)."""
        if not MANIFEST_PATH.exists():
            raise CheckWarning(f"{MANIFEST_PATH.name} not found; the assistant pane not checked")
        flags = manifest_flags()
        events = manifest_bot_events()
        missing = [e for e in ASSISTANT_EVENTS if e not in events]
        if not flags["assistant_view"]:
            missing.insert(0, "features.assistant_view (with suggested_prompts)")
        if not flags["home_tab"]:
            missing.append("features.app_home.home_tab_enabled: true")
        if missing:
            raise CheckFailed(
                f"{MANIFEST_PATH.name} lacks what the assistant pane needs: " + ", ".join(missing),
                f"use the {MANIFEST_PATH.name} of this release, paste it into the app's App "
                "Manifest page (https://api.slack.com/apps) and reinstall the app",
            )
        if self.scopes_header is None:
            raise CheckWarning("Slack did not list the token's scopes; the pane's not checked")
        granted = {s.strip() for s in self.scopes_header.split(",") if s.strip()}
        lacking = [s for s in ASSISTANT_SCOPES if s not in granted]
        if lacking:
            raise CheckFailed(
                "the bot token lacks the assistant pane's scope(s): " + ", ".join(lacking),
                f"paste {MANIFEST_PATH.name} into the app's App Manifest page (it adds the "
                "assistant view, its events and scopes), reinstall the app to the workspace, "
                "and set SLACK_BOT_TOKEN to the token it shows",
            )
        return (
            f"the token has the pane's {len(ASSISTANT_SCOPES)} scopes; {MANIFEST_PATH.name} "
            "turns on the assistant view, its events and the Home tab"
        )

    async def app_token(self) -> str:
        token = self.settings.slack_app_token
        assert token is not None  # only run in Socket Mode, where settings require it
        from bot.slack.client import plain_client

        client = plain_client(base_url=self.settings.slack_api_url)
        try:
            with slack_failures("apps.connections.open"):
                await client.apps_connections_open(app_token=token.get_secret_value())
        except SlackRefusedError as exc:
            raise CheckFailed(
                f"Slack refused the app-level token ({exc.code})",
                "create an App-Level Token with the connections:write scope under Basic "
                "Information → App-Level Tokens and set it as SLACK_APP_TOKEN (xapp-…); Socket "
                "Mode must be on in the app's settings",
            ) from None
        except Exception as exc:
            raise _unreachable(
                f"Slack at {self.settings.slack_api_url}",
                exc,
                "check SLACK_API_URL and the network or proxy",
            ) from None
        return "the app-level token opens Socket Mode connections"


def _header(headers: Any, name: str) -> str | None:
    """A response header, whatever mapping slack_sdk hands over (case-insensitive or not,
    values as strings or lists)."""
    for key in headers:
        if str(key).lower() == name:
            value = headers[key]
            if isinstance(value, list | tuple):
                return ",".join(str(v) for v in value)
            return str(value)
    return None


# ------------------------------------------------------------------------------ the report


async def run_doctor() -> int:
    report = Report()
    try:
        settings = load_settings()
    except ConfigError as exc:
        report.fail(
            "configuration",
            str(exc),
            "set it in the environment or in .env; .env.example lists every setting",
        )
        return 1
    report.redact = Redactor(settings.secrets())
    report.ok("configuration", f"settings load ({settings.effective_mode} mode)")

    await report.run("database", lambda: _database(settings))

    slack = _SlackChecks(settings)
    if settings.slack_bot_token is None:
        report.ok(
            "slack token",
            "multi-workspace install: each workspace's bot token comes from its installation "
            "(install at /slack/install)",
        )
    elif await report.run("slack token", slack.token):
        await report.run("slack scopes", slack.scopes)
        await report.run("slack assistant pane", slack.assistant)
    if settings.effective_mode == "socket":
        await report.run("slack app token", slack.app_token)

    model = ModelChecks(settings)
    tools = ToolChecks(settings)
    try:
        if await report.run("model endpoint", model.models_list) or model.reachable:
            default_ok = await report.run("default model", model.default_model)
            names = [settings.default_model] if default_ok else []
            names += [m for m in settings.allowed_models if m != settings.default_model]
            for name in names[:MAX_MODELS_CHECKED]:
                await report.run(f"model {name}", functools.partial(model.capabilities, name))
            if default_ok:
                for tool, stores in (await tools.enabled_hosted_tools()).items():
                    hosted = functools.partial(tools.hosted, model.client, tool, stores)
                    await report.run(f"hosted tool {tool}", hosted)
    finally:
        await model.client.aclose()
    for name, check in tools.mcp_checks():
        await report.run(name, check)
    return 1 if report.failed else 0
