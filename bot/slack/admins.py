"""Who may change settings: workspace admins and owners (``users.info``), and
``ADMIN_USER_IDS``. Checked on the server for every change, whatever the payload claims.

``users.info`` answers are cached for a few minutes: a settings session (command, modal,
submission) asks several times within seconds, and a demoted admin loses rights within minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.workspaces import WorkspaceClients, WorkspaceNotInstalled

__all__ = ["AdminPolicy"]

logger = logging.getLogger(__name__)


class AdminPolicy:
    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        admin_user_ids: Iterable[str] = (),
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspaces = workspaces
        self._listed = frozenset(admin_user_ids)
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}

    @property
    def listed(self) -> frozenset[str]:
        return self._listed

    async def may_change(self, user_id: str, *, team_id: str) -> bool:
        """Whether ``user_id`` may change settings in workspace ``team_id`` (asked with that
        workspace's bot token)."""
        if user_id in self._listed:
            return True
        cached = self._cache.get((team_id, user_id))
        now = self._clock()
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            client = await self._workspaces.client(team_id)
            response = await client.users_info(user=user_id)
        except (SlackApiError, SlackClientError, WorkspaceNotInstalled) as exc:
            # Fail closed: without an answer from Slack nobody outside ADMIN_USER_IDS may change.
            reason = (
                exc.response.get("error") if isinstance(exc, SlackApiError) else None
            ) or type(exc).__name__
            logger.warning("users.info failed while checking an admin: %s", reason)
            return False
        user = response.get("user") or {}
        allowed = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        self._cache[(team_id, user_id)] = (now, allowed)
        return allowed

    def who_can_change(self) -> str:
        """The sentence a refused user reads."""
        people = ", ".join(f"<@{u}>" for u in sorted(self._listed))
        if people:
            return f"Workspace admins and owners, and {people}, can change these settings."
        return "Workspace admins and owners can change these settings."
