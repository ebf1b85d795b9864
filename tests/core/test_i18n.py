"""The reader's language: Slack locales mapped onto the supported set, the context variable
that carries it into tasks, and placeholders written the language's way."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.conversation.notes import STORAGE_NOTE, limit_notice
from bot.errors import ModelServerError
from bot.i18n import choose, clock, current, from_slack_locale, reading, supported, t, tn
from bot.user_messages import user_message
from storage.records import LimitReached


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("zh-CN", "zh-CN"),
        ("zh-TW", "zh-TW"),
        ("zh-HK", "zh-TW"),
        ("zh-Hant-TW", "zh-TW"),
        ("zh-Hans", "zh-CN"),
        ("ja-JP", "ja"),
        ("ko-KR", "ko"),
        ("en-US", "en"),
        ("en-GB", "en"),
        ("es-LA", "es"),
        ("es-ES", "es"),
        ("fr-FR", "fr"),
        ("fr-CA", "fr"),
        ("de-DE", "de"),
        ("pt-BR", "pt-BR"),
        ("it-IT", "en"),
        ("ru-RU", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_slack_locales_map_onto_the_supported_languages(locale: str | None, language: str) -> None:
    assert from_slack_locale(locale) == language


def test_a_workspace_tag_is_matched_in_any_case_and_nothing_else_is() -> None:
    assert supported("ZH-cn") == "zh-CN"
    assert supported("pt_br") == "pt-BR"
    assert supported("klingon") is None


def test_the_workspace_setting_wins_over_the_persons_locale_unless_auto() -> None:
    assert choose("de", "ja-JP") == "de"
    assert choose("auto", "ja-JP") == "ja"
    assert choose(None, "ja-JP") == "ja"
    assert choose("klingon", "ja-JP") == "ja"  # never stored (validated), but harmless
    assert choose("auto", None) == "en"


def test_english_is_the_text_as_written_and_other_languages_translate_it() -> None:
    assert t(STORAGE_NOTE) == STORAGE_NOTE  # nothing set: English (the CLI, logs)
    with reading("zh-CN"):
        assert "无法保存" in t(STORAGE_NOTE)
        with reading("ja"):
            assert "保存できない" in t(STORAGE_NOTE)
        assert current().language == "zh-CN"
    with reading("it"):  # unsupported: English
        assert t(STORAGE_NOTE) == STORAGE_NOTE
    assert current().language == "en"


def test_numbers_and_plurals_follow_the_language() -> None:
    one, many = (
        "{count} more channel has settings of its own, shown only to its members.",
        ("{count} more channels have settings of their own, shown only to members."),
    )
    assert tn(one, many, 1).startswith("1 more channel has")
    assert tn(one, many, 1234).startswith("1,234 more channels have")
    with reading("de"):
        assert tn(one, many, 1234).startswith("1.234 weitere Kanäle")
    with reading("fr"):
        assert "1\u202f234" in tn(one, many, 1234)  # French groups with a narrow space


def test_a_time_is_shown_in_utc_and_in_the_readers_own_zone() -> None:
    moment = datetime(2026, 1, 5, 6, 30, tzinfo=UTC)
    assert clock(moment) == "06:30 UTC"
    with reading("ja", "Asia/Tokyo"):
        assert clock(moment) == "6:30 UTC (15:30 JST)"
    with reading("en", "Not/AZone"):
        assert clock(moment) == "06:30 UTC"


def test_the_limit_notice_and_the_failure_note_are_in_the_readers_language() -> None:
    limit = LimitReached(
        kind="daily_token_budget",
        limit=100_000,
        used=100_500,
        held=0,
        again_at=datetime(2026, 1, 6, tzinfo=UTC),
    )
    with reading("zh-CN"):
        assert "100,000" in limit_notice(limit)
        assert "预算" in limit_notice(limit)
        assert user_message(ModelServerError("boom", status_code=500)).startswith(
            ":warning: 模型服务"
        )
    assert "daily budget of 100,000 tokens" in limit_notice(limit)


async def test_tasks_started_inside_inherit_the_reader() -> None:
    async def language() -> str:
        await asyncio.sleep(0)
        return current().language

    with reading("ko"):
        task = asyncio.create_task(language())
    assert await task == "ko"
    assert current().language == "en"
