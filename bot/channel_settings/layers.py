"""Effective settings: the environment's defaults < the workspace's defaults < the channel.

A stored ``None`` means "inherit from the layer below"; a setting that may not live on a layer
(a workspace-only budget on a channel row) is never read from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.channel_settings.schema import SCHEMA, WORKSPACE_DEFAULTS, Layer, Schema

__all__ = ["EffectiveSettings", "SettingsRow", "StoredChannelSettings", "resolve"]

LayerName = str
"""``default`` (the environment), ``workspace`` or ``channel``."""


@dataclass(frozen=True, slots=True)
class EffectiveSettings:
    """What a turn uses, and where each value came from: ``sources[name]`` is ``channel``,
    ``workspace``, ``default`` (the environment) or ``unset``. Values are read by name:
    ``effective.value("model")`` or ``effective.model``."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def value(self, name: str) -> Any:
        return self.values[name]

    def own(self, name: str) -> Any:
        """The channel's own value of ``name`` (``None`` when it inherits)."""
        return self.values[name] if self.sources[name] == "channel" else None

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: the settings themselves.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def resolve(
    layers: Sequence[tuple[LayerName, Mapping[str, Any] | None]], *, schema: Schema = SCHEMA
) -> EffectiveSettings:
    """Resolve layers listed from lowest to highest priority, e.g. ``[("default", …),
    ("channel", …)]``: the highest layer with a non-``None`` value wins."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in schema:
        values[setting.name] = None
        sources[setting.name] = "unset"
        for layer_name, layer in layers:
            if layer_name in ("channel", "workspace") and not setting.allowed_on(
                _layer(layer_name)
            ):
                continue  # e.g. a channel cannot loosen the workspace's own limits
            if layer is not None and layer.get(setting.name) is not None:
                values[setting.name] = layer[setting.name]
                sources[setting.name] = layer_name
    return EffectiveSettings(values=values, sources=sources)


def _layer(name: str) -> Layer:
    return "channel" if name == "channel" else "workspace"


class SettingsRow(Protocol):
    """A stored layer (``storage.ChannelSettingsRecord``): its values by setting name."""

    @property
    def values(self) -> Mapping[str, Any]: ...


class _SettingsReader(Protocol):
    async def get_channel_settings(self, *, team_id: str, channel_id: str) -> Any: ...


class StoredChannelSettings:
    """Effective settings of a channel, read from the store on every call (a change takes
    effect at the next turn)."""

    def __init__(
        self, *, store: _SettingsReader, schema: Schema = SCHEMA, **environment: Any
    ) -> None:
        """``environment``: the values of the ``Settings`` fields the schema's defaults name
        (``default_model=…, default_instructions=…``)."""
        self._store = store
        self._schema = schema
        self._defaults = schema.defaults(environment)

    @classmethod
    def from_environment(
        cls, *, store: _SettingsReader, environment: object, schema: Schema = SCHEMA
    ) -> StoredChannelSettings:
        """Read the defaults the schema names from ``environment`` (a ``Settings``)."""
        values = {name: getattr(environment, name) for name in schema.environment_names()}
        return cls(store=store, schema=schema, **values)

    async def effective(self, *, team_id: str, channel_id: str) -> EffectiveSettings:
        workspace = await self._store.get_channel_settings(
            team_id=team_id, channel_id=WORKSPACE_DEFAULTS
        )
        channel = (
            None
            if channel_id == WORKSPACE_DEFAULTS
            else await self._store.get_channel_settings(team_id=team_id, channel_id=channel_id)
        )
        return resolve(
            [
                ("default", self._defaults),
                ("workspace", _values(workspace)),
                ("channel", _values(channel)),
            ],
            schema=self._schema,
        )


def _values(row: SettingsRow | None) -> Mapping[str, Any] | None:
    return None if row is None else row.values
