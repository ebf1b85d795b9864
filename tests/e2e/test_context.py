"""What the model sees: joined threads with their authors, speakers, Slack markup, files and
images, identity — through signed events into the running service, fakes on loopback."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, message_event, shown
from tests.fakes.slack_server import FakeSlack

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@dataclass
class FileHost:
    """Serves files like Slack's file host: GET with the bot token; records every request."""

    host: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/files/{name}", self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, **dict(request.headers)})
        if not request.headers.get("Authorization", "").startswith("Bearer xoxb-"):
            return web.Response(status=403)
        data, mimetype = self.files[request.match_info["name"]]
        return web.Response(body=data, content_type=mimetype)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/files/{name}"

    def attach(self, name: str, data: bytes, mimetype: str, filetype: str) -> dict[str, Any]:
        self.files[name] = (data, mimetype)
        return {
            "id": f"F{len(self.files)}",
            "name": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "size": len(data),
            "url_private": self.url(name),
        }


def _loopback_alias_works() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


@dataclass
class SlackFiles:
    """Files on Slack's own file host (the fake Slack, on the API's origin)."""

    slack: FakeSlack

    def attach(self, name: str, data: bytes, mimetype: str, filetype: str) -> dict[str, Any]:
        return self.slack.add_file(name, data, mimetype, filetype)

    @property
    def requests(self) -> list[dict[str, str]]:
        return self.slack.file_requests


@pytest.fixture
def slack_files(fake_slack: FakeSlack) -> SlackFiles:
    return SlackFiles(fake_slack)


@pytest.fixture
async def other_host() -> AsyncIterator[FileHost]:
    if not _loopback_alias_works():
        pytest.skip("127.0.0.2 is not usable here: no second loopback host for the test")
    host = FileHost("127.0.0.2")
    await host.start()
    yield host
    assert host.runner is not None
    await host.runner.cleanup()


@pytest.fixture
def people(bot: BotUnderTest) -> BotUnderTest:
    bot.slack.add_user("U1", name="ana.s", display_name="Ana")
    bot.slack.add_user("U2", name="bo", display_name="Bo")
    bot.slack.add_user("U3", name="cy", display_name="Cy Young")
    return bot


async def _share(
    bot: BotUnderTest, text: str, files: list[dict[str, Any]], *, thread_ts: str | None = None
) -> str:
    """A mention with attachments (Slack sends it as app_mention with ``files``)."""
    full = f"<@{bot.slack.bot_user_id}> {text}"
    ts = bot.slack.add_message("C1", user="U1", text=full, thread_ts=thread_ts, files=files)
    event: dict[str, Any] = {
        "type": "app_mention", "user": "U1", "text": full, "ts": ts, "channel": "C1",
        "event_ts": ts, "files": files,
    }  # fmt: skip
    if thread_ts:
        event["thread_ts"] = thread_ts
    await bot.send_event(event)
    return thread_ts or ts


async def test_joining_a_thread_brings_its_earlier_messages_with_their_authors(
    people: BotUnderTest,
) -> None:
    bot = people
    bot.slack.replies_page_size = 2  # the history is read page by page
    root = bot.slack.add_message("C1", user="U1", text="Shall we ship on Friday?")
    for user, text in [
        ("U2", "I think Thursday is safer"),
        ("U3", "Ops is away on Friday"),
        ("U1", "ok <@U2>, Thursday then"),
        ("U2", "see <https://example.com/plan|the plan> &amp; the checklist"),
    ]:
        bot.slack.add_message("C1", user=user, text=text, thread_ts=root)

    await bot.mention("what did Bo say?", thread_ts=root)
    await bot.wait_replies("C1", root, 1)
    [request] = bot.model_bodies()
    assert "previous_response_id" not in request
    assert request["input"] == [
        {"role": "user", "content": "Ana: Shall we ship on Friday?"},
        {"role": "user", "content": "Bo: I think Thursday is safer"},
        {"role": "user", "content": "Cy Young: Ops is away on Friday"},
        {"role": "user", "content": "Ana: ok @Bo, Thursday then"},
        {"role": "user", "content": "Bo: see the plan (https://example.com/plan) & the checklist"},
        {"role": "user", "content": "Ana: what did Bo say?"},
    ]
    # Later turns chain as usual, without the history again.
    await bot.reply("thanks", thread_ts=root)
    await bot.wait_replies("C1", root, 2)
    follow_up = bot.model_bodies()[1]
    assert follow_up["previous_response_id"] == bot.model.response_ids[0]
    assert follow_up["input"] == [{"role": "user", "content": "Ana: thanks"}]


