"""Which bot token, Web API client and bot identity belong to a workspace (team).

Two sources:
- single-workspace mode (``SLACK_BOT_TOKEN``): one token, one identity, whatever the team;
- multi-workspace install (``SLACK_CLIENT_ID`` + ``SLACK_CLIENT_SECRET``): each team's bot
  token from slack_sdk's installation store, written by the OAuth flow. Clients and identities
  are cached per team; ``forget(team_id)`` drops them (uninstall, revoked tokens).

A team with no installation raises ``WorkspaceNotInstalled`` (a ``DeliveryError``: a turn that
cannot reach Slack ends like any other delivery failure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import NotInstalledError
from bot.slack.identity import BotIdentity

__all__ = ["WorkspaceClients", "WorkspaceNotInstalled"]

ClientFactory = Callable[..., AsyncWebClient]
"""``factory(token, retry_rate_limits=...)`` → a configured client for that token."""


class WorkspaceNotInstalled(NotInstalledError):
    """No token for this workspace: it never installed the app, or uninstalled it."""


@dataclass(frozen=True)
class _Workspace:
    token: str
    identity: BotIdentity
    client: AsyncWebClient
    stream_client: AsyncWebClient


class WorkspaceClients:
    """See the module docstring. Build with ``single(...)`` or ``installed(...)``."""

    def __init__(
        self,
        *,
        factory: ClientFactory,
        fixed: _Workspace | None = None,
        installation_store: AsyncInstallationStore | None = None,
    ) -> None:
        self._factory = factory
        self._fixed = fixed
        self._store = installation_store
        self._cache: dict[str, _Workspace] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def single(
        cls,
        *,
        token: str,
        identity: BotIdentity,
        client: AsyncWebClient,
        stream_client: AsyncWebClient,
    ) -> WorkspaceClients:
        """Single-workspace mode: the configured token serves every team id."""
        fixed = _Workspace(token, identity, client, stream_client)
        return cls(factory=lambda *_, **__: client, fixed=fixed)

    @classmethod
    def installed(
        cls, *, installation_store: AsyncInstallationStore, factory: ClientFactory
    ) -> WorkspaceClients:
        """Multi-workspace install: tokens from ``installation_store``."""
        return cls(factory=factory, installation_store=installation_store)

    @property
    def multi(self) -> bool:
        return self._fixed is None

    @property
    def default_team_id(self) -> str | None:
        """The one workspace of single-workspace mode; ``None`` with installations."""
        return self._fixed.identity.team_id if self._fixed is not None else None

    async def client(self, team_id: str) -> AsyncWebClient:
        return (await self._workspace(team_id)).client

    async def stream_client(self, team_id: str) -> AsyncWebClient:
        """The client for native streaming: 429s are not retried (the caller falls back)."""
        return (await self._workspace(team_id)).stream_client

    async def identity(self, team_id: str) -> BotIdentity:
        return (await self._workspace(team_id)).identity

    async def token(self, team_id: str) -> str:
        return (await self._workspace(team_id)).token

    def forget(self, team_id: str) -> None:
        """Drop the team's cached token and clients (the next call reads the store again)."""
        self._cache.pop(team_id, None)

    async def _workspace(self, team_id: str) -> _Workspace:
        if self._fixed is not None:
            return self._fixed
        cached = self._cache.get(team_id)
        if cached is not None:
            return cached
        assert self._store is not None
        async with self._lock:
            cached = self._cache.get(team_id)
            if cached is not None:
                return cached
            bot = await self._store.async_find_bot(enterprise_id=None, team_id=team_id)
            if bot is None or not bot.bot_token:
                raise WorkspaceNotInstalled(team_id)
            workspace = _Workspace(
                token=bot.bot_token,
                identity=BotIdentity(
                    user_id=bot.bot_user_id, bot_id=bot.bot_id, team_id=bot.team_id or team_id
                ),
                client=self._factory(bot.bot_token),
                stream_client=self._factory(bot.bot_token, retry_rate_limits=False),
            )
            self._cache[team_id] = workspace
            return workspace
