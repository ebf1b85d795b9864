"""User stories of the core path, driven through signed Slack requests into the running
service, with the fake Slack and fake model on loopback and a real SQLite file."""

from __future__ import annotations

import asyncio

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown


async def test_a_mention_is_answered_in_a_thread_rooted_at_the_mention(bot: BotUnderTest) -> None:
    bot.model.script_reply("Hello! **Four** is the answer.")
    ts, _ = await bot.mention("what is 2+2?")

    replies = await bot.wait_replies("C1", ts, 1)

    assert replies[0]["thread_ts"] == ts
    assert shown(replies[0]) == "Hello! **Four** is the answer."
    [request] = bot.model_bodies()
    assert request["input"] == [{"role": "user", "content": "U1: what is 2+2?"}]
    assert "previous_response_id" not in request
    assert request["model"] == "test-model"
    assert request["instructions"]  # sent on every turn: not carried by previous_response_id
    assert request["stream"] is True


async def test_follow_ups_in_the_thread_continue_one_chain_without_a_mention(
    bot: BotUnderTest,
) -> None:
    ts, _ = await bot.mention("first")
    await bot.wait_replies("C1", ts, 1)
    await bot.reply("second", thread_ts=ts)
    await bot.wait_replies("C1", ts, 2)
    await bot.reply("third", thread_ts=ts)
    await bot.wait_replies("C1", ts, 3)

    first, second, third = bot.model_bodies()
    ids = bot.model.response_ids
    assert "previous_response_id" not in first
    assert second["previous_response_id"] == ids[0]
    assert third["previous_response_id"] == ids[1]
    assert third["input"] == [{"role": "user", "content": "U1: third"}]
    assert all(b["instructions"] == first["instructions"] for b in (second, third))


async def test_separate_threads_keep_separate_chains(bot: BotUnderTest) -> None:
    a, _ = await bot.mention("thread A")
    await bot.wait_replies("C1", a, 1)
    b, _ = await bot.mention("thread B")
    await bot.wait_replies("C1", b, 1)
    await bot.reply("more A", thread_ts=a)
    await bot.wait_replies("C1", a, 2)

    _first_a, first_b, second_a = bot.model_bodies()
    assert "previous_response_id" not in first_b
    assert second_a["previous_response_id"] == bot.model.response_ids[0]


async def test_a_mention_inside_an_existing_thread_answers_in_that_thread(
    bot: BotUnderTest,
) -> None:
    parent = bot.slack.add_message("C1", user="U2", text="people talking")
    ts, _ = await bot.mention("join us", thread_ts=parent)
    replies = await bot.wait_replies("C1", parent, 1)
    assert replies[0]["thread_ts"] == parent
    assert ts != parent


async def test_messages_not_for_the_bot_never_reach_the_model(bot: BotUnderTest) -> None:
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    other_thread = bot.slack.add_message("C1", user="U2", text="unrelated")

    ignored = [
        # a top-level channel message without a mention
        {"text": "chit chat", "thread_ts": None},
        # a reply in a thread the bot is not part of
        {"text": "not for you", "thread_ts": other_thread},
        # bot messages (by bot_id, whatever the subtype), the bot's own included
        {"text": "beep", "thread_ts": root, "bot_id": "B999"},
        {"text": "me", "thread_ts": root, "bot_id": bot.slack.bot_id, "user": "UBOT"},
        # edits, deletions and other subtypes
        {"text": "edited", "thread_ts": root, "subtype": "message_changed"},
        {"text": "", "thread_ts": root, "subtype": "message_deleted"},
        {"text": "joined", "thread_ts": root, "subtype": "channel_join"},
    ]
    for spec in ignored:
        extra = {k: v for k, v in spec.items() if k not in {"text", "thread_ts", "user"}}
        user = str(spec.get("user", "U1"))
        ts = bot.slack.add_message(
            "C1", user=user, text=str(spec["text"]), thread_ts=spec["thread_ts"]
        )  # type: ignore[arg-type]
        from tests.e2e.harness import message_event

        await bot.send_event(
            message_event(
                channel="C1",
                user=user,
                text=str(spec["text"]),
                ts=ts,
                thread_ts=spec["thread_ts"],  # type: ignore[arg-type]
                **extra,
            )
        )
    # An edited mention re-sends app_mention with an `edited` field: never a new turn.
    await bot.send_event(
        {
            "type": "app_mention",
            "user": "U1",
            "text": f"<@{bot.slack.bot_user_id}> start!",
            "ts": root,
            "channel": "C1",
            "event_ts": root,
            "edited": {"user": "U1", "ts": "1.2"},
        }
    )
    # A sentinel that must be answered: once it is, every earlier event has been handled.
    sentinel, _ = await bot.mention("sentinel")
    await bot.wait_replies("C1", sentinel, 1)
    await bot.wait_idle()

    assert [b["input"][-1]["content"] for b in bot.model_bodies()] == ["U1: start", "U1: sentinel"]
    assert len(bot.slack.bot_replies("C1", root)) == 1


