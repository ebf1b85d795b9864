"""The language (and time zone) of the person the bot is writing to, and the bot's words in it.

The reader is a context variable: the Slack edge sets it around a slash command, a modal or a
Home tab for the person who asked, and the turn sets it around each message it answers for
the person who wrote it (``bot.conversation.service``). Tasks created inside inherit it, so
the reply sink's own words (its status, the empty-answer note, the feedback buttons) follow.
Nothing set (the CLI, logs, start-up) is English.

``t("… {count} …", count=3)`` looks the text up in the reader's catalogue and fills its brace
placeholders, formatting numbers and times for the language (Babel). ``N_`` marks a text for
the catalogue where it is defined (a constant, a schema entry) and ``t`` translates it where
it is shown.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_skeleton
from babel.numbers import format_decimal

from bot.i18n.languages import DEFAULT_LANGUAGE, catalogue_name, supported

__all__ = [
    "DOMAIN",
    "LOCALE_DIR",
    "N_",
    "Reader",
    "clock",
    "current",
    "reading",
    "shown_default",
    "t",
    "tn",
    "translations",
]

DOMAIN: Final = "bot"
LOCALE_DIR: Final = Path(__file__).parent / "locales"


@dataclass(frozen=True, slots=True)
class Reader:
    """Who the words are for: a supported language tag and an IANA time zone (or ``None``)."""

    language: str = DEFAULT_LANGUAGE
    timezone: str | None = None

    @property
    def zone(self) -> tzinfo:
        if self.timezone:
            try:
                return ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                pass  # an unknown zone: UTC, as if none were given
        return UTC


_ENGLISH: Final = Reader()
_READER: ContextVar[Reader] = ContextVar("bot_i18n_reader")


def current() -> Reader:
    return _READER.get(_ENGLISH)


@contextmanager
def reading(language: str | None, timezone: str | None = None) -> Iterator[Reader]:
    """Write for ``language`` (unsupported or ``None``: English) in ``timezone`` inside."""
    reader = Reader(supported(language or "") or DEFAULT_LANGUAGE, timezone or None)
    token = _READER.set(reader)
    try:
        yield reader
    finally:
        _READER.reset(token)


def N_(text: str) -> str:
    """Mark ``text`` for the catalogue; ``t`` translates it where it is shown."""
    return text


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``language`` (English: the texts as written)."""
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    return gettext.translation(
        DOMAIN, localedir=LOCALE_DIR, languages=[catalogue_name(language)], fallback=True
    )


def t(text: str, /, **values: Any) -> str:
    """``text`` in the reader's language, its ``{placeholders}`` filled with ``values``."""
    reader = current()
    translated = translations(reader.language).gettext(text)
    return _fill(translated, reader, values) if values else translated


def tn(singular: str, plural: str, count: int, /, **values: Any) -> str:
    """The form of ``singular``/``plural`` for ``count`` (``{count}`` is filled too)."""
    reader = current()
    translated = translations(reader.language).ngettext(singular, plural, count)
    return _fill(translated, reader, {"count": count, **values})


def shown_default(value: Any, source: str) -> Any:
    """A setting's value as the reader reads it: the service's default texts (suggested
    prompts, loading messages) are catalogue texts, in the reader's language; anything an admin
    set is shown as set."""
    if source == "default" and isinstance(value, tuple | list):
        return tuple(t(item) if isinstance(item, str) else item for item in value)
    return value


def clock(moment: datetime) -> str:
    """A moment as a time of day people can act on: ``15:45 UTC``, and when the reader's own
    zone differs at that moment, their time too: ``15:45 UTC (16:45 CET)``."""
    reader = current()
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    shown = f"{_show(moment.astimezone(UTC), Reader(reader.language))} UTC"
    local = moment.astimezone(reader.zone)
    if local.utcoffset() != moment.astimezone(UTC).utcoffset():
        shown += f" ({_show(local, reader)} {local.tzname() or reader.timezone})"
    return shown


def _fill(text: str, reader: Reader, values: dict[str, Any]) -> str:
    return text.format(**{name: _show(value, reader) for name, value in values.items()})


def _show(value: Any, reader: Reader) -> str:
    """A placeholder's value as the reader's language writes it."""
    locale = _locale(reader.language)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(format_decimal(value, locale=locale))
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        # A 24-hour clock in the language's own shape (15:45, 15時45分…), in the reader's zone.
        return str(format_skeleton("Hm", moment.astimezone(reader.zone), locale=locale))
    return str(value)


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(catalogue_name(language))
