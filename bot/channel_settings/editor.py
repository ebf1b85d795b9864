"""The one way settings change: the admin check, validation, the save and its audit record.

The slash command, the settings form and the CLI all call ``SettingsEditor``; none of them
checks, validates or saves on its own. A change made by a Slack user is allowed only to
workspace admins and owners and ``ADMIN_USER_IDS`` (checked here, on the server, against the
signed request's user); the CLI acts as the local operator, with no Slack check. Every value is
parsed and checked (range, layer, ``ALLOWED_MODELS``) before anything is written, and the
values and their audit rows are saved in one transaction by the store: never half-saved.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bot.channel_settings.kinds import InvalidSetting
from bot.channel_settings.schema import SCHEMA, WORKSPACE_DEFAULTS, Layer, Schema, Setting
from bot.i18n import t

__all__ = [
    "OPERATOR",
    "Actor",
    "InvalidSettings",
    "NotAllowed",
    "SettingsEditor",
    "WrongLayer",
    "layer_of",
    "parse_typed",
]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes settings: a Slack user (checked), or the local operator's CLI."""

    user_id: str | None
    """The Slack user; ``None`` for the operator."""

    @classmethod
    def slack(cls, user_id: str) -> Actor:
        return cls(user_id)

    @property
    def recorded_as(self) -> str:
        """What the audit trail names as the one who changed it."""
        return self.user_id if self.user_id is not None else "cli"


OPERATOR: Final = Actor(None)


class NotAllowed(Exception):
    """A Slack user who may not change settings tried to."""


class WrongLayer(InvalidSetting):
    """A setting given for a layer it may not live on; the surface says how to set it."""

    def __init__(self, setting: Setting, layer: Layer) -> None:
        self.setting = setting
        self.layer = layer
        if setting.workspace_only:
            super().__init__(t("{name} is a workspace setting", name=setting.name))
        else:
            super().__init__(t("{name} is a channel setting", name=setting.name))


class InvalidSettings(InvalidSetting):
    """One or more values were refused; ``errors`` maps each setting to its message."""

    def __init__(self, errors: Mapping[str, InvalidSetting]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(str(e) for e in errors.values()))


def parse_typed(
    schema: Schema,
    typed: Mapping[str, str | None],
    *,
    layer: Layer,
    own: Mapping[str, Any] | None = None,
    allowed_models: Collection[str] = (),
) -> dict[str, Any]:
    """The values ``typed`` for ``layer`` (``None``: inherit), or ``InvalidSettings`` naming
    every refused one. ``own`` is what the layer has now: a value it already has passes even
    where ``ALLOWED_MODELS`` no longer lists it (keeping it is no change). Without ``own`` the
    allow-list is not applied: that needs the stored layer (``SettingsEditor.change``)."""
    values: dict[str, Any] = {}
    errors: dict[str, InvalidSetting] = {}
    for name, raw in typed.items():
        setting = schema.find(name)
        try:
            if raw is None:
                values[setting.name] = None
                continue
            if not setting.allowed_on(layer):
                raise WrongLayer(setting, layer)
            value = setting.parse(raw)
            if own is not None and value != own.get(setting.name):
                value = setting.parse(raw, allowed_models=allowed_models)
            values[setting.name] = value
        except InvalidSetting as exc:
            errors[setting.name] = exc
    if errors:
        raise InvalidSettings(errors)
    return values


def layer_of(channel_id: str) -> Layer:
    """The layer a channel id names (``""``: the workspace's defaults)."""
    return "workspace" if channel_id == WORKSPACE_DEFAULTS else "channel"


class AdminCheck(Protocol):
    async def may_change(self, user_id: str, *, team_id: str) -> bool: ...


class SettingsWriter(Protocol):
    async def get_channel_settings(self, *, team_id: str, channel_id: str) -> Any: ...

    async def update_channel_settings(
        self, *, team_id: str, channel_id: str, values: Mapping[str, object], updated_by: str | None
    ) -> Any: ...

    async def reset_channel_settings(
        self,
        *,
        team_id: str,
        channel_id: str,
        fields: Sequence[str] | None = None,
        updated_by: str | None = None,
    ) -> Any: ...


class SettingsEditor:
    def __init__(
        self,
        *,
        store: SettingsWriter,
        admins: AdminCheck | None,
        allowed_models: Collection[str] | Callable[[], Collection[str]] = (),
        schema: Schema = SCHEMA,
    ) -> None:
        """``admins`` is ``None`` only where no Slack user can act (the CLI)."""
        self._store = store
        self._admins = admins
        self._allowed = allowed_models
        self.schema = schema

    @property
    def allowed_models(self) -> Collection[str]:
        return self._allowed() if callable(self._allowed) else self._allowed

    async def may_edit(self, actor: Actor, *, team_id: str) -> bool:
        if actor.user_id is None:
            return True
        if self._admins is None:
            return False  # fail closed: nobody told this editor how to check a Slack user
        return await self._admins.may_change(actor.user_id, team_id=team_id)

    async def change(
        self,
        actor: Actor,
        *,
        team_id: str,
        channel_id: str,
        typed: Mapping[str, str | None],
    ) -> dict[str, Any]:
        """Change the settings of one layer (``channel_id=""``: the workspace's defaults) to
        what was ``typed`` (``None``: back to inherit); returns the values saved.

        Raises ``NotAllowed``, or ``InvalidSettings`` naming every refused value (nothing is
        saved then). A value the layer already has passes even where ``ALLOWED_MODELS`` no
        longer lists it: keeping it is no change.
        """
        if not await self.may_edit(actor, team_id=team_id):
            raise NotAllowed(actor.user_id)
        current = await self._store.get_channel_settings(team_id=team_id, channel_id=channel_id)
        values = self.parse(
            typed, layer=layer_of(channel_id), own={} if current is None else current.values
        )
        await self._store.update_channel_settings(
            team_id=team_id, channel_id=channel_id, values=values, updated_by=actor.recorded_as
        )
        return values

    def parse(
        self,
        typed: Mapping[str, str | None],
        *,
        layer: Layer,
        own: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``parse_typed`` with this editor's schema and allow-list."""
        return parse_typed(
            self.schema, typed, layer=layer, own=own, allowed_models=self.allowed_models
        )

    async def reset(
        self,
        actor: Actor,
        *,
        team_id: str,
        channel_id: str,
        names: Sequence[str] | None = None,
    ) -> list[str] | None:
        """Put ``names`` (``None``: all) of one layer back to inherit; returns the names."""
        if not await self.may_edit(actor, team_id=team_id):
            raise NotAllowed(actor.user_id)
        fields = None if names is None else [self.schema.find(name).name for name in names]
        await self._store.reset_channel_settings(
            team_id=team_id, channel_id=channel_id, fields=fields, updated_by=actor.recorded_as
        )
        return fields