async def test_file_share_is_a_human_message(bot: BotUnderTest) -> None:
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    await bot.reply(
        "see attached",
        thread_ts=root,
        subtype="file_share",
        files=[{"id": "F1", "name": "notes.txt"}],
    )
    await bot.wait_replies("C1", root, 2)
    assert bot.model_bodies()[1]["input"] == [{"role": "user", "content": "U1: see attached"}]


async def test_retries_and_the_mention_message_pair_produce_one_answer(
    bot: BotUnderTest,
) -> None:
    bot.model.script_reply("only once", delay=0.3)
    ts, event_id = await bot.mention("hi")
    # Slack's retries of the same event, and the `message` copy of the mention.
    mention_event = bot.sent[-1]["event"]
    await bot.send_event(mention_event, event_id=event_id, retry_num=1)
    await bot.send_event(mention_event, event_id=event_id, retry_num=2)
    from tests.e2e.harness import message_event

    await bot.send_event(message_event(channel="C1", user="U1", text=mention_event["text"], ts=ts))
    await bot.wait_replies("C1", ts, 1)
    sentinel, _ = await bot.mention("sentinel")
    await bot.wait_replies("C1", sentinel, 1)
    await bot.wait_idle()

    assert len(bot.slack.bot_replies("C1", ts)) == 1
    assert len(bot.model_bodies()) == 2  # "hi" once, and the sentinel


async def test_two_quick_messages_in_one_thread_do_not_fork_the_chain(
    bot: BotUnderTest,
) -> None:
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    bot.model.script_reply("slow answer", delay=0.5)
    bot.model.script_reply("fast answer")
    await asyncio.gather(
        bot.reply("one", thread_ts=root),
        bot.reply("two", thread_ts=root),
    )
    await bot.wait_replies("C1", root, 3)

    _, one, two = bot.model_bodies()
    ids = bot.model.response_ids
    assert one["previous_response_id"] == ids[0]
    assert two["previous_response_id"] == ids[1]  # chained to "one", not to the root


async def test_a_failed_call_says_so_plainly_and_the_chain_stays_intact(
    bot: BotUnderTest,
) -> None:
    root, _ = await bot.mention("start")
    await bot.wait_replies("C1", root, 1)
    bot.model.script_error(
        429,
        {
            "error": {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
    )
    await bot.reply("this fails", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 2)
    notice = shown(replies[1])
    assert "quota" in notice.lower()
    assert "Traceback" not in notice
    assert "sk-" not in notice

    await bot.reply("and this works", thread_ts=root)
    await bot.wait_replies("C1", root, 3)
    await bot.wait_idle()
    bodies = bot.model_bodies()
    assert len(bodies) == 3  # insufficient_quota is never retried
    assert bodies[2]["previous_response_id"] == bot.model.response_ids[0]
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "failed", "completed"]
    assert turns[1].error_code == "insufficient_quota"


async def test_each_failure_kind_gets_its_own_plain_message(bot: BotUnderTest) -> None:
    cases = [
        (
            404,
            {
                "error": {
                    "message": "The model `nope` does not exist",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "model_not_found",
                }
            },
            "model",
        ),
        (
            400,
            {
                "error": {
                    "message": "Your input exceeds the context window",
                    "type": "invalid_request_error",
                    "param": "input",
                    "code": "context_length_exceeded",
                }
            },
            "new thread",
        ),
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key provided: sk-...",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            "credentials",
        ),
    ]
    for status, body, words in cases:
        bot.model.script_error(status, body)
        ts, _ = await bot.mention(f"case {status}")
        [reply] = await bot.wait_replies("C1", ts, 1)
        assert words in shown(reply), shown(reply)
        assert body["error"]["message"] not in shown(reply)


