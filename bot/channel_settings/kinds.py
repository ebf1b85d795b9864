"""Kinds of setting values: how text typed by a person becomes a value, and back.

A kind owns a setting's type and range: ``parse`` turns what someone typed (in the slash
command, the CLI or the settings form) into the value, or raises ``InvalidSetting`` naming the
valid range; ``show`` is the value as people read it; ``text`` is the value as text that parses
back to exactly the same value (a form that shows a value must not change it when saved).
Every surface uses these, so they refuse the same things with the same words.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.i18n import N_, t

__all__ = [
    "Choice",
    "InvalidSetting",
    "Kind",
    "Name",
    "NameList",
    "Number",
    "OnOff",
    "Text",
    "TextList",
    "WholeNumber",
]


class InvalidSetting(ValueError):
    """A field name or value was refused; ``str()`` names the valid range."""


class Kind(Protocol):
    """What every kind of value offers (see the module docstring)."""

    @property
    def valid(self) -> str:
        """The valid values in words ("0 to 2", "low, medium, high")."""

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The values people pick from, as they type them: the form shows a menu."""

    @property
    def multiline(self) -> bool:
        """Whether the form's input has several lines."""

    @property
    def max_chars(self) -> int | None:
        """The most characters a value's ``text`` may have (the form's input limit)."""

    def parse(self, name: str, raw: str) -> Any: ...

    def show(self, value: Any) -> str: ...

    def text(self, value: Any) -> str: ...


# Newlines and tabs belong in text; every other control character (NUL, escape sequences,
# C1 controls) and lone surrogates (which no encoder, database or JSON parser accepts) is
# refused rather than stored and sent to the model on every turn.
_ALLOWED_CONTROLS = frozenset("\n\t\r")


def _bad_character(value: str) -> str | None:
    """A description of the first control character or lone surrogate in ``value``."""
    for index, char in enumerate(value, start=1):
        if char in _ALLOWED_CONTROLS:
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            return t("U+{code} at character {index}", code=f"{ord(char):04X}", index=index)
    return None


@dataclass(frozen=True, slots=True)
class _Plain:
    """Shared defaults: no menu, one line, no length limit, ``str`` both ways."""

    @property
    def choices(self) -> tuple[str, ...] | None:
        return None

    @property
    def multiline(self) -> bool:
        return False

    @property
    def max_chars(self) -> int | None:
        return None

    def show(self, value: Any) -> str:
        return str(value)

    def text(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True, slots=True)
class Name(_Plain):
    """One word: no spaces or control characters (a model name)."""

    max_length: int
    noun: str

    @property
    def valid(self) -> str:
        return t(self.noun)

    @property
    def max_chars(self) -> int | None:
        return self.max_length

    def parse(self, name: str, raw: str) -> str:
        value = raw.strip()
        if (
            not value
            or len(value) > self.max_length
            or any(c.isspace() or not c.isprintable() for c in value)
        ):
            raise InvalidSetting(
                t(
                    "{name} must be {noun} without spaces or control characters, "
                    "1-{most} characters",
                    name=name,
                    noun=t(self.noun),
                    most=self.max_length,
                )
            )
        return value


@dataclass(frozen=True, slots=True)
class Text(_Plain):
    """Free text (instructions): newlines and tabs allowed, other control characters not."""

    max_length: int
    lines: bool = True

    @property
    def valid(self) -> str:
        return t("text up to {most} characters", most=self.max_length)

    @property
    def multiline(self) -> bool:
        return self.lines

    @property
    def max_chars(self) -> int | None:
        return self.max_length

    def parse(self, name: str, raw: str) -> str:
        value = raw.strip()
        if not value:
            raise InvalidSetting(
                t("{name} must not be empty (use reset to inherit the default)", name=name)
            )
        if len(value) > self.max_length:
            raise InvalidSetting(
                t(
                    "{name} must be at most {most} characters (got {got})",
                    name=name,
                    most=self.max_length,
                    got=len(value),
                )
            )
        bad = _bad_character(value)
        if bad is not None:
            raise InvalidSetting(
                t(
                    "{name} must be text without control characters (found {bad})",
                    name=name,
                    bad=bad,
                )
            )
        return value


