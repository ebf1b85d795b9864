"""The slash command (``SLACK_COMMAND``, default ``/ai``) in the contract's grammar:

    /ai | /ai config                open the settings modal (admins)
    /ai config default              open it for the workspace defaults (admins)
    /ai show                        the channel's effective settings and where each comes from
    /ai set FIELD VALUE             change a channel setting (admins)
    /ai set default FIELD VALUE     change a workspace default (admins)
    /ai reset [FIELD]               back to the defaults (admins)
    /ai reset default [FIELD]       clear workspace defaults (admins)
    /ai history                     who changed what in this channel
    /ai usage                       tokens (and estimated cost) used in this channel, and the
                                    👍/👎 its answers got, per model
    /ai usage workspace             the same for the whole workspace (admins), 👍/👎 per
                                    channel and per model
    /ai help

Answers are short and ephemeral, in the asker's language (``bot.i18n``; the listener sets it).
Every change is checked against the signed request's user on
the server, validated and saved (with its audit rows, in one transaction) by
``bot.channel_settings.SettingsEditor``, the same service the CLI and the modal use; an
invalid value saves nothing. The fields, their help and their ranges come from the schema.
Slack HTML-escapes ``&``, ``<`` and ``>`` in command text; that is undone once, so a value is
stored as it was typed, and escaped again wherever a value is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.channel_settings import (
    SCHEMA,
    WORKSPACE_DEFAULTS,
    Actor,
    EffectiveSettings,
    InvalidSetting,
    Layer,
    NotAllowed,
    Schema,
    SettingsEditor,
    WrongLayer,
    show_value,
)
from bot.conversation import SettingsSource
from bot.i18n import N_, shown_default, t, tn
from bot.model_catalogue import ModelCatalogue
from bot.pricing import ModelPrice, estimate_cost, format_cost
from bot.slack.admins import AdminPolicy
from bot.slack.escaping import escape, unescape
from bot.usage_report import tool_call_lines
from storage.records import FeedbackCount, FeedbackGrouping, ToolCallCount
from storage.repositories import (
    SettingsAuditRecord,
    UsageCounts,
    UsageGrouping,
    UsageRow,
)

__all__ = ["CommandResult", "SettingsCommands"]


_HELP = (
    N_("`{command}` or `{command} config`: open the settings form (admins)"),
    N_("`{command} config default`: open the form for the workspace defaults (admins)"),
    N_("`{command} show`: the effective settings and where each comes from"),
    N_("`{command} set FIELD VALUE`: change this channel's setting (admins)"),
    N_("`{command} set default FIELD VALUE`: change the workspace default (admins)"),
    N_("`{command} reset [FIELD]` / `{command} reset default [FIELD]`: back to the defaults"),
    N_("`{command} history`: who changed what here; `{command} usage`: tokens used here"),
    N_("`{command} usage workspace`: tokens used in the whole workspace (admins)"),
)
"""The help's lines about the grammar (catalogue texts; ``{command}`` is SLACK_COMMAND)."""

_SOURCE_WORDS = {
    "channel": N_("set for this channel"),
    "workspace": N_("workspace default"),
    "default": N_("service default"),
    "unset": N_("model's own default"),
}


class _Store(Protocol):
    async def get_channel_settings(self, *, team_id: str, channel_id: str) -> Any: ...

    async def update_channel_settings(
        self, *, team_id: str, channel_id: str, values: Any, updated_by: str | None
    ) -> Any: ...

    async def reset_channel_settings(
        self,
        *,
        team_id: str,
        channel_id: str,
        fields: Any = None,
        updated_by: str | None = None,
    ) -> Any: ...

    async def list_settings_audit(
        self, *, team_id: str, channel_id: str | None = None, limit: int = 50
    ) -> list[SettingsAuditRecord]: ...

    async def usage_since(
        self,
        *,
        since: datetime,
        by: UsageGrouping,
        team_id: str | None = None,
        channel_id: str | None = None,
    ) -> list[UsageRow]: ...

    async def feedback_since(
        self,
        *,
        since: datetime,
        by: FeedbackGrouping,
        team_id: str | None = None,
        channel_id: str | None = None,
    ) -> list[FeedbackCount]: ...

    async def tool_calls_since(
        self, *, team_id: str, since: datetime, channel_id: str | None = None
    ) -> list[ToolCallCount]: ...