async def test_a_small_history_budget_keeps_the_newest_messages(start_bot: StartBot) -> None:
    bot = await start_bot(thread_context_chars=1_000)
    root = bot.slack.add_message("C1", user="U2", text="old " + "x" * 900)
    bot.slack.add_message("C1", user="U2", text="newer " + "y" * 500, thread_ts=root)
    bot.slack.add_message("C1", user="U2", text="newest " + "z" * 300, thread_ts=root)
    await bot.mention("summarise", thread_ts=root)
    await bot.wait_replies("C1", root, 1)
    contents = [item["content"] for item in bot.model_bodies()[0]["input"]]
    assert [c.split(" ")[1] for c in contents] == ["newer", "newest", "summarise"]


async def test_people_talking_to_each_other_in_a_bot_thread_are_left_alone(
    people: BotUnderTest,
) -> None:
    bot = people
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    await bot.reply("<@U2> what do you think?", thread_ts=root)
    await bot.reply("and you, bot?", thread_ts=root)
    await bot.wait_replies("C1", root, 2)
    assert [b["input"][-1]["content"] for b in bot.model_bodies()] == [
        "Ana: start",
        "Ana: and you, bot?",
    ]


async def test_rich_text_is_used_when_text_is_empty(people: BotUnderTest) -> None:
    bot = people
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    blocks = [
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [
                        {"type": "text", "text": "ping "},
                        {"type": "user", "user_id": "U3"},
                        {"type": "text", "text": " about "},
                        {"type": "link", "url": "https://x.test", "text": "this"},
                    ],
                }
            ],
        }
    ]
    ts = bot.slack.add_message("C1", user="U1", text="", thread_ts=root)
    await bot.send_event(
        message_event(channel="C1", user="U1", text="", ts=ts, thread_ts=root, blocks=blocks)
    )
    await bot.wait_idle()
    # It names someone other than the bot: people talking, so no answer.
    assert len(bot.model_bodies()) == 1