@dataclass(frozen=True, slots=True)
class Number(_Plain):
    """A decimal number within ``low``..``high``."""

    low: float
    high: float

    @property
    def valid(self) -> str:
        return t("{low} to {high}", low=self.low, high=self.high)

    def parse(self, name: str, raw: str) -> float:
        message = t(
            "{name} must be a number from {low} to {high}", name=name, low=self.low, high=self.high
        )
        try:
            value = float(raw.strip())
        except ValueError:
            raise InvalidSetting(message) from None
        if math.isnan(value) or not self.low <= value <= self.high:
            raise InvalidSetting(message)
        return value

    def show(self, value: Any) -> str:
        return f"{value:g}"

    def text(self, value: Any) -> str:
        return repr(float(value))  # unrounded: "0.1234567" stays itself


@dataclass(frozen=True, slots=True)
class WholeNumber(_Plain):
    """An integer within ``low``..``high``, as people type it ("1,024", "10_000")."""

    low: int
    high: int
    unit: str | None = None
    """What is counted ("tokens"), named in the error."""
    zero: str | None = None
    """What 0 means ("no budget"), named in the error."""

    @property
    def valid(self) -> str:
        return t("{low} to {high}", low=self.low, high=self.high)

    def parse(self, name: str, raw: str) -> int:
        if self.unit:
            message = t(
                "{name} must be a whole number of {unit} from {low} to {high}",
                name=name,
                unit=t(self.unit),
                low=self.low,
                high=self.high,
            )
        else:
            message = t(
                "{name} must be a whole number from {low} to {high}",
                name=name,
                low=self.low,
                high=self.high,
            )
        if self.zero:
            message += t(" (0 = {meaning})", meaning=t(self.zero))
        try:
            # int() also refuses absurdly long digit strings (Python's 4,300-digit limit).
            value = int(raw.strip().replace(",", "").replace("_", ""))
        except ValueError:
            raise InvalidSetting(message) from None
        if not self.low <= value <= self.high:
            raise InvalidSetting(message)
        return value


@dataclass(frozen=True, slots=True)
class Choice(_Plain):
    """One of a few words, picked from a menu in the form."""

    options: tuple[str, ...]

    @property
    def valid(self) -> str:
        return ", ".join(self.options)

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.options

    def parse(self, name: str, raw: str) -> str:
        value = raw.strip().lower()
        for option in self.options:
            if option.lower() == value:
                return option  # as the option is spelled (zh-CN)
        raise InvalidSetting(
            t("{name} must be one of {options}", name=name, options=", ".join(self.options))
        )


_ON = frozenset({"on", "true", "yes", "1", "enabled"})
_OFF = frozenset({"off", "false", "no", "0", "disabled"})


@dataclass(frozen=True, slots=True)
class OnOff(_Plain):
    """A switch: ``on``/``off`` (and the usual spellings of yes and no)."""

    @property
    def valid(self) -> str:
        return "on, off"

    @property
    def choices(self) -> tuple[str, ...] | None:
        return ("on", "off")

    def parse(self, name: str, raw: str) -> bool:
        value = raw.strip().lower()
        if value in _ON:
            return True
        if value in _OFF:
            return False
        raise InvalidSetting(t("{name} must be on or off", name=name))

    def show(self, value: Any) -> str:
        return "on" if value else "off"

    def text(self, value: Any) -> str:
        return "on" if value else "off"


