"""The CLI's options for settings: one ``--FIELD-NAME VALUE`` per setting of the schema
(``mcp_servers`` → ``--mcp-servers orders,admin``), read back as the text typed."""

from __future__ import annotations

import argparse

from bot.channel_settings.schema import SCHEMA, Schema

__all__ = ["add_setting_flags", "typed_settings"]


def add_setting_flags(parser: argparse.ArgumentParser, *, schema: Schema = SCHEMA) -> None:
    for setting in schema:
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            metavar="VALUE",
            help=f"{setting.help} ({setting.valid})",
        )


def typed_settings(args: argparse.Namespace, *, schema: Schema = SCHEMA) -> dict[str, str]:
    """The settings given on the command line, by name, as typed."""
    return {s.name: raw for s in schema if (raw := getattr(args, s.name, None)) is not None}
