"""A fake Slack: Web API and Socket Mode on 127.0.0.1, port 0, for end-to-end tests.

The bot talks to it through the real slack_sdk (``AsyncWebClient(base_url=fake.api_url)``) and
the real Socket Mode client, so the tests exercise the wire format rather than our assumptions
about it:

* ``POST`` (or ``GET``) ``/api/<method>``; arguments from the query string, a form body (where
  ``blocks`` and other structures arrive as JSON strings) or a JSON body; the token from
  ``Authorization: Bearer …`` or a ``token`` argument. Answers are ``{"ok": true, …}`` or
  ``{"ok": false, "error": "…"}`` with HTTP 200, or 429 with ``Retry-After`` when told to.
* Slack's documented limits are enforced (text 40,000 characters, 50 blocks, section text
  3,000, ``markdown`` blocks 12,000 per message, stream text 12,000 per call), so a reply
  that Slack would refuse fails here too.
* Channels keep their messages, so ``conversations.replies`` returns what was posted (and what a
  test seeded with ``add_message``), and ``thread_messages`` shows what a person would see.
* Other workspaces can install the app: ``add_workspace`` makes an OAuth ``code`` that
  ``oauth.v2.access`` exchanges (with the app's ``client_id``/``client_secret`` in HTTP Basic
  auth, as slack_sdk sends them) for that workspace's own bot token, bot user and bot id.
  Calls made with such a token act as that workspace's bot (``auth.test`` answers for its
  team; messages are posted by its bot); ``uninstall_workspace`` revokes its tokens.
* Slash commands carry a ``response_url`` (``response_url()`` makes one): ``POST`` JSON to it
  and the message is recorded in ``responses``, at most 5 times per URL as Slack allows.
* Views are checked against Block Kit's limits (plain-text inputs of at most 3,000 characters,
  menus of at most 100 options whose initial option is one of them, …): a view Slack would
  refuse gets ``invalid_arguments`` here too.
* Channels have members (``add_channel``): ``users.conversations`` lists a person's public
  channels, and private ones only where the bot is a member too, as Slack does for a bot
  token; it needs the ``channels:read`` / ``groups:read`` scopes.
* ``slow_next`` makes a method answer late (a slow Slack).
* The assistant pane (Slack's AI-app surface): ``start_assistant_thread`` makes a pane thread
  (its root message, as Slack makes it) and the ``assistant_thread_started`` /
  ``assistant_thread_context_changed`` event helpers say what Slack sends;
  ``assistant.threads.setSuggestedPrompts`` (at most 4) and ``setTitle`` are recorded in
  ``suggested_prompts`` and ``titles``.
* Blocks are checked as Slack checks them: unknown block or element types are refused
  (``invalid_blocks``), ``context_actions`` takes only ``feedback_buttons`` and
  ``icon_button``; ``unsupported_blocks`` makes a surface refuse a block type it would
  otherwise take (a client too old for feedback buttons). ``feedback_click`` builds the
  interactivity payload of a click on a message's feedback buttons, from the blocks stored;
  ``button_click`` that of a click on any plain button (by its ``action_id``).
* Stream chunks (``chunks`` on ``chat.startStream`` / ``appendStream`` / ``stopStream``) are
  checked as slack_sdk's models describe them: ``markdown_text`` (``text``), ``task_update``
  (``id``, ``title``, ``status`` one of pending / in_progress / complete / error, optional
  ``details`` and ``output`` of at most 256 characters, ``sources`` of ``{"type": "url",
  "url", "text"}``), ``plan_update`` (``title``) and ``blocks``; an unknown chunk type, a
  missing or unknown field is ``invalid_arguments`` (assumed code), as is a
  ``task_display_mode`` other than ``timeline`` / ``plan``. Each streamed message keeps every
  chunk it received (``stream_chunks``) and the latest state of each task card by id, in the
  order they first appeared (``stream_tasks``).
* ``conversations.info`` and ``conversations.history`` answer for channels given with
  ``add_channel`` (private ones only where the bot is a member; ``not_in_channel`` where it
  is not).
* Files (``add_file``) are served at ``url_private`` on the API's own origin, as Slack's file
  host does: with a valid bot token the bytes, without one Slack's sign-in page (HTML, 200).
* Rate limits (opt-in: ``enforce_tiers()``; off by default so other tests need not pace
  themselves): Slack's documented per-method, per-workspace tiers (see ``TIER_PER_MINUTE``),
  each at most N calls in any 60 s (so a burst of up to N at once is allowed, as Slack allows
  bursts), and ``chat.postMessage`` at 1 per second per channel with a short burst
  (``POST_BURST``). Over a budget the answer is HTTP 429 ``ratelimited`` with ``Retry-After``
  (whole seconds until a slot frees), and nothing is done.
* ``GET /socket`` is the Socket Mode WebSocket that ``apps.connections.open`` points to: it
  greets with ``hello`` as Slack does, ``send_envelope`` pushes events and ``acks`` records the
  client's acknowledgements.

Every call is recorded in ``calls``; ``wait_for`` lets a test wait for a state without sleeping.
Guesses where Slack's documentation is silent are marked "assumed" below.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import itertools
import json
import math
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = ["POST_BURST", "TIER_PER_MINUTE", "FakeSlack", "SlackCall", "Workspace"]

T = TypeVar("T")

MAX_TEXT_CHARS = 40_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT_CHARS = 3_000
MAX_HEADER_TEXT_CHARS = 150
MAX_MARKDOWN_CHARS = 12_000
MAX_LOADING_MESSAGES = 10
MAX_REPLIES_LIMIT = 1_000
MAX_VIEW_BLOCKS = 100
MAX_INPUT_CHARS = 3_000
MAX_OPTIONS = 100
MAX_OPTION_TEXT_CHARS = 75
MAX_OPTION_VALUE_CHARS = 150
MAX_PRIVATE_METADATA_CHARS = 3_000
MAX_VIEW_TITLE_CHARS = 24
MAX_RESPONSE_URL_USES = 5
MAX_CONVERSATIONS_LIMIT = 999
MAX_CONTEXT_ELEMENTS = 10
MAX_TASK_TEXT_CHARS = 256
"""A task card's ``details`` and ``output`` (from Slack's SDKs' documentation)."""
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
TASK_DISPLAY_MODES = frozenset({"timeline", "plan"})
_CHUNK_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # type: (required fields, optional fields), besides "type"
    "markdown_text": (frozenset({"text"}), frozenset()),
    "task_update": (
        frozenset({"id", "title", "status"}),
        frozenset({"details", "output", "sources"}),
    ),
    "plan_update": (frozenset({"title"}), frozenset()),
    "blocks": (frozenset({"blocks"}), frozenset()),
}
# The bot scopes of slack-app-manifest.yaml: what a correctly installed app is granted.
DEFAULT_BOT_SCOPES = (
    "app_mentions:read",
    "chat:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "im:read",
    "im:write",
    "commands",
    "users:read",
    "files:read",
    "reactions:write",
    "assistant:write",
    "channels:read",
    "groups:read",
)
DEFAULT_REPLIES_LIMIT = 100
SIGN_IN_PAGE = (
    '<!DOCTYPE html>\n<html lang="en-US"><head><meta charset="utf-8">'
    "<title>Slack</title></head><body><h1>Sign in to Slack</h1></body></html>\n"
)

