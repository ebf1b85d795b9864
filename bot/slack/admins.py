"""Who may change settings: workspace admins and owners (``users.info``), and
``ADMIN_USER_IDS``. Checked on the server for every change, whatever the payload claims.

``users.info`` answers come through the shared ``UserDirectory``: cached for a few minutes
per workspace (a settings session asks several times within seconds, and a demoted admin
loses rights within minutes) and coalesced (one call in flight per person).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from bot.i18n import t
from bot.slack.users import UserDirectory, UserLookupFailed
from bot.slack.workspaces import WorkspaceClients

__all__ = ["AdminPolicy"]

logger = logging.getLogger(__name__)


class AdminPolicy:
    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        admin_user_ids: Iterable[str] = (),
        users: UserDirectory | None = None,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listed = frozenset(admin_user_ids)
        self._users = users or UserDirectory(workspaces, ttl=ttl, clock=clock)

    @property
    def listed(self) -> frozenset[str]:
        return self._listed

    async def may_change(self, user_id: str, *, team_id: str) -> bool:
        """Whether ``user_id`` may change settings in workspace ``team_id`` (asked with that
        workspace's bot token)."""
        if user_id in self._listed:
            return True
        try:
            user = await self._users.info(user_id, team_id=team_id)
        except UserLookupFailed as failed:
            # Fail closed: without an answer from Slack nobody outside ADMIN_USER_IDS may change.
            logger.warning("users.info failed while checking an admin: %s", failed.reason)
            return False
        return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))

    def who_can_change(self) -> str:
        """The sentence a refused user reads."""
        people = ", ".join(f"<@{u}>" for u in sorted(self._listed))
        if people:
            return t(
                "Workspace admins and owners, and {people}, can change these settings.",
                people=people,
            )
        return t("Workspace admins and owners can change these settings.")
