"""Effective settings for a channel: environment defaults < workspace defaults < channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Protocol

from bot.channel_config import FIELDS, EffectiveSettings, env_defaults, resolve
from storage.repositories import ChannelSettingsRecord

__all__ = ["WORKSPACE_DEFAULTS", "StoredChannelSettings"]

# The workspace-default row is stored under this channel id (see storage.models).
WORKSPACE_DEFAULTS = ""


class _SettingsStore(Protocol):
    async def get_channel_settings(
        self, *, team_id: str, channel_id: str
    ) -> ChannelSettingsRecord | None: ...


def _values(record: ChannelSettingsRecord | None) -> Mapping[str, Any] | None:
    if record is None:
        return None
    data = asdict(record)
    return {name: data.get(name) for name in FIELDS}


class StoredChannelSettings:
    def __init__(
        self,
        *,
        store: _SettingsStore,
        default_model: str,
        default_instructions: str,
        conversation_state: str = "auto",
    ) -> None:
        self._store = store
        self._defaults = env_defaults(
            default_model=default_model,
            default_instructions=default_instructions,
            conversation_state=conversation_state,
        )

    async def effective(self, *, team_id: str, channel_id: str) -> EffectiveSettings:
        workspace = await self._store.get_channel_settings(
            team_id=team_id, channel_id=WORKSPACE_DEFAULTS
        )
        channel = await self._store.get_channel_settings(team_id=team_id, channel_id=channel_id)
        return resolve(
            [
                ("default", self._defaults),
                ("workspace", _values(workspace)),
                ("channel", _values(channel)),
            ]
        )
