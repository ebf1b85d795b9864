"""Multi-workspace install: Bolt's OAuth flow on the service's own database.

With ``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET`` set, ``GET /slack/install`` starts Slack's
OAuth flow and ``GET /slack/oauth_redirect`` finishes it; each workspace's bot token is saved by
slack_sdk's ``AsyncSQLAlchemyInstallationStore`` and the one-time ``state`` values by its
``AsyncSQLAlchemyOAuthStateStore``, both on the service's async engine (the same database as
everything else). Their tables (``slack_installations``, ``slack_bots``,
``slack_oauth_states``) are created at start-up by slack_sdk's own ``create_tables()``, not by
the Alembic migrations, which ignore them.

With ``SLACK_STATE_SECRET`` set as well, every ``state`` also carries an HMAC of itself, so a
forged or foreign state is refused before the database is asked.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "BOT_SCOPES",
    "OAUTH_INSTALL_PATH",
    "OAUTH_REDIRECT_PATH",
    "SignedStateStore",
    "build_oauth_settings",
]

OAUTH_INSTALL_PATH = "/slack/install"
OAUTH_REDIRECT_PATH = "/slack/oauth_redirect"
OAUTH_STATE_SECONDS = 600

# The bot scopes of slack-app-manifest.yaml (a test keeps the two equal).
BOT_SCOPES = (
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
)


class SignedStateStore(AsyncOAuthStateStore):
    """Wraps a state store: issued states are ``{state}.{hmac}``; consuming checks the HMAC
    (constant time) before the wrapped store."""

    def __init__(self, inner: AsyncOAuthStateStore, secret: str) -> None:
        self._inner = inner
        self._secret = secret.encode()

    @property
    def logger(self) -> Any:
        return self._inner.logger

    def _mac(self, state: str) -> str:
        return hmac.new(self._secret, state.encode(), hashlib.sha256).hexdigest()

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = await self._inner.async_issue(*args, **kwargs)
        return f"{state}.{self._mac(state)}"

    async def async_consume(self, state: str) -> bool:
        inner, _, mac = state.rpartition(".")
        if not inner or not hmac.compare_digest(mac, self._mac(inner)):
            return False
        return await self._inner.async_consume(inner)


async def build_oauth_settings(
    *,
    client_id: str,
    client_secret: str,
    engine: AsyncEngine,
    state_secret: str | None = None,
) -> AsyncOAuthSettings:
    """Bolt's OAuth settings with both stores on ``engine``; creates their tables."""
    installations = AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=engine)
    database_states = AsyncSQLAlchemyOAuthStateStore(
        expiration_seconds=OAUTH_STATE_SECONDS, engine=engine
    )
    await installations.create_tables()  # type: ignore[no-untyped-call]
    await database_states.create_tables()  # type: ignore[no-untyped-call]
    states: AsyncOAuthStateStore = database_states
    if state_secret:
        states = SignedStateStore(database_states, state_secret)
    return AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        installation_store=installations,
        installation_store_bot_only=True,
        state_store=states,
        state_expiration_seconds=OAUTH_STATE_SECONDS,
        install_path=OAUTH_INSTALL_PATH,
        redirect_uri_path=OAUTH_REDIRECT_PATH,
    )
