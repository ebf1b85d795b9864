"""Command line: ``python -m bot [run|migrate|doctor|config …|usage …|prune …]``.

The environment is read through ``bot.settings`` only (``load_settings`` for the service,
``load_storage_settings`` for commands that need only the database); everything below gets
explicit arguments. Errors an operator can fix are printed as one plain line (exit code 2).
Everything printed passes ``terminal_safe``: stored text (instructions, model names, ids)
came from Slack users and model endpoints, and must not drive the operator's terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from bot.channel_settings import (
    OPERATOR,
    SCHEMA,
    WORKSPACE_DEFAULTS,
    InvalidSetting,
    SettingsEditor,
    StoredChannelSettings,
    WrongLayer,
    show_value,
)
from bot.channel_settings.editor import layer_of, parse_typed
from bot.channel_settings.flags import add_setting_flags, typed_settings
from bot.errors import ConfigError
from bot.logs import configure_logging
from bot.redaction import terminal_safe
from bot.settings import Settings, load_settings, load_storage_settings, tool_environment

__all__ = ["main"]


def _print(text: str = "", *, error: bool = False) -> None:
    """Print ``text`` without terminal control sequences (see the module docstring)."""
    print(terminal_safe(text), file=sys.stderr if error else sys.stdout)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="Slack bot for OpenAI Responses-API endpoints."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="start the service (the default); applies migrations first")
    commands.add_parser("migrate", help="apply database migrations and exit")
    commands.add_parser("doctor", help="check configuration, Slack token and model endpoint")

    config = commands.add_parser("config", help="show or edit a channel's model settings")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    for name, help_text in (
        ("show", "show a channel's effective settings"),
        ("set", "change a channel's settings"),
        ("reset", "reset a channel's settings to the defaults"),
        ("history", "show who changed what, newest first"),
    ):
        sub = config_commands.add_parser(name, help=help_text)
        layer = sub.add_mutually_exclusive_group(required=True)
        layer.add_argument("--channel", help="channel id, e.g. C0123456789")
        layer.add_argument(
            "--default", action="store_true", help="the workspace defaults layer instead"
        )
        sub.add_argument("--team", help="workspace id (default: the bot token's workspace)")
        if name == "set":
            add_setting_flags(sub)
        if name == "reset":
            sub.add_argument(
                "--field", action="append", choices=SCHEMA.names, help="reset only this field"
            )

    usage = commands.add_parser(
        "usage",
        help="tokens (and estimated cost) per channel, user or model; 👍/👎 votes per "
        "channel or model",
    )
    usage.add_argument(
        "--since", default="30d", help="30d, 12h or a date like 2026-01-31 (default: 30d)"
    )
    usage.add_argument("--by", choices=("channel", "user", "model"), default="channel")
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table")
    usage.add_argument("--team", help="workspace id (default: every workspace)")

    prune = commands.add_parser("prune", help="delete history older than the retention period")
    prune.add_argument(
        "--older-than", help="30d, 12h or a date like 2026-01-31 (default: RETENTION_DAYS days)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "run":
            return _run()
        if command == "migrate":
            return asyncio.run(_migrate())
        if command == "doctor":
            from bot.doctor import run_doctor

            return asyncio.run(run_doctor())
        if command == "config":
            return asyncio.run(_config(args))
        if command == "usage":
            return asyncio.run(_usage(args))
        if command == "prune":
            return asyncio.run(_prune(args))
    except ConfigError as exc:
        _print(f"error: {exc}", error=True)
        return 2
    except InvalidSetting as exc:
        _print(f"error: {_explain(exc)}. Nothing was saved.", error=True)
        return 2
    return 1


def _run() -> int:
    settings = load_settings()
    environ = tool_environment()
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        # MCP servers' header values too: they come from the environment, not from Settings.
        secrets=settings.secrets() + settings.tool_secrets(environ),
    )
    from bot.service import Service

    asyncio.run(Service(settings, environ=environ).run_forever())
    return 0


async def _migrate() -> int:
    from storage.migrate import upgrade_to_head

    url = load_storage_settings().database_url
    await upgrade_to_head(url)
    _print("database is at the latest migration")
    return 0


async def _resolve_team(team: str | None) -> str:
    if team:
        return team
    settings: Settings = load_settings()
    from bot.errors import SlackRefusedError
    from bot.slack.client import make_slack_client
    from bot.slack.identity import fetch_identity

    try:
        identity = await fetch_identity(make_slack_client(settings))
    except SlackRefusedError as exc:
        raise ConfigError(
            f"could not ask Slack for the workspace ({exc.code}): pass --team"
        ) from None
    return identity.team_id


def _explain(exc: InvalidSetting) -> str:
    """The refusal; for a setting of the other layer, how to set it."""
    problems = list(getattr(exc, "errors", {}).values()) or [exc]
    return "; ".join(
        f"{p}: use --default"
        if isinstance(p, WrongLayer) and p.setting.workspace_only
        else f"{p}: use --channel"
        if isinstance(p, WrongLayer)
        else str(p)
        for p in problems
    )


async def _config(args: argparse.Namespace) -> int:
    from storage.engine import create_engine, create_session_factory
    from storage.migrate import upgrade_to_head
    from storage.repositories import Store

    storage_settings = load_storage_settings()
    # mcp_servers is checked against the servers MCP_SERVERS declares, as in Slack.
    schema = SCHEMA.declaring(mcp_servers=[c.name for c in storage_settings.mcp_server_configs])
    typed = typed_settings(args) if args.config_command == "set" else {}
    if args.config_command == "set":
        if not typed:
            flags = ", ".join(s.flag for s in list(SCHEMA)[:2])
            raise ConfigError(f"nothing to set: give at least one of {flags}, ...")
        # Refuse bad values before asking Slack or touching the database (the editor checks
        # again, with the allow-list, when it saves).
        parse_typed(
            schema, typed, layer=layer_of(WORKSPACE_DEFAULTS if args.default else args.channel)
        )

    team_id = await _resolve_team(args.team)
    channel_id = WORKSPACE_DEFAULTS if args.default else args.channel
    where = "the workspace defaults" if args.default else args.channel
    await upgrade_to_head(storage_settings.database_url)
    engine = create_engine(storage_settings.database_url)
    try:
        store = Store(create_session_factory(engine))
        # The operator's edits go through the same service as Slack's (validation, the
        # allow-list, the audit trail); the CLI acts as the local operator, no Slack check.
        editor = SettingsEditor(
            store=store,
            admins=None,
            allowed_models=storage_settings.allowed_models,
            schema=schema,
        )
        if args.config_command == "history":
            rows = await store.list_settings_audit(team_id=team_id, channel_id=channel_id)
            if not rows:
                _print(f"no changes recorded for {where}")
            for row in rows:
                _print(
                    f"{row.changed_at:%Y-%m-%d %H:%M:%S} UTC  {row.changed_by or '-':<12} "
                    f"{row.field:<18} {_one_line(show_value(row.field, row.old_value), 40)} -> "
                    f"{_one_line(show_value(row.field, row.new_value), 40)}"
                )
            return 0
        if args.config_command == "set":
            saved = await editor.change(
                OPERATOR, team_id=team_id, channel_id=channel_id, typed=typed
            )
            _print(
                f"saved for {where}: "
                + ", ".join(f"{k}={_one_line(show_value(k, v))}" for k, v in saved.items())
            )
        elif args.config_command == "reset":
            await editor.reset(OPERATOR, team_id=team_id, channel_id=channel_id, names=args.field)
            what = ", ".join(args.field) if args.field else "all settings"
            _print(f"reset {what} for {where}")
        environment = storage_settings.model_copy(
            update={"default_model": storage_settings.default_model or "(DEFAULT_MODEL is not set)"}
        )
        resolver = StoredChannelSettings.from_environment(store=store, environment=environment)
        effective = await resolver.effective(team_id=team_id, channel_id=channel_id)
        _print(f"settings for {where} (workspace {team_id}):")
        for setting in SCHEMA:
            shown = _one_line(setting.show(effective.value(setting.name)))
            _print(f"  {setting.name:<18} {shown}  [{effective.sources[setting.name]}]")
    finally:
        await engine.dispose()
    return 0


async def _usage(args: argparse.Namespace) -> int:
    from bot.usage_report import parse_since, render_usage, tool_call_lines
    from storage.engine import create_engine, create_session_factory
    from storage.migrate import upgrade_to_head
    from storage.repositories import Store

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    storage_settings = load_storage_settings()
    await upgrade_to_head(storage_settings.database_url)
    engine = create_engine(storage_settings.database_url)
    try:
        store = Store(create_session_factory(engine))
        rows = await store.usage_since(since=since, by=args.by, team_id=args.team)
        # 👍/👎 per channel or model (a vote is not anyone's usage: none per user).
        feedback = (
            await store.feedback_since(since=since, by=args.by, team_id=args.team)
            if args.by in ("channel", "model")
            else None
        )
        tools = (
            await store.tool_calls_since(team_id=args.team, since=since)
            if args.team and args.format == "table"
            else []
        )
    finally:
        await engine.dispose()
    _print(
        render_usage(
            rows,
            by=args.by,
            since=since,
            prices=storage_settings.prices,
            fmt=args.format,
            team_id=args.team,
            feedback=feedback,
        )
    )
    if tools:
        _print("\n".join(["", *tool_call_lines("Tool calls", tools, plain=True)]))
    return 0


_MIN_AGE: Final = timedelta(hours=1)
"""Younger event claims are still needed to recognise Slack's retries."""


