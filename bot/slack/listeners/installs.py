"""Install lifecycle (multi-workspace installs only). One guarantee: a workspace that removes
the app, or revokes its bot token, has its tokens deleted and forgotten; revoked user tokens
delete only those users' installations.

Events: Bolt acknowledges them before these listeners run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.deps import ListenerDeps

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    installations = deps.installations
    if installations is None:
        return  # single workspace: the token comes from the environment

    async def forget_workspace(body: Mapping[str, Any], *, user_ids: list[str]) -> None:
        team_id = str(body.get("team_id") or "")
        enterprise_id = body.get("enterprise_id") or None
        if not team_id:
            return
        if user_ids:  # only user tokens were revoked: the bot stays
            for user_id in user_ids:
                await installations.async_delete_installation(
                    enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
                )
            return
        await installations.async_delete_all(enterprise_id=enterprise_id, team_id=team_id)
        deps.workspaces.forget(team_id)
        logger.info("workspace tokens deleted", extra={"team": team_id})

    @app.event("app_uninstalled")
    async def on_app_uninstalled(body: dict[str, Any]) -> None:
        """The app was removed from a workspace: its tokens are deleted and forgotten."""
        deps.metrics.events_received.labels(type="app_uninstalled").inc()
        await forget_workspace(body, user_ids=[])

    @app.event("tokens_revoked")
    async def on_tokens_revoked(body: dict[str, Any], event: dict[str, Any]) -> None:
        """Revoked bot tokens delete the workspace's installation; revoked user tokens
        delete only those users' installations."""
        deps.metrics.events_received.labels(type="tokens_revoked").inc()
        tokens = event.get("tokens") or {}
        if tokens.get("bot"):
            await forget_workspace(body, user_ids=[])
        else:
            users = [str(u) for u in tokens.get("oauth") or [] if u]
            if users:
                await forget_workspace(body, user_ids=users)