@dataclass(frozen=True, slots=True)
class TextList(_Plain):
    """Up to ``max_items`` short texts, typed with ``separator`` between them (a comma for
    names, a new line for sentences that may hold commas). Stored as a list; repeats and
    empty items are dropped, the order is kept."""

    max_items: int
    max_item_length: int
    separator: str = ","
    words: bool = False
    """Items are single words (names): no spaces inside one."""
    one_line: str | None = None
    """Also a separator, for lists typed on one line (the slash command cannot always hold a
    new line): ``|`` between sentences."""

    @property
    def valid(self) -> str:
        between = t(N_("commas") if self.separator == "," else N_("new lines"))
        if self.one_line:
            other = _SEPARATOR_NAMES.get(self.one_line)
            between += t(" (or {other})", other=t(other) if other else repr(self.one_line))
        return t(
            "up to {count} items of at most {most} characters, separated by {between}",
            count=self.max_items,
            most=self.max_item_length,
            between=between,
        )

    @property
    def multiline(self) -> bool:
        return self.separator == "\n"

    @property
    def max_chars(self) -> int | None:
        return self.max_items * (self.max_item_length + len(self.separator))

    def parse(self, name: str, raw: str) -> tuple[str, ...]:
        parts = raw.split(self.separator)
        if self.one_line:
            parts = [piece for part in parts for piece in part.split(self.one_line)]
        items = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
        if not items:
            raise InvalidSetting(
                t("{name} must list at least one item (use reset to inherit)", name=name)
            )
        if len(items) > self.max_items:
            raise InvalidSetting(
                t("{name} must have at most {count} items", name=name, count=self.max_items)
            )
        for item in items:
            if len(item) > self.max_item_length:
                raise InvalidSetting(
                    t(
                        "{name}: each item must be at most {most} characters",
                        name=name,
                        most=self.max_item_length,
                    )
                )
            bad = _bad_character(item)
            if bad is not None:
                raise InvalidSetting(
                    t("{name} must be text without control characters ({bad})", name=name, bad=bad)
                )
            if self.words and any(c.isspace() for c in item):
                raise InvalidSetting(
                    t("{name}: each item must be one word, without spaces", name=name)
                )
        return items

    def show(self, value: Any) -> str:
        return ", ".join(str(item) for item in _items(value))

    def text(self, value: Any) -> str:
        return self.separator.join(str(item) for item in _items(value))


_SEPARATOR_NAMES = {"|": N_("vertical bars"), ";": N_("semicolons")}


@dataclass(frozen=True, slots=True)
class NameList(_Plain):
    """Some of a set of names, typed with commas between them (``orders, wiki``). ``names``
    is the set (``None``: any single word); ``what`` says where the set comes from when it is
    empty (the MCP servers the operator declared), so the refusal tells an admin what to do."""

    max_items: int
    names: tuple[str, ...] | None = None
    what: str = N_("names")
    """What the names are, for the refusal (a catalogue text: ``N_``)."""

    def _words(self) -> TextList:
        return TextList(self.max_items, 200, separator=",", words=True)

    @property
    def valid(self) -> str:
        if self.names is None:
            return self._words().valid
        if not self.names:
            return t("comma-separated, some of the {what}", what=t(self.what))
        return t("comma-separated, some of {names}", names=", ".join(self.names))

    @property
    def max_chars(self) -> int | None:
        return self._words().max_chars

    def parse(self, name: str, raw: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(item.lower() for item in self._words().parse(name, raw)))
        if self.names is None:
            return items
        unknown = [item for item in items if item not in self.names]
        if unknown:
            listed = (
                ", ".join(self.names)
                if self.names
                else t("none (no {what} are declared)", what=t(self.what))
            )
            raise InvalidSetting(
                t(
                    "{name}: unknown {values}; the valid values are: {listed}",
                    name=name,
                    values=", ".join(repr(u) for u in unknown),
                    listed=listed,
                )
            )
        return items

    def show(self, value: Any) -> str:
        return ", ".join(str(item) for item in _items(value))

    def text(self, value: Any) -> str:
        return ",".join(str(item) for item in _items(value))


def _items(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else (value,)
