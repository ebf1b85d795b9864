"""Text that every encoder accepts.

Slack's JSON may carry escapes that decode to lone UTF-16 surrogates (``"\\ud800"``), which no
UTF-8 encoder takes (the model request, SQLite and PostgreSQL all refuse them), and NUL, which
PostgreSQL refuses in text. Both become U+FFFD (the replacement character), so the rest of the
message is kept and answered. Pure functions: used at the Slack edge and again on the model
input, whatever its source (history, file names).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

__all__ = ["REPLACEMENT", "clean_text", "scrub"]

REPLACEMENT = "\ufffd"
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")

T = TypeVar("T")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates and NUL replaced by U+FFFD."""
    # Valid pairs never survive json.loads as two surrogates (they decode to one character),
    # so every surrogate left in a str is a lone one.
    return _UNENCODABLE.sub(REPLACEMENT, text)


def scrub(value: T) -> T:
    """``value`` with every string in it (dict keys and values, list and tuple items) cleaned;
    other values are returned as they are."""
    return _scrub(value)  # type: ignore[no-any-return]


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_scrub(item) for item in value)
    return value
