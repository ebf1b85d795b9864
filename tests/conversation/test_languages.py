"""The turn speaks its author's language: the core asks its ``LocaleSource`` for the person who
wrote the message, the workspace's ``language`` setting overrides it, and every note of the turn
(and the sink's own words, read while the turn runs) is in that language. The model's answer is
never touched."""

from __future__ import annotations

from bot.conversation import IncomingMessage
from bot.errors import ModelServerError
from bot.i18n import current
from tests.conversation.conftest import Core
from tests.conversation.fakes import FakeLocales, RecordingSink, RecordingSinks, answer, message

DOWN = ModelServerError("upstream down", status_code=503)


class _LanguageSinks(RecordingSinks):
    """Sinks that note the reader's language when the turn opens them."""

    def __init__(self) -> None:
        super().__init__()
        self.languages: list[str] = []

    def open(self, message: IncomingMessage) -> RecordingSink:
        self.languages.append(current().language)
        return super().open(message)


async def test_a_failure_note_is_in_the_authors_language(core: Core) -> None:
    locales = FakeLocales(U1="ja-JP", U2="en-US", U3="it-IT")
    core.rebuild(locales=locales)
    notes = {}
    for ts, user in (("1.0", "U1"), ("2.0", "U2"), ("3.0", "U3")):
        core.model.then([DOWN])
        await core.handle(message(ts, user_id=user))
        [sink] = core.sinks.for_ts(ts)
        assert sink.failure is not None
        notes[user] = sink.failure[0]
    assert notes["U1"].startswith(":warning: モデルサービスで内部エラーが発生しました")
    assert notes["U2"].startswith(":warning: The model service had an internal error")
    assert notes["U3"] == notes["U2"]  # unsupported: English
    assert locales.asked == ["U1", "U2", "U3"]


async def test_the_workspace_language_is_everyones(core: Core) -> None:
    core.settings.defaults["language"] = "de"  # as the workspace's default would say
    core.rebuild(locales=FakeLocales(U1="ja-JP"))
    core.model.then([DOWN])
    await core.handle(message("1.0"))
    [sink] = core.sinks.for_ts("1.0")
    assert sink.failure is not None
    assert sink.failure[0].startswith(":warning: Beim Modelldienst ist ein interner Fehler")


async def test_the_sink_is_opened_in_the_authors_language_and_the_answer_is_untouched(
    core: Core,
) -> None:
    sinks = core.sinks = _LanguageSinks()
    core.rebuild(locales=FakeLocales(U1="ko-KR"))
    core.model.then(answer("The answer, as the model wrote it.", "resp_1"))
    await core.handle(message("1.0"))
    assert sinks.languages == ["ko"]
    [sink] = core.sinks.for_ts("1.0")
    assert sink.final == "The answer, as the model wrote it."
    assert current().language == "en"  # nothing leaks out of the turn


async def test_a_locale_lookup_that_fails_costs_nothing_but_the_language(core: Core) -> None:
    locales = FakeLocales(U1="ja-JP")
    locales.broken = True
    core.rebuild(locales=locales)
    core.model.then([DOWN])
    await core.handle(message("1.0"))
    [sink] = core.sinks.for_ts("1.0")
    assert sink.failure is not None
    assert sink.failure[0].startswith(":warning: The model service had an internal error")
