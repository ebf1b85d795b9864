"""The bot speaks each person's Slack language: its own words (notes, help) follow the locale
Slack reports for the person it answers (``users.info`` with ``include_locale``, the same
cached call as their display name), English when the locale is missing or unsupported, and
the workspace's ``language`` setting overrides it for everyone. The model's answers are never
translated."""

from __future__ import annotations

import json

from bot.i18n import translations
from bot.service import INTERRUPTED_NOTICE
from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown
from tests.e2e.test_slash_command import ADMIN, command

QUOTA = {
    "error": {
        "message": "You exceeded your current quota",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}

# The quota sentence of bot/user_messages.py, as each catalogue words it.
QUOTA_NOTE = {
    "zh-CN": "模型服务表示本工作区的额度已用完",
    "ja-JP": "このワークスペースの利用枠を使い切りました",
    "en-US": "The model service says this workspace's quota is used up.",
    "it-IT": "The model service says this workspace's quota is used up.",
}


async def _failed_note(bot: BotUnderTest, user: str) -> str:
    bot.model.script_error(429, QUOTA)
    ts, _ = await bot.mention("what is our refund policy?", user=user)
    [reply] = await bot.wait_replies("C1", ts, 1)
    return shown(reply)


async def test_the_same_failure_is_told_in_each_persons_language(bot: BotUnderTest) -> None:
    people = {"UZH": "zh-CN", "UJA": "ja-JP", "UEN": "en-US", "UIT": "it-IT"}
    for user, locale in people.items():
        bot.slack.add_user(user, name=user.lower(), locale=locale)

    notes = {locale: await _failed_note(bot, user) for user, locale in people.items()}

    for locale, note in notes.items():
        assert note.startswith(":warning:"), note
        assert QUOTA_NOTE[locale] in note, (locale, note)
    assert "quota" not in notes["zh-CN"].lower()
    # The locale came with the display name: one users.info per person, asking for it.
    lookups = bot.slack.calls_to("users.info")
    assert sorted(str(call.params.get("user")) for call in lookups) == sorted(people)
    assert all(str(call.params.get("include_locale")) in {"1", "true"} for call in lookups)


async def test_a_person_without_a_locale_hears_english(bot: BotUnderTest) -> None:
    user = bot.slack.add_user("UNONE", name="none")
    del user["locale"]  # an older profile: Slack sends no locale
    assert QUOTA_NOTE["en-US"] in await _failed_note(bot, "UNONE")


async def test_the_models_answer_is_not_translated(bot: BotUnderTest) -> None:
    bot.slack.add_user("UJA", name="hana", locale="ja-JP")
    bot.model.script_reply("Refunds take five days.")
    ts, _ = await bot.mention("how long do refunds take?", user="UJA")
    [reply] = await bot.wait_replies("C1", ts, 1)
    assert "Refunds take five days." in shown(reply)


async def test_help_is_in_the_askers_language(bot: BotUnderTest) -> None:
    bot.slack.add_user("UJA", name="hana", locale="ja-JP")
    bot.slack.add_user("UZT", name="mei", locale="zh-TW")
    bot.slack.add_user("UEN", name="sam", locale="en-US")

    japanese = await command(bot, "help", user="UJA")
    traditional = await command(bot, "help", user="UZT")
    english = await command(bot, "help", user="UEN")

    assert japanese.startswith("*/ai* — このチャンネルのモデルボット設定"), japanese
    assert "`/ai show`：有効な設定と、それぞれの由来" in japanese  # noqa: RUF001
    assert "`model`: 回答するモデル" in japanese  # the schema's help, translated
    assert traditional.startswith("*/ai* — 此頻道的模型機器人設定"), traditional
    assert english.startswith("*/ai* — the model bot's settings for this channel"), english


async def test_the_settings_form_is_in_the_askers_language(bot: BotUnderTest) -> None:
    bot.slack.add_user("UDE", name="jonas", locale="de-DE", is_admin=True)
    assert await command(bot, "config", user="UDE") == ""
    [view] = bot.slack.views.values()
    assert view["title"]["text"] == "Kanaleinstellungen"
    assert view["submit"]["text"] == "Speichern"
    labels = [block["label"]["text"] for block in view["blocks"] if block["type"] == "input"]
    assert "Modell" in labels


async def test_the_workspace_setting_forces_a_language_for_everyone(bot: BotUnderTest) -> None:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True, locale="en-US")
    bot.slack.add_user("UJA", name="hana", locale="ja-JP")

    refused = await command(bot, "set default language klingon")
    assert "language must be one of auto, en, zh-CN, zh-TW, ja, ko, es, fr, de, pt-BR" in refused
    assert "Nothing was saved" in refused
    assert "is now zh-CN for the workspace default" in await command(
        bot, "set default language ZH-cn"
    )

    assert QUOTA_NOTE["zh-CN"] in await _failed_note(bot, "UJA")
    assert QUOTA_NOTE["zh-CN"] in await _failed_note(bot, ADMIN)
    assert (await command(bot, "help", user=ADMIN)).startswith("*/ai* — 本频道的模型机器人设置")
    # Audited like every setting.
    audit = await bot.service.store.list_settings_audit(team_id="T1", channel_id="")
    assert [(row.field, row.new_value) for row in audit] == [("language", "zh-CN")]

    await command(bot, "set default language auto")
    assert QUOTA_NOTE["ja-JP"] in await _failed_note(bot, "UJA")


async def test_the_home_tab_is_in_the_viewers_language(bot: BotUnderTest) -> None:
    bot.slack.add_user("UFR", name="lea", locale="fr-FR")
    await bot.send_event({"type": "app_home_opened", "user": "UFR", "channel": "D1", "tab": "home"})
    await bot.slack.wait_for(lambda: bot.slack.calls_to("views.publish"), timeout=5)
    [published] = bot.slack.calls_to("views.publish")
    view = published.params["view"]
    assert view["blocks"][0]["text"]["text"] == "Réglages du bot de modèles"
    text = json.dumps(view, ensure_ascii=False)
    assert "Valeurs par défaut de l’espace de travail" in text  # noqa: RUF001
    # The default prompts are offered in French; a setting's name stays as typed.
    assert "`suggested_prompts`: Résume ce canal" in text


async def test_a_turn_interrupted_by_a_crash_is_told_in_the_askers_language(
    start_bot: StartBot,
) -> None:
    first = await start_bot()
    first.slack.add_user("UJA", name="kenji", locale="ja-JP")
    first.slack.add_user("UDE", name="anna", locale="de-DE")
    roots = {}
    for user in ("UJA", "UDE"):
        root = first.slack.add_message("C1", user=user, text=f"<@{first.bot_user_id}> hi")
        # A turn the previous run started and never closed (the process died mid-answer).
        await first.service.store.start_turn(
            team_id="T1",
            channel_id="C1",
            thread_ts=root,
            user_id=user,
            user_ts=root,
            event_id=None,
            model="test-model",
        )
        roots[user] = root
    await first.service.stop()

    second = await start_bot()
    for user, expected in (("UJA", INTERRUPTED["ja"]), ("UDE", INTERRUPTED["de"])):
        texts = await second.slack.wait_for(
            lambda user=user: (
                [shown(m) for m in second.slack.bot_replies("C1", roots[user])] or None
            ),
            timeout=10,
        )
        assert texts == [expected]


INTERRUPTED = {
    language: translations(language).gettext(INTERRUPTED_NOTICE) for language in ("ja", "de")
}