@dataclass(frozen=True, slots=True)
class CommandResult:
    text: str = ""
    open_modal: bool = False
    layer: Layer = "channel"
    """The layer the modal edits (``config default``: the workspace's defaults)."""


class SettingsCommands:
    def __init__(
        self,
        *,
        command: str,
        store: _Store,
        settings: SettingsSource,
        admins: AdminPolicy,
        catalogue: ModelCatalogue,
        prices: Mapping[str, ModelPrice] | None = None,
        schema: Schema = SCHEMA,
    ) -> None:
        self.command = command
        self._store = store
        self._settings = settings
        self._admins = admins
        self._prices: Mapping[str, ModelPrice] = prices or {}
        self.schema = schema
        self.editor = SettingsEditor(
            store=store, admins=admins, allowed_models=lambda: catalogue.allowed, schema=schema
        )
        """The one validate-and-save service; the settings form uses it too."""

    async def handle(
        self, *, text: str, team_id: str, channel_id: str, user_id: str
    ) -> CommandResult:
        words = unescape(text).strip().split(maxsplit=1)
        verb = words[0].lower() if words else "config"
        rest = words[1] if len(words) > 1 else ""
        actor = Actor.slack(user_id)
        if verb == "config":
            layer, extra = _layer(rest)
            if extra:
                return CommandResult(
                    t(
                        "I don't know `{command} config {what}`: use `{command} config` or "
                        "`{command} config default`.",
                        command=self.command,
                        what=rest.strip(),
                    )
                )
            if not await self.editor.may_edit(actor, team_id=team_id):
                return CommandResult(await self._refusal(team_id, channel_id))
            return CommandResult(open_modal=True, layer=layer)
        if verb == "show":
            return CommandResult(await self.show(team_id, channel_id))
        if verb == "help":
            return CommandResult(self.help())
        if verb == "history":
            return CommandResult(await self._history(team_id, channel_id))
        if verb == "usage":
            scope = rest.strip().lower()
            if scope in {"workspace", "all"}:
                if not await self._admins.may_change(user_id, team_id=team_id):
                    return CommandResult(self._usage_refusal())
                return CommandResult(await self._workspace_usage(team_id))
            if scope:
                return CommandResult(
                    t(
                        "I don't know `{command} usage {what}`: use `{command} usage` or "
                        "`{command} usage workspace`.",
                        command=self.command,
                        what=rest.strip(),
                    )
                )
            return CommandResult(await self._usage(team_id, channel_id))
        if verb in {"set", "reset"}:
            try:
                if verb == "set":
                    return CommandResult(await self._set(rest, team_id, channel_id, actor))
                return CommandResult(await self._reset(rest, team_id, channel_id, actor))
            except NotAllowed:
                return CommandResult(await self._refusal(team_id, channel_id))
            except InvalidSetting as exc:
                return CommandResult(
                    ":x: " + t("{problem}. Nothing was saved.", problem=self._explain(exc))
                )
        unknown = t("I don't know `{command} {verb}`.", command=self.command, verb=verb)
        return CommandResult(f"{unknown}\n\n{self.help()}")

    async def show(self, team_id: str, channel_id: str) -> str:
        effective = await self._settings.effective(team_id=team_id, channel_id=channel_id)
        return _show(effective, channel_id, self.schema)

    def help(self) -> str:
        c = self.command
        return "\n".join(
            [
                t("*{command}* — the model bot's settings for this channel", command=c),
                *("• " + t(line, command=c) for line in _HELP),
                t("*Fields*"),
                *(f"• `{s.name}`: {t(s.help)} ({s.valid})" for s in self.schema),
            ]
        )

    async def _refusal(self, team_id: str, channel_id: str) -> str:
        sorry = t("Sorry, only admins can change the model settings.")
        return f"{sorry} {self._admins.who_can_change()}\n\n" + await self.show(team_id, channel_id)

    def _explain(self, exc: InvalidSetting) -> str:
        """The refusal; for a setting of the other layer, how to set it."""
        problems = list(getattr(exc, "errors", {}).values()) or [exc]
        return "; ".join(self._hint(problem) for problem in problems)

    def _hint(self, problem: InvalidSetting) -> str:
        if not isinstance(problem, WrongLayer):
            return str(problem)
        default = "default " if problem.setting.workspace_only else ""
        how = f"{self.command} set {default}{problem.setting.name} VALUE"
        return t("{problem}: use {how}", problem=str(problem), how=how)

    async def _set(self, rest: str, team_id: str, channel_id: str, actor: Actor) -> str:
        layer, rest = _layer(rest)
        parts = rest.split(maxsplit=1)
        if len(parts) < 2:
            if not await self.editor.may_edit(actor, team_id=team_id):
                raise NotAllowed(actor.user_id)
            raise InvalidSetting(
                t(
                    "usage: {command} set [default] FIELD VALUE, where FIELD is one of {names}",
                    command=self.command,
                    names=", ".join(self.schema.names),
                )
            )
        target = WORKSPACE_DEFAULTS if layer == "workspace" else channel_id
        saved = await self.editor.change(  # checks the person first
            actor, team_id=team_id, channel_id=target, typed={parts[0]: parts[1]}
        )
        [(name, value)] = saved.items()
        shown = _short(show_value(name, value))
        if layer == "workspace":
            done = t("`{name}` is now {value} for the workspace default.", name=name, value=shown)
        else:
            done = t(
                "`{name}` is now {value} for {channel}.",
                name=name,
                value=shown,
                channel=f"<#{channel_id}>",
            )
        return f":white_check_mark: {done}"

    async def _reset(self, rest: str, team_id: str, channel_id: str, actor: Actor) -> str:
        layer, rest = _layer(rest)
        target = WORKSPACE_DEFAULTS if layer == "workspace" else channel_id
        fields = await self.editor.reset(
            actor, team_id=team_id, channel_id=target, names=[rest] if rest.strip() else None
        )
        what = f"`{fields[0]}`" if fields else t("all settings")
        if layer == "workspace":
            done = t("Reset {what} for the workspace defaults.", what=what)
        else:
            done = t("Reset {what} for {channel}.", what=what, channel=f"<#{channel_id}>")
        return f":white_check_mark: {done}\n\n" + await self.show(team_id, channel_id)

    async def _history(self, team_id: str, channel_id: str) -> str:
        rows = await self._store.list_settings_audit(
            team_id=team_id, channel_id=channel_id, limit=10
        )
        if not rows:
            return t("No setting of {channel} has been changed yet.", channel=f"<#{channel_id}>")
        lines = ["*" + t("Recent changes in {channel}", channel=f"<#{channel_id}>") + "*"]
        for row in rows:
            who = (
                f"<@{row.changed_by}>"
                if row.changed_by and row.changed_by[0] in "UW"
                else (row.changed_by or t("someone"))
            )
            lines.append(
                f"• {row.changed_at:%Y-%m-%d %H:%M} UTC {who}: `{row.field}` "
                f"{_short(show_value(row.field, row.old_value))} → "
                f"{_short(show_value(row.field, row.new_value))}"
            )
        return "\n".join(lines)

    async def _usage(self, team_id: str, channel_id: str) -> str:
        spans = _spans()
        lines = ["*" + t("Usage in {channel}", channel=f"<#{channel_id}>") + "*"]
        for label, since in spans[:-1]:
            rows = await self._store.usage_since(
                since=since, by="channel", team_id=team_id, channel_id=channel_id
            )
            lines.append(f"• {label}: {self._amount(rows)}")
        users = await self._store.usage_since(
            since=spans[-1][1], by="user", team_id=team_id, channel_id=channel_id
        )
        lines.append(f"• {spans[-1][0]}: {self._amount(users)}")
        lines += self._top(t("Top users, 30 days"), users, mention="@")
        since = spans[-1][1]
        by_model = await self._store.feedback_since(
            since=since, by="model", team_id=team_id, channel_id=channel_id
        )
        lines += _feedback(t("Feedback, 30 days"), by_model, None)
        tools = await self._store.tool_calls_since(
            team_id=team_id, since=since, channel_id=channel_id
        )
        lines += tool_call_lines(t("Tool calls, 30 days"), tools)
        return "\n".join(lines)

    async def _workspace_usage(self, team_id: str) -> str:
        spans = _spans()
        lines = ["*" + t("Usage in this workspace") + "*"]
        for label, since in spans[:-1]:
            rows = await self._store.usage_since(since=since, by="channel", team_id=team_id)
            lines.append(f"• {label}: {self._amount(rows)}")
        channels = await self._store.usage_since(since=spans[-1][1], by="channel", team_id=team_id)
        users = await self._store.usage_since(since=spans[-1][1], by="user", team_id=team_id)
        lines.append(f"• {spans[-1][0]}: {self._amount(channels)}")
        lines += self._top(t("Top channels, 30 days"), channels, mention="#")
        lines += self._top(t("Top users, 30 days"), users, mention="@")
        since = spans[-1][1]
        by_channel = await self._store.feedback_since(since=since, by="channel", team_id=team_id)
        by_model = await self._store.feedback_since(since=since, by="model", team_id=team_id)
        lines += _feedback(t("Feedback by channel, 30 days"), by_channel, "#")
        lines += _feedback(t("Feedback by model, 30 days"), by_model, None)
        tools = await self._store.tool_calls_since(team_id=team_id, since=since)
        lines += tool_call_lines(t("Tool calls, 30 days"), tools)
        return "\n".join(lines)

    def _usage_refusal(self) -> str:
        people = ", ".join(f"<@{u}>" for u in sorted(self._admins.listed))
        if people:
            sorry = t(
                "Sorry, only workspace admins and owners, and {people}, can see the whole "
                "workspace's usage.",
                people=people,
            )
        else:
            sorry = t(
                "Sorry, only workspace admins and owners can see the whole workspace's usage."
            )
        return sorry + " " + t("`{command} usage` shows this channel's.", command=self.command)

    def _amount(self, rows: Sequence[UsageRow]) -> str:
        """``1,234 tokens (3 turns) · ~$0.01`` for the sum of ``rows``."""
        counts = sum((row.counts for row in rows), UsageCounts())
        by_model: dict[str, UsageCounts] = {}
        for row in rows:
            for model, part in row.by_model.items():
                by_model[model] = by_model.get(model, UsageCounts()) + part
        return self._describe(counts, by_model)

    def _describe(self, counts: UsageCounts, by_model: Mapping[str, UsageCounts]) -> str:
        text = tn(
            "{tokens} tokens ({count} turn)",
            "{tokens} tokens ({count} turns)",
            counts.turns,
            tokens=counts.total_tokens,
        )
        cost = estimate_cost(by_model, self._prices)
        if cost is not None:
            text += f" · ~{format_cost(cost)}"
        return text

    def _top(self, title: str, rows: Sequence[UsageRow], *, mention: str) -> list[str]:
        if not rows:
            return []
        lines = [f"*{title}*"]
        for rank, row in enumerate(rows[:_TOP], start=1):
            lines.append(
                f"{rank}. <{mention}{row.key}>: {self._describe(row.counts, row.by_model)}"
            )
        return lines


