"""One message cannot make the bot call Slack without bound (issue 11, case 5): display-name
lookups are cached, coalesced and capped per message; joining a long thread reads a bounded
number of pages, messages and attachments, keeping the newest."""

from __future__ import annotations

import asyncio

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest

# Caps as bot.slack.context sets them (written out so the test also runs on older code).
MAX_NAME_LOOKUPS = 25
MAX_PAGES = 10

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


def user_input(bot: BotUnderTest) -> str:
    body = bot.model_bodies()[-1]
    parts = []
    for item in body["input"]:
        content = item["content"]
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(str(p.get("text", "")) for p in content)
    return "\n".join(parts)


async def test_a_message_mentioning_1500_people_makes_a_bounded_number_of_lookups(
    bot: BotUnderTest,
) -> None:
    for i in range(40):
        bot.slack.add_user(f"UP{i:04d}", name=f"person{i}", display_name=f"Person {i}")
    mentions = " ".join(f"<@UP{i:04d}>" for i in range(1_500))
    ts, _ = await bot.mention(f"who are these? {mentions}")
    await bot.wait_replies("C1", ts, 1, timeout=30)

    lookups = bot.slack.calls_to("users.info")
    # The people named, bounded; and the author once, for their language (and name).
    assert len(lookups) <= MAX_NAME_LOOKUPS + 1
    assert sum(call.params.get("user") == "U1" for call in lookups) == 1
    text = user_input(bot)
    assert "Person 0" in text  # the first ones by name...
    assert "UP1499" in text  # ...the rest by id, nothing dropped


async def test_many_messages_from_one_new_person_cost_one_lookup(bot: BotUnderTest) -> None:
    bot.slack.add_user("UNEW", name="newcomer", display_name="Newcomer")
    roots = await asyncio.gather(
        *(bot.mention(f"question {i}", user="UNEW", channel=f"C{i}") for i in range(12))
    )
    for i, (ts, _) in enumerate(roots):
        await bot.wait_replies(f"C{i}", ts, 1, timeout=30)

    assert len(bot.slack.calls_to("users.info")) == 1


async def test_joining_a_long_thread_reads_a_bounded_part_keeping_the_newest(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(thread_context_chars=1_000_000)
    root = bot.slack.add_message("C1", user="U0", text="the start of a long discussion")
    for i in range(1, 600):
        files = None
        if i % 2 == 0:
            # On Slack's own file host (the fake Slack): files elsewhere are never fetched.
            shot = bot.slack.add_file(f"shot{i}.png", PNG, "image/png", "png")
            if i > 580:
                shot["size"] = 6 * 1024 * 1024  # as Slack declares it: 20 MB hold three
            files = [shot]
        bot.slack.add_message(
            "C1", user=f"U{i}", text=f"message number {i}", thread_ts=root, files=files
        )
    bot.slack.replies_page_size = 100
    await bot.mention("what is this thread about?", thread_ts=root)
    await bot.wait_replies("C1", root, 1, timeout=60)

    pages = bot.slack.calls_to("conversations.replies")
    assert len(pages) <= MAX_PAGES
    # The newest attachments that fit the turn's caps: at most 10 files and 20 MB (by size
    # as Slack declares it): three 6 MB ones, then only small ones.
    downloads = [r["path"].rsplit("/", 1)[-1] for r in bot.slack.file_requests]
    assert len(downloads) == 10
    for kept in ("shot598.png", "shot596.png", "shot594.png"):
        assert kept in downloads
    assert "shot592.png" not in downloads  # a fourth 6 MB one would pass 20 MB
    assert "shot2.png" not in downloads  # the oldest are left out
    text = user_input(bot)
    assert "message number 599" in text
    assert "not read, over this turn's attachment limit" in text
    # Names: a bounded number of lookups for the whole rebuilt thread.
    assert len(bot.slack.calls_to("users.info")) <= 2 * MAX_NAME_LOOKUPS
