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

``/slack/install`` is open to anyone and writes a state row per visit, and slack_sdk's store
never deletes a state nobody came back with. ``BoundedStateStore`` keeps that table bounded:
before each new state it deletes the expired ones and, past ``MAX_PENDING_STATES`` pending,
the oldest (a flood can then only make an install in progress start over, never fill the
database).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "BOT_SCOPES",
    "MAX_PENDING_STATES",
    "OAUTH_INSTALL_PATH",
    "OAUTH_REDIRECT_PATH",
    "BoundedStateStore",
    "SignedStateStore",
    "build_oauth_settings",
]

OAUTH_INSTALL_PATH = "/slack/install"
OAUTH_REDIRECT_PATH = "/slack/oauth_redirect"
OAUTH_STATE_SECONDS = 600
MAX_PENDING_STATES = 1_000
"""Installs in progress at once (far more than any workspace needs)."""

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
    "channels:read",
    "groups:read",
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


class BoundedStateStore(AsyncOAuthStateStore):
    """slack_sdk's SQLAlchemy state store, kept to at most ``max_pending`` live states."""

    def __init__(self, inner: AsyncSQLAlchemyOAuthStateStore, *, max_pending: int) -> None:
        self._inner = inner
        self._max_pending = max(1, max_pending)

    @property
    def logger(self) -> Any:
        return self._inner.logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        await self.prune()
        return await self._inner.async_issue(*args, **kwargs)

    async def async_consume(self, state: str) -> bool:
        return await self._inner.async_consume(state)

    async def prune(self) -> int:
        """Delete expired states, then the oldest beyond ``max_pending - 1`` (room for one
        more); returns how many rows went."""
        table = self._inner.oauth_states
        # slack_sdk stores naive UTC datetimes (its normalize_datetime_for_db).
        now = datetime.now(UTC).replace(tzinfo=None)
        async with self._inner.engine.begin() as connection:
            expired = await connection.execute(table.delete().where(table.c.expire_at <= now))
            pending = await connection.scalar(select(func.count()).select_from(table)) or 0
            excess = pending - (self._max_pending - 1)
            evicted = 0
            if excess > 0:
                oldest = select(table.c.id).order_by(table.c.id).limit(excess)
                result = await connection.execute(table.delete().where(table.c.id.in_(oldest)))
                evicted = int(result.rowcount)
        return int(expired.rowcount) + evicted


async def build_oauth_settings(
    *,
    client_id: str,
    client_secret: str,
    engine: AsyncEngine,
    state_secret: str | None = None,
    max_pending_states: int | None = None,
) -> AsyncOAuthSettings:
    """Bolt's OAuth settings with both stores on ``engine``; creates their tables.
    ``max_pending_states`` defaults to ``MAX_PENDING_STATES``."""
    installations = AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=engine)
    database_states = AsyncSQLAlchemyOAuthStateStore(
        expiration_seconds=OAUTH_STATE_SECONDS, engine=engine
    )
    await installations.create_tables()  # type: ignore[no-untyped-call]
    await database_states.create_tables()  # type: ignore[no-untyped-call]
    states: AsyncOAuthStateStore = BoundedStateStore(
        database_states,
        max_pending=MAX_PENDING_STATES if max_pending_states is None else max_pending_states,
    )
    if state_secret:
        states = SignedStateStore(states, state_secret)
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
