"""What the listeners need, built once by ``bot.slack.app.build_slack_app``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.oauth.installation_store.async_installation_store import (
    AsyncInstallationStore,
)

from bot.channel_settings import SettingsEditor
from bot.conversation import SettingsSource
from bot.metrics import Metrics
from bot.model_catalogue import ModelCatalogue
from bot.slack.accept import EventIntake
from bot.slack.admins import AdminPolicy
from bot.slack.approvals import SlackApprovals
from bot.slack.commands import SettingsCommands
from bot.slack.language import PersonLanguages
from bot.slack.membership import ChannelMembership
from bot.slack.workspaces import WorkspaceClients
from storage.assistant_threads import AssistantThreads
from storage.feedback import FeedbackStore

__all__ = ["Ack", "ListenerDeps", "Respond", "SettingsStore"]

Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]


class SettingsStore(Protocol):
    """What the Home tab reads."""

    async def list_channel_settings(self, *, team_id: str) -> list[Any]: ...

    async def list_settings_audit(
        self, *, team_id: str, channel_id: str | None = None, limit: int = 50
    ) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class ListenerDeps:
    workspaces: WorkspaceClients
    intake: EventIntake
    metrics: Metrics
    settings: SettingsSource
    commands: SettingsCommands
    editor: SettingsEditor
    admins: AdminPolicy
    catalogue: ModelCatalogue
    store: SettingsStore
    membership: ChannelMembership
    installations: AsyncInstallationStore | None = None
    """With a multi-workspace install: where the workspaces' tokens are kept."""
    pane_threads: AssistantThreads | None = None
    """Conversations in the assistant pane and their context (``storage.assistant_threads``)."""
    feedback: FeedbackStore | None = None
    """Votes on answers (``storage.feedback``)."""
    approvals: SlackApprovals | None = None
    """Tool calls waiting for the asker's yes (``bot.slack.approvals``)."""
    languages: PersonLanguages | None = None
    """The language to answer a person in (``bot.slack.language``); ``None``: English."""

    @property
    def default_team(self) -> str:
        """The workspace of a request that names none (single-workspace mode)."""
        return self.workspaces.default_team_id or ""