async def test_an_image_becomes_an_input_image_fetched_with_the_bot_token(
    people: BotUnderTest, slack_files: SlackFiles
) -> None:
    bot = people
    image = slack_files.attach("cat.png", PNG, "image/png", "png")
    root = await _share(bot, "what is this?", [image])
    await bot.wait_replies("C1", root, 1)
    content = bot.model_bodies()[0]["input"][0]["content"]
    assert content[0] == {"type": "input_text", "text": "Ana: what is this?"}
    assert content[1]["type"] == "input_image"
    assert content[1]["image_url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    [fetch] = slack_files.requests
    assert fetch["Authorization"] == f"Bearer {bot.slack.bot_token}"


async def test_text_files_and_pdfs_become_text_and_file_parts(
    people: BotUnderTest, slack_files: SlackFiles
) -> None:
    bot = people
    notes = slack_files.attach("notes.md", b"# Plan\n- ship", "text/markdown", "markdown")
    report = slack_files.attach("report.pdf", PDF, "application/pdf", "pdf")
    root = await _share(bot, "read these", [notes, report])
    await bot.wait_replies("C1", root, 1)
    parts = bot.model_bodies()[0]["input"][0]["content"]
    assert parts[1] == {"type": "input_text", "text": "File notes.md:\n```\n# Plan\n- ship\n```"}
    assert parts[2] == {
        "type": "input_file",
        "filename": "report.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
    }


async def test_unreadable_files_are_skipped_with_a_notice_first_in_the_answer(
    start_bot: StartBot, slack_files: SlackFiles, other_host: FileHost
) -> None:
    bot = await start_bot(file_max_bytes=10_000)
    elsewhere = other_host.attach("evil.png", PNG, "image/png", "png")
    big = slack_files.attach("huge.png", b"x" * 20_000, "image/png", "png")
    odd = slack_files.attach("deck.key", b"PK..", "application/x-iwork-keynote", "keynote")
    fine = slack_files.attach("ok.png", PNG, "image/png", "png")
    bot.model.script_reply("Here is what I see.")
    root = await _share(bot, "look", [elsewhere, big, odd, fine])
    [reply] = await bot.wait_replies("C1", root, 1)

    assert other_host.requests == []  # never fetched: not Slack's file host
    text = shown(reply)
    assert text.startswith("_I couldn't read evil.png: it is not stored on Slack._\n")
    assert "_I couldn't read huge.png: it is larger than" in text
    assert "_I couldn't read deck.key: I can't read application/x-iwork-keynote files._" in text
    assert text.endswith("\n\nHere is what I see.")
    parts = bot.model_bodies()[0]["input"][0]["content"]
    assert [p["type"] for p in parts] == ["input_text", "input_image"]  # only ok.png
    assert [r["path"].rsplit("/", 1)[-1] for r in slack_files.requests] == ["ok.png"]


async def test_a_rebuilt_chain_sees_the_earlier_images_too(
    people: BotUnderTest, slack_files: SlackFiles
) -> None:
    bot = people
    image = slack_files.attach("chart.png", PNG, "image/png", "png")
    root = await _share(bot, "remember this chart", [image])
    await bot.wait_replies("C1", root, 1)
    bot.model.forget_all()
    await bot.reply("what was in the chart?", thread_ts=root)
    await bot.wait_replies("C1", root, 2)
    rebuilt = bot.model_bodies()[2]
    assert "previous_response_id" not in rebuilt
    first = rebuilt["input"][0]["content"]
    assert first[0] == {"type": "input_text", "text": "Ana: remember this chart"}
    assert first[1]["type"] == "input_image"
    assert rebuilt["input"][1]["role"] == "assistant"
    assert rebuilt["input"][2] == {"role": "user", "content": "Ana: what was in the chart?"}


async def test_a_dm_has_no_speaker_prefix(people: BotUnderTest) -> None:
    ts, _ = await people.dm("hello <@U2>")
    await people.wait_replies("D1", ts, 1)
    assert people.model_bodies()[0]["input"] == [{"role": "user", "content": "hello @Bo"}]


async def test_identity_safety_identifier_cache_key_and_metadata(people: BotUnderTest) -> None:
    bot = people
    a, _ = await bot.mention("one")
    await bot.wait_replies("C1", a, 1)
    await bot.reply("two", thread_ts=a)
    await bot.wait_replies("C1", a, 2)
    b, _ = await bot.mention("three", user="U2")
    await bot.wait_replies("C1", b, 1)
    one, two, three = bot.model_bodies()
    assert one["safety_identifier"] == two["safety_identifier"]  # stable per person
    assert one["safety_identifier"] != three["safety_identifier"]  # different across people
    for body in (one, two, three):
        assert "U1" not in body["safety_identifier"]
        assert "U2" not in body["safety_identifier"]
        assert "T1" not in body["safety_identifier"]
        assert body["truncation"] == "auto"
    assert one["prompt_cache_key"] == two["prompt_cache_key"] != three["prompt_cache_key"]
    assert one["metadata"] == {"slack_team": "T1", "slack_channel": "C1", "slack_thread": a}
