"""Text that came from outside (an endpoint, Slack, a stored setting) made safe to show.

One home for three jobs that every output path shares:

- ``Redactor.scrub``: known secret values and Slack/OpenAI token shapes → ``[redacted]``
  (log lines, doctor output);
- ``terminal_safe``: terminal control sequences (ANSI/VT escapes, C0/C1 control characters,
  lone surrogates) removed, so stored or upstream text cannot repaint an operator's terminal;
- ``bounded_code``: an upstream error code reduced to a fixed set, else ``other``, before it
  becomes a metric label (labels are forever: an endpoint must not mint new time series, or
  smuggle a token into ``/metrics``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

__all__ = ["OTHER", "Redactor", "bounded_code", "terminal_safe"]

OTHER = "other"

# Token shapes that must never reach a log line even when nobody told us the value.
_TOKEN_PATTERNS = re.compile(
    r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{8,})"
)
_MIN_SECRET_CHARS = 6

# ECMA-48 sequences a terminal acts on: CSI (ESC [ … final byte, or the one-byte C1 CSI),
# OSC/DCS/APC/PM/SOS strings up to their terminator (BEL or ST), and two-byte ESC sequences.
_ESCAPE_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|$)"
    r"|\x1b[ -/]*[0-~]",
    re.DOTALL,
)
# What is left after the sequences: lone control characters (tab and newline are kept when
# asked), DEL, C1 controls, and lone surrogates (unencodable: a UnicodeEncodeError waiting
# to happen in whatever prints them).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_AND_WHITESPACE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def terminal_safe(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` without terminal control sequences or control characters (tab and newline
    are kept unless ``keep_newlines`` is false, when they become spaces)."""
    text = _ESCAPE_SEQUENCES.sub("", text)
    if keep_newlines:
        return _CONTROL.sub("", text)
    return _CONTROL_AND_WHITESPACE.sub(lambda m: " " if m.group(0) in "\t\n\r" else "", text)


class Redactor:
    """Replaces known secret values and Slack/OpenAI token shapes with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True
        )

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_PATTERNS.sub("[redacted]", text)

    def __call__(self, text: str) -> str:
        """``scrub`` and ``terminal_safe`` in one: upstream text fit for a terminal."""
        return terminal_safe(self.scrub(text))


def bounded_code(code: object, known: Collection[str]) -> str:
    """``code`` when it is one of ``known``, else ``other``."""
    return code if isinstance(code, str) and code in known else OTHER