async def _prune(args: argparse.Namespace) -> int:
    from bot.usage_report import parse_since
    from storage.engine import create_engine, create_session_factory
    from storage.migrate import upgrade_to_head
    from storage.models import utcnow
    from storage.repositories import Store

    storage_settings = load_storage_settings()
    now = utcnow()
    if args.older_than is None:
        if storage_settings.retention_days == 0:
            _print("RETENTION_DAYS is 0 (keep forever): nothing pruned")
            return 0
        cutoff = now - timedelta(days=storage_settings.retention_days)
    else:
        try:
            cutoff = parse_since(args.older_than, now=now)
        except ValueError as exc:
            raise ConfigError(f"--older-than: {exc}") from None
    if cutoff > now - _MIN_AGE:
        raise ConfigError("--older-than must be at least 1h ago (recent rows are still in use)")
    await upgrade_to_head(storage_settings.database_url)
    engine = create_engine(storage_settings.database_url)
    try:
        counts = await Store(create_session_factory(engine)).prune_history(older_than=cutoff)
    finally:
        await engine.dispose()
    _print(
        f"pruned rows older than {cutoff:%Y-%m-%d %H:%M} UTC: {counts.turns} turns, "
        f"{counts.threads} threads, {counts.event_claims} event claims, "
        f"{counts.settings_audit} settings changes"
    )
    return 0


def _one_line(text: str, limit: int = 80) -> str:
    flat = " ".join(terminal_safe(text, keep_newlines=False).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
