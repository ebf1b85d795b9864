"""The message catalogue (``bot/i18n/locales``): every text the code marks is catalogued, every
supported language translates every one of them with the same placeholders and Slack markup,
nothing is empty or left in English by mistake, and the committed ``.mo`` files are what the
``.po`` files compile to. ``scripts/i18n update`` fixes the first and the last."""

from __future__ import annotations

import io
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.i18n import LOCALE_DIR, SUPPORTED, catalogue_name

REPO = Path(__file__).resolve().parents[2]
TRANSLATED = [tag for tag in SUPPORTED if tag != "en"]
KEYWORDS = {"t": None, "tn": (1, 2), "N_": None}

# Texts that are the same in a language as in English on purpose: placeholders and symbols
# only, units and loanwords the language writes the same way.
SAME_EVERYWHERE = {
    " (0 = {meaning})",
    "{count} KB",
    "{count} MB",
    "👍 {good} · 👎 {bad}",
}
SAME_IN = {
    "fr": {"Instructions", "questions"},
    "es": {"tokens", "{count} bytes"},
    "pt-BR": {"tokens", "{count} bytes", "{problem}: use {how}"},
}


def _catalogue(tag: str) -> Catalog:
    path = LOCALE_DIR / catalogue_name(tag) / "LC_MESSAGES" / "bot.po"
    with path.open("rb") as po:
        return read_po(po, locale=catalogue_name(tag))


def _template() -> Catalog:
    with (LOCALE_DIR / "bot.pot").open("rb") as pot:
        return read_po(pot)


def _messages(catalog: Catalog) -> Iterator[Message]:
    return (message for message in catalog if message.id)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _markup(text: str) -> list[str]:
    """What must survive translation as written: Slack emoji codes and `code` spans."""
    return sorted(re.findall(r"^:[a-z_]+:|`[^`]+`", text))


def test_every_marked_text_is_in_the_template() -> None:
    # t("…"), tn("…", "…", n) and N_("…") in bot/ as the extractor reads them today.
    found = {
        message_id if isinstance(message_id, str) else message_id[0]
        for _, _, message_id, _, _ in extract_from_dir(
            str(REPO / "bot"),
            method_map=[("**.py", "python")],
            keywords=KEYWORDS,
        )
    }
    catalogued = {m.id if isinstance(m.id, str) else m.id[0] for m in _messages(_template())}
    assert found - catalogued == set(), "run scripts/i18n update"
    assert catalogued - found == set(), "run scripts/i18n update (texts no longer used)"


@pytest.mark.parametrize("tag", TRANSLATED)
def test_every_language_translates_every_text_with_the_same_placeholders(tag: str) -> None:
    catalog = _catalogue(tag)
    template = _template()
    assert {m.id for m in _messages(catalog)} == {m.id for m in _messages(template)}
    for message in _messages(catalog):
        assert not message.fuzzy, message.id
        sources = [message.id] if isinstance(message.id, str) else list(message.id)
        forms = [message.string] if isinstance(message.string, str) else list(message.string)
        assert len(forms) == (1 if isinstance(message.id, str) else catalog.num_plurals)
        for form in forms:
            assert form.strip(), f"{tag}: untranslated {message.id!r}"
            # Every form takes every value the code passes (the plural's, which has them all).
            assert _fields(form) == _fields(sources[-1]), (tag, message.id, form)
            assert _markup(form) == _markup(sources[-1]), (tag, message.id, form)
            form.format(**dict.fromkeys(_fields(form), "x"))  # no stray braces


@pytest.mark.parametrize("tag", TRANSLATED)
def test_nothing_is_left_in_english_by_mistake(tag: str) -> None:
    allowed = SAME_EVERYWHERE | SAME_IN.get(tag, set())
    same = {
        message.id
        for message in _messages(_catalogue(tag))
        if isinstance(message.id, str) and message.string == message.id
    }
    assert same - allowed == set()


@pytest.mark.parametrize("tag", TRANSLATED)
def test_the_committed_mo_file_is_the_compiled_po_file(tag: str) -> None:
    compiled = io.BytesIO()
    write_mo(compiled, _catalogue(tag))
    committed = LOCALE_DIR / catalogue_name(tag) / "LC_MESSAGES" / "bot.mo"
    assert committed.read_bytes() == compiled.getvalue(), "run scripts/i18n compile"


def test_every_supported_language_has_a_catalogue_and_no_other() -> None:
    present = {path.name for path in LOCALE_DIR.iterdir() if path.is_dir()}
    assert present == {catalogue_name(tag) for tag in TRANSLATED}