# Slack's method tiers (calls per minute, per method, per workspace, per app), from the method
# reference pages and the rate-limits page. assistant.threads.setStatus and reactions.* say
# "special" / Tier 3: assumed 50. conversations.replies is Tier 3 for Marketplace and internal
# apps (1 per minute for other commercially distributed apps: ``replies_per_minute``).
TIER_PER_MINUTE: dict[str, int] = {
    "chat.startStream": 20,
    "chat.stopStream": 20,
    "users.list": 20,
    "chat.update": 50,
    "chat.delete": 50,
    "conversations.replies": 50,
    "conversations.history": 50,
    "assistant.threads.setStatus": 50,
    "reactions.add": 50,
    "reactions.remove": 50,
    "chat.appendStream": 100,
    "users.info": 100,
    "views.open": 100,
    "views.publish": 100,
    "views.update": 100,
    "chat.postEphemeral": 100,
}
POST_PER_SECOND = 1.0
"""``chat.postMessage``: about one message per second per channel..."""
POST_BURST = 5
"""...with short bursts above it (assumed: 5 at once, then the 1/s pace)."""
MAX_SUGGESTED_PROMPTS = 4
MAX_FEEDBACK_TEXT_CHARS = 75
MAX_BUTTON_VALUE_CHARS = 2_000
MAX_CONTEXT_ACTIONS = 5
# Block and element types Slack's messages take (those the bot uses and their neighbours).
KNOWN_BLOCKS = frozenset(
    {
        "actions",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
KNOWN_ACTION_ELEMENTS = frozenset(
    {
        "button",
        "checkboxes",
        "datepicker",
        "datetimepicker",
        "overflow",
        "radio_buttons",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "timepicker",
        "workflow_button",
    }
)
CONTEXT_ACTION_ELEMENTS = frozenset({"feedback_buttons", "icon_button"})

# Arguments that are structures: slack_sdk sends them as JSON in JSON bodies but as JSON
# *strings* in form bodies and query strings, and Slack accepts both.
_STRUCTURED_ARGS = frozenset(
    {
        "blocks",
        "attachments",
        "chunks",
        "metadata",
        "view",
        "loading_messages",
        "user_auth_blocks",
        "prompts",
    }
)


@dataclass(frozen=True)
class SlackCall:
    """One Web API request as the fake received and answered it."""

    method: str
    """Slack method name, e.g. ``"chat.postMessage"``."""
    params: dict[str, Any]
    """Arguments from query, form or JSON body; structures (``blocks`` …) decoded; no token."""
    headers: dict[str, str]
    """Request headers (``Authorization`` included, as sent)."""
    time: float
    """``time.monotonic()`` when the request arrived (for spacing and rate checks)."""
    token: str | None
    """The token the request carried, from the header or the ``token`` argument."""
    http_method: str
    """``"GET"`` or ``"POST"``."""
    status: int
    """HTTP status of the answer (200, or the status given to ``fail_next``)."""
    response: dict[str, Any]
    """The JSON answer."""

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        error = self.response.get("error")
        return error if isinstance(error, str) else None


class _SlackError(Exception):
    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


@dataclass(frozen=True)
class Workspace:
    """A workspace the app is installed in (beyond the fake's own)."""

    team_id: str
    team_name: str
    bot_user_id: str
    bot_id: str
    bot_token: str
    installer_user_id: str


@dataclass(frozen=True)
class _Fault:
    error: str
    status: int
    retry_after: int | None


@dataclass
class _Message:
    ts: str
    text: str
    user: str | None
    bot_id: str | None = None
    thread_ts: str | None = None
    """The parent's ts for a reply; ``None`` for a top-level message."""
    blocks: list[dict[str, Any]] | None = None
    files: list[dict[str, Any]] | None = None
    subtype: str | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)
    streaming: bool = False
    """Between chat.startStream and chat.stopStream (or expiry): appends are accepted."""
    stopped_by_user: bool = False
    """The user pressed stop: later append/stop calls get ``stopped_by_user``."""
    task_display_mode: str | None = None
    """As ``chat.startStream`` gave it (Slack's default is ``timeline``)."""
    chunks: list[dict[str, Any]] = field(default_factory=list)
    """Every stream chunk received, in order."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task cards by id: the latest ``task_update`` of each, in order of first appearance."""


class FakeSlack:
    """A fake Slack workspace with one bot; see the module docstring.

    Use ``async with FakeSlack() as slack:``, or ``start()`` / ``stop()``.
    """

    team_id = "T1"
    team_name = "Fake Team"
    team_domain = "fake"
    bot_user_id = "UBOT"
    bot_id = "BBOT"
    bot_name = "responses-bot"
    app_id = "ABOT"
    client_id = "1111.2222"
    client_secret = "fake-client-secret-0123456789"

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-1-fake-bot-token",
        app_token: str = "xapp-1-ABOT-1-fake-app-token",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.calls: list[SlackCall] = []
        self.replies_page_size: int | None = None
        """When set, ``conversations.replies`` pages hold at most this many messages, whatever
        ``limit`` the client asks for (Slack may return fewer than asked; clients must follow
        ``next_cursor``)."""
        self.statuses: list[dict[str, Any]] = []
        """Every accepted ``assistant.threads.setStatus``: channel_id, thread_ts, status,
        loading_messages."""
        self.suggested_prompts: list[dict[str, Any]] = []
        """Every accepted ``assistant.threads.setSuggestedPrompts``: channel_id, thread_ts,
        title, prompts."""
        self.titles: dict[tuple[str, str], str] = {}
        """Pane thread titles by (channel, thread_ts), as ``assistant.threads.setTitle`` set."""
        self.unsupported_blocks: set[str] = set()
        """Block types this surface refuses (``invalid_blocks``) although Slack knows them."""
        self.ephemerals: list[dict[str, Any]] = []
        """Every accepted ``chat.postEphemeral``: channel, user, text, blocks, thread_ts, ts."""
        self.views: dict[str, dict[str, Any]] = {}
        """Views opened, published or updated, by view id."""
        self.envelopes: list[dict[str, Any]] = []
        """Socket Mode envelopes sent to the client."""
        self.acks: list[dict[str, Any]] = []
        """Socket Mode acknowledgements received: ``{"envelope_id": …}`` and maybe ``payload``."""
        self.socket_connections = 0
        """How many Socket Mode connections were ever accepted (a reconnect adds one)."""
        self.users: dict[str, dict[str, Any]] = {}
        self.responses: list[dict[str, Any]] = []
        """Every message posted to a ``response_url``: ``url`` plus the JSON body."""
        self.members: dict[str, set[str]] = {}
        """Channel id → its members (``add_channel``); the bot is a member where listed."""
        self.private_channels: set[str] = set()
        self.file_requests: list[dict[str, str]] = []
        """Every request to a file URL: ``path`` plus the request headers."""
        self._files: dict[str, tuple[bytes, str]] = {}
        self.granted_scopes: list[str] | None = list(DEFAULT_BOT_SCOPES)
        """Scopes of the bot token, sent as Slack does in the ``x-oauth-scopes`` header of
        every answer to a call with a valid bot token; ``None`` sends no header."""

        self.workspaces: dict[str, Workspace] = {}
        """Installed workspaces by team id (``oauth.v2.access`` adds them)."""
        self._pending_codes: dict[str, Workspace] = {}
        self._tokens: dict[str, Workspace] = {}
        self._caller: Workspace | None = None
        self._basic_auth = ""
        """The installed workspace whose token the request being answered carries."""

        self._channels: dict[str, dict[str, _Message]] = {}
        self._thread_status: dict[tuple[str, str], str] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, deque[float]] = {}
        self._response_urls = itertools.count(1)
        self.tiers_enforced = False
        """Whether Slack's rate limits are enforced (``enforce_tiers``)."""
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._post_buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._tier_limits: dict[str, int] = dict(TIER_PER_MINUTE)
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = asyncio.Condition()
        self._clock = Decimal("1700000000.000000")
        self._view_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "oauth.v2.access": self._oauth_v2_access,
            "apps.connections.open": self._apps_connections_open,
            "assistant.threads.setStatus": self._assistant_threads_set_status,
            "assistant.threads.setSuggestedPrompts": self._assistant_threads_set_prompts,
            "assistant.threads.setTitle": self._assistant_threads_set_title,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "conversations.replies": self._conversations_replies,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "users.conversations": self._users_conversations,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.publish": self._views_publish,
            "views.update": self._views_update,
        }
        self.add_user(self.bot_user_id, name=self.bot_name, is_bot=True)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("GET", "/api/{method}", self._handle_api)
        app.router.add_route("POST", "/api/{method}", self._handle_api)
        app.router.add_get("/socket", self._handle_socket)
        app.router.add_post("/commands/{team}/{id}/{secret}", self._handle_response_url)
        app.router.add_get("/files-pri/{key}/{name}", self._handle_file)
        app.router.add_get("/files-pri/{key}/download/{name}", self._handle_file)
        # A short shutdown timeout: a test's server never has slow requests worth waiting for.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving. Close Socket Mode clients first, or they will keep reconnecting."""
        # Close WebSockets first: the runner would otherwise wait for their handlers to end.
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def api_url(self) -> str:
        """Base URL for ``AsyncWebClient(base_url=...)``; ends with ``/api/`` as slack_sdk needs."""
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    # --- test helpers: state -------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        real_name: str | None = None,
        display_name: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        locale: str = "en-US",
        tz: str = "Europe/London",
    ) -> dict[str, Any]:
        """Register a user for ``users.info``; returns the user object Slack would send
        (``locale`` only when asked with ``include_locale=true``, as Slack does)."""
        real = real_name if real_name is not None else name.title()
        display = display_name if display_name is not None else name
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": tz,
            "locale": locale,
            "profile": {
                "real_name": real,
                "real_name_normalized": real,
                "display_name": display,
                "display_name_normalized": display,
                "team": self.team_id,
            },
            "is_admin": is_admin or is_owner,  # Slack's owners are admins too
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1700000000,
        }
        self.users[user_id] = user
        return user

    def add_workspace(
        self,
        team_id: str,
        *,
        team_name: str | None = None,
        bot_user_id: str | None = None,
        bot_id: str | None = None,
        installer_user_id: str = "UINSTALLER",
    ) -> str:
        """Prepare an install of the app in ``team_id``; returns the OAuth ``code`` Slack would
        put in the redirect. ``oauth.v2.access`` exchanges it once for a new bot token."""
        workspace = Workspace(
            team_id=team_id,
            team_name=team_name or f"Team {team_id}",
            bot_user_id=bot_user_id or f"UBOT{team_id}",
            bot_id=bot_id or f"BBOT{team_id}",
            bot_token=f"xoxb-{team_id}-{secrets.token_hex(8)}",
            installer_user_id=installer_user_id,
        )
        code = f"code-{team_id}-{secrets.token_hex(6)}"
        self._pending_codes[code] = workspace
        return code

    def uninstall_workspace(self, team_id: str) -> None:
        """The app is removed from ``team_id``: its tokens stop working (``invalid_auth``)."""
        workspace = self.workspaces.pop(team_id, None)
        if workspace is not None:
            self._tokens.pop(workspace.bot_token, None)

    def add_message(
        self,
        channel: str,
        *,
        user: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
        subtype: str | None = None,
    ) -> str:
        """Seed a message that ``conversations.replies`` will return; returns its ts.

        E2E tests add the user's message this way before sending the matching event, as in
        Slack the message exists before its event arrives. Messages with ``files`` get the
        ``file_share`` subtype, as Slack gives them.
        """
        if ts is None:
            ts = self._next_ts()
        else:
            self._observe_ts(ts)
        messages = self._channels.setdefault(channel, {})
        if ts in messages:
            raise ValueError(f"message {ts} already exists in {channel}")
        if subtype is None and files:
            subtype = "file_share"
        messages[ts] = _Message(
            ts=ts,
            text=text,
            user=user,
            bot_id=bot_id,
            thread_ts=self._thread_root(channel, thread_ts) if thread_ts else None,
            files=copy.deepcopy(files) if files else None,
            subtype=subtype,
        )
        return ts

    def add_channel(
        self, channel: str, *, members: list[str], private: bool = False, bot: bool = True
    ) -> None:
        """Give ``channel`` its members (the bot too, unless ``bot`` is false)."""
        self.members[channel] = set(members) | ({self.bot_user_id} if bot else set())
        if private:
            self.private_channels.add(channel)
        else:
            self.private_channels.discard(channel)

    def add_file(
        self,
        name: str,
        data: bytes,
        mimetype: str,
        filetype: str,
        *,
        served_as: str | None = None,
    ) -> dict[str, Any]:
        """Store a file; returns the file object Slack puts in a message's ``files``.
        ``served_as``: the Content-Type the file host answers with (default ``mimetype``)."""
        file_id = f"F{len(self._files) + 1:08d}"
        key = f"{self.team_id}-{file_id}"
        self._files[f"{key}/{name}"] = (data, served_as or mimetype)
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "size": len(data),
            "url_private": f"http://127.0.0.1:{self.port}/files-pri/{key}/{name}",
            "url_private_download": (
                f"http://127.0.0.1:{self.port}/files-pri/{key}/download/{name}"
            ),
        }

    def response_url(self) -> str:
        """A fresh ``response_url`` as Slack puts in a slash command's payload."""
        number = next(self._response_urls)
        return (
            f"http://127.0.0.1:{self.port}/commands/{self.team_id}/{number}/{secrets.token_hex(8)}"
        )

    def responses_to(self, url: str) -> list[dict[str, Any]]:
        """The messages posted to ``url`` so far, oldest first."""
        return [r for r in self.responses if r["url"] == url]

    def thread_messages(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """What a person sees in the thread now: parent then replies, as Slack returns them."""
        return [self._public(channel, m) for m in self._thread(channel, thread_ts)]

    def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message of the channel, replies included, oldest first."""
        messages = sorted(self._channels.get(channel, {}).values(), key=lambda m: Decimal(m.ts))
        return [self._public(channel, m) for m in messages]

    def bot_replies(
        self, channel: str, thread_ts: str, *, bot_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The thread's messages posted by this bot (or by the bot ``bot_id`` of an installed
        workspace), oldest first."""
        wanted = bot_id or self.bot_id
        return [m for m in self.thread_messages(channel, thread_ts) if m.get("bot_id") == wanted]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        found = self._channels.get(channel, {}).get(ts)
        return self._public(channel, found) if found else None

    def thread_status(self, channel: str, thread_ts: str) -> str:
        """The assistant status shown in the thread ("" when none, or cleared by a reply)."""
        return self._thread_status.get((channel, thread_ts), "")

    def expire_stream(self, channel: str, ts: str) -> None:
        """End a stream as Slack does after ~5 minutes: later append/stop calls get
        ``message_not_in_streaming_state``; the text streamed so far stays."""
        message = self._channels[channel][ts]
        message.streaming = False

    def stop_stream_by_user(self, channel: str, ts: str) -> None:
        """The user stops a streaming answer in Slack; the text streamed so far stays."""
        message = self._channels[channel][ts]
        message.streaming = False
        message.stopped_by_user = True

    def stream_chunks(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Every chunk the streamed message ``ts`` received, in order."""
        return copy.deepcopy(self._channels[channel][ts].chunks)

    def stream_tasks(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The task cards the streamed message ``ts`` shows: each one's latest state."""
        return copy.deepcopy(list(self._channels[channel][ts].tasks.values()))

    def stream_display_mode(self, channel: str, ts: str) -> str | None:
        return self._channels[channel][ts].task_display_mode

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``error`` (state untouched).

        With ``status=429`` the answer carries ``Retry-After`` (``retry_after`` seconds, 1 if
        not given: Slack always sends one). Faults queue up: calls consume them in order.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        queue = self._faults.setdefault(method, deque())
        queue.extend(_Fault(error, status, retry_after) for _ in range(times))

    def slow_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` wait ``seconds`` before answering."""
        self._delays.setdefault(method, deque()).extend([seconds] * times)

    def enforce_tiers(self, *, replies_per_minute: int | None = None) -> None:
        """Enforce Slack's rate limits from now on (see the module docstring): calls over a
        method's budget get HTTP 429 ``ratelimited`` with ``Retry-After``. With
        ``replies_per_minute`` (e.g. 1, as for commercially distributed non-Marketplace apps)
        ``conversations.replies`` gets that budget instead of Tier 3."""
        self.tiers_enforced = True
        if replies_per_minute is not None:
            self._tier_limits["conversations.replies"] = replies_per_minute

    @property
    def rate_limited(self) -> list[SlackCall]:
        """Every call answered with HTTP 429."""
        return [c for c in self.calls if c.status == 429]

    # A deadline parameter (ASYNC109) is the point of these helpers: a test names how long a
    # condition may take, and a missed deadline fails with the recent calls in the message.
    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 5.0,
    ) -> T:
        """Wait until ``predicate()`` is truthy and return its value.

        Re-checked after every API call, socket message and connection change, so no polling
        interval: the test continues as soon as the state is there.
        """
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    while not (result := predicate()):
                        await self._changed.wait()
                    return result
            except TimeoutError:
                recent = ", ".join(f"{c.method}:{c.error or 'ok'}" for c in self.calls[-10:])
                raise TimeoutError(
                    f"condition not met within {timeout}s; last calls: [{recent}]"
                ) from None

    # --- test helpers: Socket Mode -------------------------------------------------------

    @property
    def connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until a Socket Mode client is connected and has been sent ``hello``."""
        await self.wait_for(lambda: self.connected, timeout)

    def start_assistant_thread(self, channel: str, *, user: str) -> str:
        """A person opens the assistant pane: Slack makes the thread's root message (subtype
        ``assistant_app_thread``, written as the person) in the app's DM; returns its ts."""
        ts = self._next_ts()
        self._channels.setdefault(channel, {})[ts] = _Message(
            ts=ts, text="New chat", user=user, subtype="assistant_app_thread"
        )
        return ts

    @staticmethod
    def assistant_thread_event(
        kind: str, *, channel: str, thread_ts: str, user: str, viewing: str | None, team: str
    ) -> dict[str, Any]:
        """``assistant_thread_started`` or ``assistant_thread_context_changed`` as Slack sends
        it; ``viewing`` is the channel the person has open (None: none, e.g. a search)."""
        if kind not in ("assistant_thread_started", "assistant_thread_context_changed"):
            raise ValueError(kind)
        context: dict[str, Any] = {}
        if viewing is not None:
            context = {"channel_id": viewing, "team_id": team, "enterprise_id": None}
        return {
            "type": kind,
            "assistant_thread": {
                "user_id": user,
                "context": context,
                "channel_id": channel,
                "thread_ts": thread_ts,
            },
            "event_ts": f"{time.time():.6f}",
        }

    def feedback_click(
        self, channel: str, ts: str, *, user: str, positive: bool, team: str | None = None
    ) -> dict[str, Any]:
        """The ``block_actions`` payload Slack sends when ``user`` clicks 👍 (``positive``) or
        👎 on the bot message ``ts``: its ``feedback_buttons``, else its plain buttons whose
        ``action_id`` ends in ``_good``/``_bad``. Fails when the message has neither."""
        message = self._channels[channel][ts]
        team = team or self.team_id
        for block in message.blocks or []:
            for element in block.get("elements") or []:
                if not isinstance(element, dict):
                    continue
                if element.get("type") == "feedback_buttons":
                    button = element["positive_button" if positive else "negative_button"]
                    action = {
                        "type": "feedback_buttons",
                        "action_id": element.get("action_id"),
                        "block_id": block.get("block_id", "b"),
                        "text": button["text"],
                        "value": button["value"],
                        "action_ts": f"{time.time():.6f}",
                    }
                elif element.get("type") == "button" and str(element.get("action_id", "")).endswith(
                    "_good" if positive else "_bad"
                ):
                    action = {
                        "type": "button",
                        "action_id": element["action_id"],
                        "block_id": block.get("block_id", "b"),
                        "text": element["text"],
                        "value": element.get("value", ""),
                        "action_ts": f"{time.time():.6f}",
                    }
                else:
                    continue
                return self._block_actions(channel, ts, team=team, user=user, action=action)
        raise AssertionError(f"message {ts} in {channel} has no feedback buttons")

    def button_click(
        self, channel: str, ts: str, *, user: str, action_id: str, team: str | None = None
    ) -> dict[str, Any]:
        """The ``block_actions`` payload Slack sends when ``user`` clicks the button
        ``action_id`` on the message ``ts`` (from the blocks stored). Fails when the message
        has no such button."""
        message = self._channels[channel][ts]
        team = team or self.team_id
        for block in message.blocks or []:
            for element in block.get("elements") or []:
                if not isinstance(element, dict) or element.get("type") != "button":
                    continue
                if element.get("action_id") != action_id:
                    continue
                action = {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block.get("block_id", "b"),
                    "text": element["text"],
                    "value": element.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }
                return self._block_actions(channel, ts, team=team, user=user, action=action)
        raise AssertionError(f"message {ts} in {channel} has no button {action_id}")

    def _block_actions(
        self, channel: str, ts: str, *, team: str, user: str, action: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``block_actions`` payload of one click on the message ``ts``."""
        return {
            "type": "block_actions",
            "team": {"id": team, "domain": self.team_domain},
            "user": {"id": user, "team_id": team},
            "api_app_id": self.app_id,
            "trigger_id": f"trigger-{secrets.token_hex(4)}",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "channel": {"id": channel, "name": channel.lower()},
            "message": self._public(channel, self._channels[channel][ts]),
            "actions": [action],
        }

    async def send_envelope(
        self,
        payload_type: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Send an envelope to the connected client; returns its ``envelope_id``.

        ``payload_type`` is ``"events_api"``, ``"slash_commands"`` or ``"interactive"``.
        ``accepts_response_payload`` defaults as in Slack: false for events, true otherwise.
        Slack sends ``retry_attempt``/``retry_reason`` only with events; so does the fake.
        """
        ws = self._current_socket()
        envelope: dict[str, Any] = {
            "envelope_id": str(uuid.uuid4()),
            "payload": dict(payload),
            "type": payload_type,
            "accepts_response_payload": (
                payload_type != "events_api"
                if accepts_response_payload is None
                else accepts_response_payload
            ),
        }
        if payload_type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        self.envelopes.append(envelope)
        await ws.send_json(envelope)
        return str(envelope["envelope_id"])

    def event_payload(
        self, event: Mapping[str, Any], *, event_id: str | None = None
    ) -> dict[str, Any]:
        """An Events API ``event_callback`` body for ``event``, as Slack wraps it."""
        return {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def message_event(
        self, channel: str, ts: str, *, event_type: str = "message"
    ) -> dict[str, Any]:
        """The ``message`` (or ``app_mention``) event Slack sends for a stored message."""
        stored = self._channels[channel][ts]
        event: dict[str, Any] = {
            "type": event_type,
            "user": stored.user,
            "text": stored.text,
            "ts": stored.ts,
            "team": self.team_id,
            "channel": channel,
            "event_ts": stored.ts,
        }
        if event_type == "message":
            event["channel_type"] = _channel_type(channel)
        if stored.thread_ts:
            event["thread_ts"] = stored.thread_ts
            parent = self._channels[channel].get(stored.thread_ts)
            if parent is not None and parent.user:
                event["parent_user_id"] = parent.user
        if stored.subtype:
            event["subtype"] = stored.subtype
        if stored.bot_id:
            event["bot_id"] = stored.bot_id
        else:
            # Messages typed by people carry the client's id for the message; bots' do not.
            event["client_msg_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{channel}/{ts}"))
        if stored.files:
            event["files"] = copy.deepcopy(stored.files)
        return event

    async def send_event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Send ``event`` wrapped as Slack does (``event_callback`` in an ``events_api``
        envelope); returns the envelope id."""
        return await self.send_envelope(
            "events_api",
            self.event_payload(event, event_id=event_id),
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    async def wait_ack(
        self,
        envelope_id: str,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Wait for the client's acknowledgement of an envelope and return it."""

        def find() -> dict[str, Any] | None:
            return next((a for a in self.acks if a.get("envelope_id") == envelope_id), None)

        return await self.wait_for(find, timeout)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does before recycling a connection."""
        ws = self._current_socket()
        await ws.send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-applink"}}
        )

    def _current_socket(self) -> web.WebSocketResponse:
        open_sockets = [ws for ws in self._sockets if not ws.closed]
        if not open_sockets:
            raise RuntimeError("no Socket Mode client is connected")
        return open_sockets[-1]

    # --- HTTP plumbing -------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, token, parse_error = await _read_params(request)
        delays = self._delays.get(method)
        if delays:
            await asyncio.sleep(delays.popleft())  # a slow Slack, as the test asked
        self._caller = self._tokens.get(token) if token else None
        self._basic_auth = request.headers.get("Authorization", "")
        try:
            status, headers, body = self._answer(method, params, token, parse_error)
        finally:
            self._caller = None
        self.calls.append(
            SlackCall(
                method=method,
                params=params,
                headers=dict(request.headers),
                time=time.monotonic(),
                token=token,
                http_method=request.method,
                status=status,
                response=body,
            )
        )
        await self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None, parse_error: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        faults = self._faults.get(method)
        if faults:
            fault = faults.popleft()
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return fault.status, headers, {"ok": False, "error": fault.error}
        handler = self._handlers.get(method)
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method", "req_method": method}
        headers: dict[str, str] = {}
        try:
            self._check_token(method, token)
            if (
                self.granted_scopes is not None
                and (token == self.bot_token or token in self._tokens)
                and method != "apps.connections.open"
            ):
                headers["x-oauth-scopes"] = ",".join(self.granted_scopes)
            if parse_error is not None:
                raise _SlackError(parse_error)
            retry_after = self._over_budget(method, params) if self.tiers_enforced else None
            if retry_after is not None:
                return (
                    429,
                    {**headers, "Retry-After": str(retry_after)},
                    {"ok": False, "error": "ratelimited"},
                )
            result = handler(params)
        except _SlackError as exc:
            return 200, headers, {"ok": False, "error": exc.code, **exc.extra}
        return 200, headers, {"ok": True, **result}

    async def _handle_file(self, request: web.Request) -> web.Response:
        self.file_requests.append({"path": request.path, **dict(request.headers)})
        await self._notify()
        key, name = request.match_info["key"], request.match_info["name"]
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ").strip()
        if token != self.bot_token and token not in self._tokens:
            # Slack answers an unauthorised file request with its sign-in page, status 200.
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
        found = self._files.get(f"{key}/{name}")
        if found is None:
            return web.Response(status=404, text="file_not_found")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        url = f"http://127.0.0.1:{self.port}{request.path}"
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        if len(self.responses_to(url)) >= MAX_RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")  # assumed wording
        text = body.get("text")
        if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
            return web.Response(status=400, text="msg_too_long")
        self.responses.append({"url": url, **body})
        await self._notify()
        return web.Response(text="ok")

    def _over_budget(self, method: str, params: Mapping[str, Any]) -> int | None:
        """Count this call against its budget; ``None`` if allowed, else the whole seconds
        until it would be (Slack's ``Retry-After``). A refused call uses no budget."""
        team = self._caller.team_id if self._caller is not None else self.team_id
        now = time.monotonic()
        if method == "chat.postMessage":
            # A token bucket per channel: POST_BURST at once, refilled at POST_PER_SECOND.
            key = (team, str(params.get("channel") or ""))
            tokens, since = self._post_buckets.get(key, (float(POST_BURST), now))
            tokens = min(float(POST_BURST), tokens + (now - since) * POST_PER_SECOND)
            if tokens < 1.0:
                self._post_buckets[key] = (tokens, now)
                return max(1, math.ceil((1.0 - tokens) / POST_PER_SECOND))
            self._post_buckets[key] = (tokens - 1.0, now)
            return None
        limit = self._tier_limits.get(method)
        if limit is None:
            return None
        window = self._windows.setdefault((team, method), deque())
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(60.0 - (now - window[0])))
        window.append(now)
        return None

    def _check_token(self, method: str, token: str | None) -> None:
        if method in ("api.test", "oauth.v2.access"):  # the latter checks client credentials
            return
        if token in self._tokens and method != "apps.connections.open":
            return
        if not token:
            raise _SlackError("not_authed")
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token == wanted:
            return
        if token in (self.app_token, self.bot_token):
            raise _SlackError("not_allowed_token_type")
        raise _SlackError("invalid_auth")

    # --- Socket Mode plumbing ------------------------------------------------------------

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        # autoping answers the client's pings ("sdk-ping-pong:<time>") with pongs carrying the
        # same data, which is what slack_sdk's stale-connection check reads back.
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        open_count = sum(1 for s in self._sockets if not s.closed)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": open_count,
                "debug_info": {
                    "host": "fake-applink",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        await self._notify()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and "envelope_id" in data:
                    self.acks.append(data)
                    await self._notify()
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws

    # --- messages ------------------------------------------------------------------------

    def _next_ts(self) -> str:
        self._clock += Decimal("0.000100")
        return f"{self._clock:.6f}"

    def _observe_ts(self, ts: str) -> None:
        # Keep generated ts after every seeded one, so a reply always sorts after its prompt.
        try:
            value = Decimal(ts)
        except InvalidOperation:
            raise ValueError(f"not a Slack ts: {ts!r}") from None
        self._clock = max(self._clock, value)

    def _thread_root(self, channel: str, thread_ts: str) -> str:
        # Replying to a reply lands in the same thread, under its parent.
        target = self._channels.get(channel, {}).get(thread_ts)
        return target.thread_ts if target and target.thread_ts else thread_ts

    def _thread(self, channel: str, thread_ts: str) -> list[_Message]:
        messages = self._channels.get(channel, {})
        found = [m for m in messages.values() if m.ts == thread_ts or m.thread_ts == thread_ts]
        return sorted(found, key=lambda m: Decimal(m.ts))

    def _public(self, channel: str, message: _Message) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
        if message.user:
            out["user"] = message.user
        if message.subtype:
            out["subtype"] = message.subtype
        if message.bot_id:
            out["bot_id"] = message.bot_id
            if message.bot_id == self.bot_id or any(
                w.bot_id == message.bot_id for w in self.workspaces.values()
            ):
                out["app_id"] = self.app_id
                owner = next(
                    (w.team_id for w in self.workspaces.values() if w.bot_id == message.bot_id),
                    self.team_id,
                )
                out["bot_profile"] = {
                    "id": message.bot_id,
                    "app_id": self.app_id,
                    "name": self.bot_name,
                    "team_id": owner,
                }
        out["team"] = self.team_id
        if message.blocks is not None:
            out["blocks"] = copy.deepcopy(message.blocks)
        if message.files:
            out["files"] = copy.deepcopy(message.files)
            out["upload"] = False
        if message.reactions:
            out["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in message.reactions.items()
            ]
        siblings = self._channels.get(channel, {})
        if message.thread_ts:
            out["thread_ts"] = message.thread_ts
            parent = siblings.get(message.thread_ts)
            if parent is not None and parent.user:
                out["parent_user_id"] = parent.user
        else:
            replies = sorted(
                (m for m in siblings.values() if m.thread_ts == message.ts),
                key=lambda m: Decimal(m.ts),
            )
            if replies:
                repliers = list(dict.fromkeys(r.user for r in replies if r.user))
                out.update(
                    thread_ts=message.ts,
                    reply_count=len(replies),
                    reply_users_count=len(repliers),
                    reply_users=repliers,
                    latest_reply=replies[-1].ts,
                )
        return out

    def _find(self, channel: str, ts: str) -> _Message:
        if channel not in self._channels:
            raise _SlackError("channel_not_found")
        message = self._channels[channel].get(ts)
        if message is None:
            raise _SlackError("message_not_found")
        return message

    def _bot_ids(self) -> tuple[str, str]:
        """(bot user id, bot id) of the bot making the current call."""
        if self._caller is not None:
            return self._caller.bot_user_id, self._caller.bot_id
        return self.bot_user_id, self.bot_id

    def _post(
        self,
        channel: str,
        *,
        text: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None,
        streaming: bool = False,
    ) -> _Message:
        root = self._thread_root(channel, thread_ts) if thread_ts else None
        message = _Message(
            ts=self._next_ts(),
            text=text,
            user=self._bot_ids()[0],
            bot_id=self._bot_ids()[1],
            thread_ts=root,
            blocks=blocks,
            streaming=streaming,
        )
        self._channels.setdefault(channel, {})[message.ts] = message
        if root is not None:
            # Slack clears the assistant status when the app replies in the thread.
            self._thread_status.pop((channel, root), None)
        return message

    # --- Web API methods -----------------------------------------------------------------

    def _api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"args": {k: v for k, v in params.items() if k != "token"}}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        caller = self._caller
        if caller is not None:
            return {
                "url": f"https://{caller.team_id.lower()}.slack.com/",
                "team": caller.team_name,
                "user": self.bot_name,
                "team_id": caller.team_id,
                "user_id": caller.bot_user_id,
                "bot_id": caller.bot_id,
                "is_enterprise_install": False,
            }
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _oauth_v2_access(self, params: dict[str, Any]) -> dict[str, Any]:
        """Exchange an install's ``code`` for its bot token, as Slack's ``oauth.v2.access``
        answers for an app that asks for bot scopes only."""
        client_id, client_secret = params.get("client_id"), params.get("client_secret")
        if self._basic_auth.startswith("Basic "):
            try:
                decoded = base64.b64decode(self._basic_auth.removeprefix("Basic ")).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise _SlackError("invalid_client_id") from None
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.client_id:
            raise _SlackError("invalid_client_id")
        if client_secret != self.client_secret:
            raise _SlackError("bad_client_secret")
        workspace = self._pending_codes.pop(_required(params, "code", error="invalid_code"), None)
        if workspace is None:
            raise _SlackError("invalid_code")
        self.workspaces[workspace.team_id] = workspace
        self._tokens[workspace.bot_token] = workspace
        self.add_user(workspace.bot_user_id, name=self.bot_name, is_bot=True)
        return {
            "app_id": self.app_id,
            "authed_user": {"id": workspace.installer_user_id},
            "scope": ",".join(self.granted_scopes or DEFAULT_BOT_SCOPES),
            "token_type": "bot",
            "access_token": workspace.bot_token,
            "bot_user_id": workspace.bot_user_id,
            "team": {"id": workspace.team_id, "name": workspace.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.socket_url}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(params)
        text, blocks = _message_content(params, self.unsupported_blocks)
        message = self._post(
            channel, text=text, blocks=blocks, thread_ts=_opt_str(params, "thread_ts")
        )
        return {"channel": channel, "ts": message.ts, "message": self._public(channel, message)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(params)
        message = self._find(channel, _required(params, "ts"))
        if message.bot_id != self._bot_ids()[1]:
            raise _SlackError("cant_update_message")
        text, blocks = _message_content(params, self.unsupported_blocks)
        # Slack keeps what an update leaves out: omitted blocks stay, omitted text stays.
        if "text" in params or "markdown_text" in params:
            message.text = text
        if blocks is not None:
            message.blocks = blocks or None
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": self._public(channel, message),
        }

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(params)
        message = self._find(channel, _required(params, "ts"))
        if message.bot_id != self._bot_ids()[1]:
            raise _SlackError("cant_delete_message")
        has_replies = any(m.thread_ts == message.ts for m in self._channels[channel].values())
        if has_replies:
            # A deleted parent stays as a tombstone so its thread remains reachable.
            message.text, message.blocks, message.subtype = (
                "This message was deleted.",
                None,
                "tombstone",
            )
        else:
            del self._channels[channel][message.ts]
        return {"channel": channel, "ts": message.ts}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(params)
        user = _required(params, "user", error="user_not_in_channel")
        text, blocks = _message_content(params, self.unsupported_blocks)
        ts = self._next_ts()
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "text": text,
                "blocks": blocks,
                "thread_ts": _opt_str(params, "thread_ts"),
                "ts": ts,
            }
        )
        return {"message_ts": ts}

    def _assistant_threads_set_status(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel_id", error="channel_not_found")
        thread_ts = _required(params, "thread_ts")
        status = params.get("status")
        if not isinstance(status, str):
            raise _SlackError("invalid_arguments")
        loading = params.get("loading_messages")
        if isinstance(loading, str):
            loading = [part for part in loading.split(",") if part]
        if loading is not None and (
            not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES
        ):
            raise _SlackError("invalid_arguments")  # assumed code for > 10 loading messages
        self.statuses.append(
            {
                "channel_id": channel,
                "thread_ts": thread_ts,
                "status": status,
                "loading_messages": loading,
            }
        )
        self._thread_status[(channel, thread_ts)] = status
        return {}

    def _assistant_threads_set_prompts(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel_id", error="channel_not_found")
        prompts = params.get("prompts")
        if (
            not isinstance(prompts, list)
            or not 1 <= len(prompts) <= MAX_SUGGESTED_PROMPTS
            or not all(
                isinstance(p, dict)
                and isinstance(p.get("title"), str)
                and p["title"]
                and isinstance(p.get("message"), str)
                and p["message"]
                for p in prompts
            )
        ):
            raise _SlackError("invalid_arguments")  # assumed code for a bad list
        thread_ts = _opt_str(params, "thread_ts")
        if thread_ts is not None and thread_ts not in self._channels.get(channel, {}):
            raise _SlackError("invalid_thread_ts")
        self.suggested_prompts.append(
            {
                "channel_id": channel,
                "thread_ts": thread_ts,
                "title": _opt_str(params, "title"),
                "prompts": copy.deepcopy(prompts),
            }
        )
        return {}

    def _assistant_threads_set_title(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel_id", error="channel_not_found")
        thread_ts = _required(params, "thread_ts", error="invalid_thread_ts")
        title = _required(params, "title", error="invalid_arguments")
        if thread_ts not in self._channels.get(channel, {}):
            raise _SlackError("invalid_thread_ts")
        self.titles[(channel, thread_ts)] = title
        return {}

    def _visible_channel(self, channel: str) -> dict[str, Any]:
        """``conversations.info``'s channel object as the bot token sees it."""
        granted = self.granted_scopes if self.granted_scopes is not None else DEFAULT_BOT_SCOPES
        private = channel in self.private_channels
        needed = "groups:read" if private else "channels:read"
        if _channel_type(channel) == "channel" and needed not in granted:
            raise _SlackError("missing_scope", needed=needed)
        members = self.members.get(channel)
        if members is None and channel not in self._channels:
            raise _SlackError("channel_not_found")
        is_member = members is not None and self._bot_ids()[0] in members
        if private and not is_member:
            raise _SlackError("channel_not_found")  # Slack hides private channels from outsiders
        return {
            "id": channel,
            "name": channel.lower(),
            "is_channel": not private and _channel_type(channel) == "channel",
            "is_private": private,
            "is_im": _channel_type(channel) == "im",
            "is_member": is_member,
        }

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self._visible_channel(_channel(params))}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(params)
        info = self._visible_channel(channel)
        if _channel_type(channel) == "channel" and not info["is_member"]:
            raise _SlackError("not_in_channel")
        top = sorted(
            (m for m in self._channels.get(channel, {}).values() if m.thread_ts is None),
            key=lambda m: Decimal(m.ts),
            reverse=True,  # newest first, as Slack answers
        )
        limit = max(1, min(_int_param(params, "limit", DEFAULT_REPLIES_LIMIT), MAX_REPLIES_LIMIT))
        start = 0
        cursor = params.get("cursor")
        if cursor:
            start = _decode_cursor(str(cursor), top)
        page = top[start : start + limit]
        has_more = start + limit < len(top)
        return {
            "messages": [self._public(channel, m) for m in page],
            "has_more": has_more,
            "response_metadata": {
                "next_cursor": _encode_cursor(top[start + limit].ts) if has_more else ""
            },
        }

    def _chat_start_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(params)
        thread_ts = _required(params, "thread_ts")
        if _channel_type(channel) != "im":
            if not params.get("recipient_team_id"):
                raise _SlackError("missing_recipient_team_id")
            if not params.get("recipient_user_id"):
                raise _SlackError("missing_recipient_user_id")
        mode = params.get("task_display_mode")
        if mode is not None and mode not in TASK_DISPLAY_MODES:
            raise _SlackError("invalid_arguments")  # assumed code
        chunks = _stream_chunks(params)
        text = _stream_text(params, chunks)
        message = self._post(channel, text=text, blocks=None, thread_ts=thread_ts, streaming=True)
        message.task_display_mode = mode
        _take_chunks(message, chunks)
        return {"channel": channel, "ts": message.ts}

    def _streaming_message(self, params: dict[str, Any]) -> tuple[str, _Message]:
        channel = _channel(params)
        message = self._find(channel, _required(params, "ts"))
        if message.stopped_by_user:
            raise _SlackError("stopped_by_user")
        if not message.streaming:
            raise _SlackError("message_not_in_streaming_state")
        return channel, message

    def _append_stream_text(self, message: _Message, text: str) -> None:
        if len(message.text) + len(text) > MAX_MARKDOWN_CHARS:
            raise _SlackError("msg_too_long")  # assumed code: the 12,000 limit is cumulative
        message.text += text

    def _chat_append_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._streaming_message(params)
        chunks = _stream_chunks(params)
        text = _stream_text(params, chunks)
        if not text and not chunks:
            raise _SlackError("invalid_arguments")  # markdown_text is required (or chunks)
        self._append_stream_text(message, text)
        _take_chunks(message, chunks)
        return {"channel": channel, "ts": message.ts}

    def _chat_stop_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._streaming_message(params)
        # Checked before anything changes: a refused stop leaves the stream as it was.
        blocks = _blocks(params["blocks"], self.unsupported_blocks) if "blocks" in params else None
        chunks = _stream_chunks(params)
        self._append_stream_text(message, _stream_text(params, chunks))
        _take_chunks(message, chunks)
        if blocks is not None:
            message.blocks = blocks
        message.streaming = False
        return {"channel": channel, "ts": message.ts, "message": self._public(channel, message)}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(params)
        ts = _required(params, "ts", error="thread_not_found")
        if channel not in self._channels:
            raise _SlackError("channel_not_found")
        target = self._channels[channel].get(ts)
        if target is None:
            raise _SlackError("thread_not_found")
        # Assumed: given a reply's ts, Slack answers with that reply alone.
        thread = [target] if target.thread_ts else self._thread(channel, ts)
        limit = _int_param(params, "limit", DEFAULT_REPLIES_LIMIT)
        limit = max(1, min(limit, MAX_REPLIES_LIMIT, self.replies_page_size or MAX_REPLIES_LIMIT))
        start = 0
        cursor = params.get("cursor")
        if cursor:
            start = _decode_cursor(str(cursor), thread)
        page = thread[start : start + limit]
        has_more = start + limit < len(thread)
        next_cursor = _encode_cursor(thread[start + limit].ts) if has_more else ""
        return {
            "messages": [self._public(channel, m) for m in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _reaction_target(self, params: dict[str, Any]) -> tuple[_Message, str]:
        channel = _channel(params)
        timestamp = _required(params, "timestamp", error="no_item_specified")
        name = _required(params, "name", error="invalid_name")
        return self._find(channel, timestamp), name.strip(":")

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(params)
        users = message.reactions.setdefault(name, [])
        if self._bot_ids()[0] in users:
            raise _SlackError("already_reacted")
        users.append(self._bot_ids()[0])
        return {}

    def _reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(params)
        users = message.reactions.get(name, [])
        if self._bot_ids()[0] not in users:
            raise _SlackError("no_reaction")
        users.remove(self._bot_ids()[0])
        if not users:
            del message.reactions[name]
        return {}

    def _users_conversations(self, params: dict[str, Any]) -> dict[str, Any]:
        bot_user = self._bot_ids()[0]
        user = _opt_str(params, "user") or bot_user
        types = (_opt_str(params, "types") or "public_channel").split(",")
        needed = {"public_channel": "channels:read", "private_channel": "groups:read"}
        granted = self.granted_scopes if self.granted_scopes is not None else DEFAULT_BOT_SCOPES
        for kind in types:
            if kind in needed and needed[kind] not in granted:
                raise _SlackError("missing_scope", needed=needed[kind])
        listed = []
        for channel, members in sorted(self.members.items()):
            private = channel in self.private_channels
            if (
                user not in members
                or ("private_channel" if private else "public_channel") not in types
            ):
                continue
            if private and bot_user not in members:
                continue  # Slack lists private channels only where the bot is a member too
            listed.append({"id": channel, "name": channel.lower(), "is_private": private})
        limit = max(1, min(_int_param(params, "limit", 100), MAX_CONVERSATIONS_LIMIT))
        start = int(params.get("cursor") or 0) if str(params.get("cursor") or "0").isdigit() else 0
        page = listed[start : start + limit]
        more = start + limit < len(listed)
        return {
            "channels": page,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(_required(params, "user", error="user_not_found"))
        if user is None:
            raise _SlackError("user_not_found")
        found = copy.deepcopy(user)
        if str(params.get("include_locale", "")).lower() not in {"true", "1"}:
            found.pop("locale", None)  # Slack sends it only when asked
        return {"user": found}

    def _store_view(self, view: Any, view_id: str | None = None) -> dict[str, Any]:
        if not isinstance(view, dict) or not isinstance(view.get("type"), str):
            raise _SlackError("invalid_arguments")
        problems = _view_problems(view)
        if problems:
            raise _SlackError("invalid_arguments", response_metadata={"messages": problems})
        view_id = view_id or f"V{next(self._view_ids):08d}"
        stored = {
            **copy.deepcopy(view),
            "id": view_id,
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": f"{time.time():.6f}.{secrets.token_hex(4)}",
        }
        self.views[view_id] = stored
        return {"view": copy.deepcopy(stored)}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "trigger_id", error="invalid_trigger_id")
        return self._store_view(params.get("view"))

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = _required(params, "user_id", error="user_not_found")
        existing = next(
            (
                v
                for v in self.views.values()
                if v.get("type") == "home" and v.get("user") == user_id
            ),
            None,
        )
        view = params.get("view")
        if isinstance(view, dict):
            view = {**view, "user": user_id}
        return self._store_view(view, existing["id"] if existing else None)

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = params.get("view_id")
        external_id = params.get("external_id")
        existing = self.views.get(str(view_id)) if view_id else None
        if existing is None and external_id:
            existing = next(
                (v for v in self.views.values() if v.get("external_id") == external_id), None
            )
        if existing is None:
            raise _SlackError("not_found")
        wanted_hash = params.get("hash")
        if wanted_hash and wanted_hash != existing["hash"]:
            raise _SlackError("hash_conflict")
        return self._store_view(params.get("view"), existing["id"])


# --- request parsing and validation (module level: no state) -------------------------------


async def _read_params(request: web.Request) -> tuple[dict[str, Any], str | None, str | None]:
    """Arguments, token and a parse error code (``None`` when the body was readable)."""
    params: dict[str, Any] = dict(request.query)
    parse_error: str | None = None
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body, parse_error = {}, "invalid_json"
            if isinstance(body, dict):
                params.update(body)
            else:
                parse_error = "invalid_json"
        else:
            form = await request.post()
            for key in form:
                value = form[key]
                params[key] = (
                    {"filename": value.filename} if isinstance(value, web.FileField) else value
                )
    for key in _STRUCTURED_ARGS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in "[{":
            # Left as a string when it is not JSON: the method's validation reports it.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    token = params.pop("token", None)
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        token = authorization.removeprefix("Bearer ").strip()
    return params, (str(token) if token else None), parse_error


def _channel_type(channel: str) -> str:
    return {"D": "im", "G": "group"}.get(channel[:1], "channel")


def _opt_str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return str(value) if value not in (None, "") else None


def _required(params: Mapping[str, Any], name: str, *, error: str = "invalid_arguments") -> str:
    value = _opt_str(params, name)
    if value is None:
        raise _SlackError(error)
    return value


def _channel(params: Mapping[str, Any]) -> str:
    return _required(params, "channel", error="channel_not_found")


def _int_param(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _SlackError("invalid_arguments") from None


def _encode_cursor(ts: str) -> str:
    # Slack's cursors are opaque base64 of "next_ts:<ts>"; clients must pass them back as-is.
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str, thread: list[_Message]) -> int:
    try:
        decoded = base64.b64decode(cursor, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _SlackError("invalid_cursor") from None
    prefix, _, ts = decoded.partition(":")
    for index, message in enumerate(thread):
        if prefix == "next_ts" and message.ts == ts:
            return index
    raise _SlackError("invalid_cursor")


def _invalid_blocks(reason: str) -> _SlackError:
    return _SlackError("invalid_blocks", errors=[reason])


def _blocks(raw: Any, unsupported: Collection[str] = ()) -> list[dict[str, Any]]:
    """Validate blocks against the limits Slack documents; return them decoded."""
    if not isinstance(raw, list) or not all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in raw
    ):
        raise _SlackError("invalid_blocks_format")
    if len(raw) > MAX_BLOCKS:
        raise _invalid_blocks(
            f"must contain no more than {MAX_BLOCKS} items [json-pointer:/blocks]"
        )
    markdown_total = 0
    for index, block in enumerate(raw):
        pointer = f"[json-pointer:/blocks/{index}/text]"
        kind = block["type"]
        if kind not in KNOWN_BLOCKS or kind in unsupported:
            raise _invalid_blocks(f"unsupported type: {kind} [json-pointer:/blocks/{index}/type]")
        if kind in ("actions", "context_actions"):
            _check_elements(block, index)
        if kind == "context":
            elements = block.get("elements")
            at = f"[json-pointer:/blocks/{index}/elements]"
            if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
                raise _invalid_blocks(f"must contain between 1 and {MAX_CONTEXT_ELEMENTS} {at}")
            for element in elements:
                text = element.get("text") if isinstance(element, dict) else None
                if isinstance(text, str) and len(text) > MAX_SECTION_TEXT_CHARS:
                    raise _invalid_blocks(f"must be less than 3001 characters {at}")
        if kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                raise _invalid_blocks(f"must be more than 0 characters {pointer}")
            if len(text) > MAX_MARKDOWN_CHARS:
                raise _invalid_blocks(
                    f"must be less than {MAX_MARKDOWN_CHARS + 1} characters {pointer}"
                )
            markdown_total += len(text)
        elif kind in ("section", "header"):
            limit = MAX_SECTION_TEXT_CHARS if kind == "section" else MAX_HEADER_TEXT_CHARS
            text_object = block.get("text")
            text = text_object.get("text") if isinstance(text_object, dict) else None
            if kind == "header" and not isinstance(text, str):
                raise _invalid_blocks(f"must provide a text object {pointer}")
            if isinstance(text, str) and len(text) > limit:
                raise _invalid_blocks(f"must be less than {limit + 1} characters {pointer}")
    if markdown_total > MAX_MARKDOWN_CHARS:
        raise _invalid_blocks(
            f"total markdown block text must be at most {MAX_MARKDOWN_CHARS} characters"
        )
    return copy.deepcopy(raw)


def _check_elements(block: Mapping[str, Any], index: int) -> None:
    """An ``actions`` or ``context_actions`` block's elements, as Slack checks them."""
    at = f"[json-pointer:/blocks/{index}/elements]"
    elements = block.get("elements")
    context_actions = block["type"] == "context_actions"
    allowed = CONTEXT_ACTION_ELEMENTS if context_actions else KNOWN_ACTION_ELEMENTS
    most = MAX_CONTEXT_ACTIONS if context_actions else 25
    if not isinstance(elements, list) or not 1 <= len(elements) <= most:
        raise _invalid_blocks(f"must contain between 1 and {most} items {at}")
    for number, element in enumerate(elements):
        kind = element.get("type") if isinstance(element, dict) else None
        if kind not in allowed:
            raise _invalid_blocks(f"unsupported type: {kind} {at[:-1]}/{number}/type]")
        if kind == "feedback_buttons":
            for side in ("positive_button", "negative_button"):
                button = element.get(side)
                text = (button or {}).get("text") if isinstance(button, dict) else None
                value = button.get("value") if isinstance(button, dict) else None
                if (
                    not isinstance(text, dict)
                    or text.get("type") != "plain_text"
                    or not 0 < len(str(text.get("text", ""))) <= MAX_FEEDBACK_TEXT_CHARS
                    or not isinstance(value, str)
                    or not 0 < len(value) <= MAX_BUTTON_VALUE_CHARS
                ):
                    raise _invalid_blocks(f"invalid {side} {at[:-1]}/{number}/{side}]")
        elif kind == "button":
            text = element.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                raise _invalid_blocks(f"must provide a text object {at[:-1]}/{number}/text]")
            if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE_CHARS:
                raise _invalid_blocks(f"value too long {at[:-1]}/{number}/value]")


def _view_problems(view: Mapping[str, Any]) -> list[str]:
    """What Slack would refuse in a view (the limits the settings modal and Home tab meet)."""
    problems: list[str] = []

    def problem(text: str, pointer: str) -> None:
        problems.append(f"[ERROR] {text} [json-pointer:/view{pointer}]")

    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return ["[ERROR] missing required field: blocks [json-pointer:/view/blocks]"]
    if len(blocks) > MAX_VIEW_BLOCKS:
        problem(f"must contain no more than {MAX_VIEW_BLOCKS} items", "/blocks")
    metadata = view.get("private_metadata")
    if isinstance(metadata, str) and len(metadata) > MAX_PRIVATE_METADATA_CHARS:
        problem(
            f"must be less than {MAX_PRIVATE_METADATA_CHARS + 1} characters", "/private_metadata"
        )
    title = (view.get("title") or {}).get("text")
    if isinstance(title, str) and len(title) > MAX_VIEW_TITLE_CHARS:
        problem(f"must be less than {MAX_VIEW_TITLE_CHARS + 1} characters", "/title/text")
    for index, block in enumerate(blocks):
        element = block.get("element") if isinstance(block, dict) else None
        if not isinstance(element, dict):
            continue
        at = f"/blocks/{index}/element"
        if element.get("type") == "plain_text_input":
            max_length = element.get("max_length", MAX_INPUT_CHARS)
            if not isinstance(max_length, int) or not 1 <= max_length <= MAX_INPUT_CHARS:
                problem(f"must be between 1 and {MAX_INPUT_CHARS}", f"{at}/max_length")
            initial = element.get("initial_value")
            if (
                isinstance(initial, str)
                and isinstance(max_length, int)
                and len(initial) > max_length
            ):
                problem(f"must be less than {max_length + 1} characters", f"{at}/initial_value")
        elif element.get("type") == "static_select":
            options = element.get("options") or []
            if len(options) > MAX_OPTIONS:
                problem(f"must contain no more than {MAX_OPTIONS} items", f"{at}/options")
            for number, option in enumerate(options):
                text = (option.get("text") or {}).get("text", "")
                if len(text) > MAX_OPTION_TEXT_CHARS:
                    problem(
                        f"must be less than {MAX_OPTION_TEXT_CHARS + 1} characters",
                        f"{at}/options/{number}/text/text",
                    )
                if len(str(option.get("value", ""))) > MAX_OPTION_VALUE_CHARS:
                    problem(
                        f"must be less than {MAX_OPTION_VALUE_CHARS + 1} characters",
                        f"{at}/options/{number}/value",
                    )
            initial = element.get("initial_option")
            if initial is not None and initial not in options:
                problem("must match one of the options", f"{at}/initial_option")
    return problems


def _message_content(
    params: Mapping[str, Any], unsupported: Collection[str] = ()
) -> tuple[str, list[dict[str, Any]] | None]:
    """``(text, blocks)`` of a post or update, checked against Slack's limits."""
    text = params.get("text")
    text = "" if text is None else str(text)
    markdown_text = params.get("markdown_text")
    if markdown_text not in (None, ""):
        if text or params.get("blocks"):
            raise _SlackError("markdown_text_conflict")  # assumed: markdown_text stands alone
        text = str(markdown_text)
        if len(text) > MAX_MARKDOWN_CHARS:
            raise _SlackError("msg_too_long")
    if len(text) > MAX_TEXT_CHARS:
        raise _SlackError("msg_too_long")
    blocks = _blocks(params["blocks"], unsupported) if params.get("blocks") is not None else None
    if not text and not blocks and not params.get("attachments"):
        raise _SlackError("no_text")
    return text, blocks


def _stream_chunks(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A stream call's ``chunks``, checked as Slack checks them (see the module docstring)."""
    chunks = params.get("chunks")
    if chunks is None:
        return []
    if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
        raise _SlackError("invalid_arguments")  # assumed code
    for chunk in chunks:
        fields = _CHUNK_FIELDS.get(str(chunk.get("type")))
        if fields is None:
            raise _SlackError("invalid_arguments")  # an unknown chunk type (assumed code)
        required, optional = fields
        present = chunk.keys() - {"type"}
        if not required <= present or present - required - optional:
            raise _SlackError("invalid_arguments")  # a missing or unknown field (assumed)
        if chunk["type"] == "task_update":
            _check_task(chunk)
        elif chunk["type"] == "blocks":
            _blocks(chunk["blocks"])
        elif not isinstance(chunk.get("text", chunk.get("title")), str):
            raise _SlackError("invalid_arguments")
    return copy.deepcopy(chunks)


def _check_task(chunk: Mapping[str, Any]) -> None:
    for name in ("id", "title"):
        if not isinstance(chunk[name], str) or not chunk[name].strip():
            raise _SlackError("invalid_arguments")
    if chunk["status"] not in TASK_STATUSES:
        raise _SlackError("invalid_arguments")
    for name in ("details", "output"):
        value = chunk.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TASK_TEXT_CHARS):
            raise _SlackError("invalid_arguments")
    sources = chunk.get("sources")
    if sources is None:
        return
    if not isinstance(sources, list):
        raise _SlackError("invalid_arguments")
    for source in sources:
        if (
            not isinstance(source, dict)
            or source.keys() != {"type", "url", "text"}
            or source["type"] != "url"
            or not isinstance(source["url"], str)
            or not source["url"].startswith(("http://", "https://"))
            or not isinstance(source["text"], str)
        ):
            raise _SlackError("invalid_arguments")


def _take_chunks(message: _Message, chunks: list[dict[str, Any]]) -> None:
    """The message shows what ``chunks`` carry: each task card at its latest state."""
    message.chunks.extend(chunks)
    for chunk in chunks:
        if chunk["type"] == "task_update":
            message.tasks[chunk["id"]] = {k: v for k, v in chunk.items() if k != "type"}


def _stream_text(params: Mapping[str, Any], chunks: list[dict[str, Any]]) -> str:
    """Markdown carried by a stream call: ``markdown_text`` and ``markdown_text`` chunks
    (slack_sdk's ``chat_stream`` helper sends only chunks)."""
    parts: list[str] = []
    markdown_text = params.get("markdown_text")
    if isinstance(markdown_text, str):
        parts.append(markdown_text)
    parts.extend(str(c["text"]) for c in chunks if c["type"] == "markdown_text")
    for part in parts:
        if len(part) > MAX_MARKDOWN_CHARS:
            raise _SlackError("msg_too_long")
    return "".join(parts)