async def test_a_lost_chain_is_rebuilt_from_the_thread_and_continues(bot: BotUnderTest) -> None:
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    await bot.reply("I like tea", thread_ts=root)
    await bot.wait_replies("C1", root, 2)
    bot.model.forget_all()  # the endpoint lost every stored response

    await bot.reply("what is my name?", thread_ts=root)
    await bot.wait_replies("C1", root, 3)
    await bot.reply("thanks", thread_ts=root)
    await bot.wait_replies("C1", root, 4)

    bodies = bot.model_bodies()
    lost, rebuilt, after = bodies[2], bodies[3], bodies[4]
    assert lost["previous_response_id"] == bot.model.response_ids[1]
    assert "previous_response_id" not in rebuilt
    roles = [(item["role"], item["content"]) for item in rebuilt["input"]]
    answers = [shown(m) for m in bot.slack.bot_replies("C1", root)]
    assert roles == [
        ("user", "U1: my name is Ana"),
        ("assistant", answers[0]),
        ("user", "U1: I like tea"),
        ("assistant", answers[1]),
        ("user", "U1: what is my name?"),
    ]
    assert after["previous_response_id"] == bot.model.response_ids[2]  # the new chain


async def test_a_restart_keeps_the_chain(start_bot: StartBot) -> None:
    bot = await start_bot()
    root, _ = await bot.mention("remember me")
    await bot.wait_replies("C1", root, 1)
    await bot.service.stop()

    bot = await start_bot()
    await bot.reply("still there?", thread_ts=root)
    await bot.wait_replies("C1", root, 2)
    assert bot.model_bodies()[1]["previous_response_id"] == bot.model.response_ids[0]


async def test_a_long_answer_is_split_into_messages_within_slack_limits(
    bot: BotUnderTest,
) -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(60)]
    code = "```python\n" + "\n".join(f"print({i})" for i in range(900)) + "\n```"
    answer = "\n\n".join([*paragraphs[:30], code, *paragraphs[30:]])
    assert len(answer) > 40_000
    bot.model.script_reply(answer)
    ts, _ = await bot.mention("write a lot")

    await bot.wait_idle(timeout=15)
    replies = bot.slack.bot_replies("C1", ts)
    assert len(replies) >= 4
    chunks = [shown(r) for r in replies]
    assert all(len(c) <= 12_000 for c in chunks)
    assert all(len(r["text"]) <= 40_000 for r in replies)
    # Every code chunk opens and closes its fence; no paragraph is cut.
    assert all(c.count("```") % 2 == 0 for c in chunks)
    joined = "\n".join(chunks)
    for paragraph in paragraphs:
        assert paragraph.strip() in joined
    for i in range(900):
        assert f"print({i})\n" in joined + "\n"


async def test_a_dm_needs_no_mention_and_replies_in_its_own_thread(bot: BotUnderTest) -> None:
    ts, _ = await bot.dm("hello in private")
    [reply] = await bot.wait_replies("D1", ts, 1)
    assert reply["thread_ts"] == ts
    await bot.dm("and a follow-up", thread_ts=ts)
    await bot.wait_replies("D1", ts, 2)
    first, second = bot.model_bodies()
    assert first["input"] == [{"role": "user", "content": "hello in private"}]
    assert second["previous_response_id"] == bot.model.response_ids[0]


async def test_a_lost_chain_reported_inside_the_stream_is_rebuilt_too(bot: BotUnderTest) -> None:
    root, _ = await bot.mention("hello")
    await bot.wait_replies("C1", root, 1)
    bot.model.stream_failure(
        "", delta_count=0, code="previous_response_not_found", message="Previous response not found"
    )
    await bot.reply("again", thread_ts=root)
    replies = await bot.wait_replies("C1", root, 2)
    assert "again" in shown(replies[1])  # the fake echoes the question: a real answer
    rebuilt = bot.model_bodies()[2]
    assert "previous_response_id" not in rebuilt
    assert [item["role"] for item in rebuilt["input"]] == ["user", "assistant", "user"]
