"""What ``bot.redaction`` removes from text that came from outside."""

from __future__ import annotations

import pytest

from bot.redaction import OTHER, Redactor, bounded_code, terminal_safe


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("plain text\nwith\ttabs", "plain text\nwith\ttabs"),
        ("red \x1b[31mtext\x1b[0m", "red text"),
        ("title \x1b]0;owned\x07 after", "title  after"),
        ("title \x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\", "title link"),
        ("c1 csi \x9b2J and nel \x85", "c1 csi  and nel "),
        ("bell\x07 nul\x00 del\x7f", "bell nul del"),
        ("lone \ud800 surrogate", "lone  surrogate"),
        ("unterminated \x1b]0;forever", "unterminated "),
    ],
)
def test_terminal_safe_drops_control_sequences_and_characters(raw: str, safe: str) -> None:
    assert terminal_safe(raw) == safe


def test_terminal_safe_can_flatten_lines() -> None:
    assert terminal_safe("a\nb\tc\rd", keep_newlines=False) == "a b c d"


def test_redactor_scrubs_secrets_and_token_shapes() -> None:
    redact = Redactor(["database-password-1", "short"])
    text = "pw database-password-1 token xoxb-1-abc key sk-abcdefgh123 short \x1b[2J"
    assert redact(text) == "pw [redacted] token [redacted] key [redacted] short "


def test_bounded_code_keeps_known_codes_only() -> None:
    known = {"rate_limited"}
    assert bounded_code("rate_limited", known) == "rate_limited"
    assert bounded_code("sk-leaked-key", known) == OTHER
    assert bounded_code(None, known) == OTHER