_TOP = 5


def _votes(good: int, bad: int) -> str:
    return t("👍 {good} · 👎 {bad}", good=good, bad=bad)


def _feedback(title: str, rows: Sequence[FeedbackCount], mention: str | None) -> list[str]:
    """Votes on answers: the total, then one line per channel (``#``) or model (``None``)."""
    good = sum(row.good for row in rows)
    bad = sum(row.bad for row in rows)
    lines = [f"*{title}*: {_votes(good, bad)}" if rows else f"*{title}*: {t('no votes yet')}"]
    for row in rows[: _TOP * 2]:
        key = f"<{mention}{row.key}>" if mention else f"`{escape(row.key)}`"
        lines.append(f"• {key}: {_votes(row.good, row.bad)}")
    return lines


def _spans() -> list[tuple[str, datetime]]:
    """(label, since) for today (UTC), 7 and 30 days; the last is the longest."""
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [
        (t("today"), today),
        (t("7 days"), now - timedelta(days=7)),
        (t("30 days"), now - timedelta(days=30)),
    ]


def _layer(rest: str) -> tuple[Layer, str]:
    words = rest.strip().split(maxsplit=1)
    if words and words[0].lower() == "default":
        return "workspace", words[1] if len(words) > 1 else ""
    return "channel", rest.strip()


def _short(text: str, limit: int = 120) -> str:
    """A value on one line, cut to ``limit`` characters, escaped for mrkdwn."""
    flat = " ".join(text.split())
    return escape(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _show(settings: EffectiveSettings, channel_id: str, schema: Schema) -> str:
    lines = ["*" + t("Model settings for {channel}", channel=f"<#{channel_id}>") + "*"]
    for setting in schema:
        value = shown_default(settings.value(setting.name), settings.sources[setting.name])
        shown = _short(setting.show(value), 200)
        source = t(_SOURCE_WORDS[settings.sources[setting.name]])
        lines.append(f"• `{setting.name}`: {shown} _({source})_")
    return "\n".join(lines)
