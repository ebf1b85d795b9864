"""A Slack thread stays one conversation whatever the model endpoint does with chains (#12).

User stories through the real boundaries: signed Slack events into the running service, the
fake Slack and the fake Responses server (in the modes of real relays: ignoring unknown ids,
forgetting after a restart, never keeping chains, rewriting error codes, mangled streams) on
loopback, a real SQLite file. Each story checks what the person sees (the whole right answer,
or a specific note) and that the next message continues with the conversation.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.conversation import RESENT_NOTE, endpoint_key
from bot.slack.reply import EMPTY_ANSWER
from storage.conversation_state import ConversationStateStore
from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown
from tests.fakes.responses_server import FakeResponsesServer, recall_answerer, user_texts

# A first answer long enough that losing it is plain in the next turn's input tokens.
LONG_ANSWER = "Nice to meet you, Ana. " + " ".join(f"word{i}" for i in range(80))


def _metric(bot: BotUnderTest, name: str, **labels: str) -> float:
    for family in bot.service.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def _capability(bot: BotUnderTest, model: str = "test-model") -> Any:
    store = ConversationStateStore(bot.service.store)
    return await store.capability(endpoint=endpoint_key(bot.model.base_url), model=model)


async def _say(bot: BotUnderTest, text: str, root: str, count: int) -> str:
    """Post ``text`` in the thread and return what the bot's ``count``-th message shows."""
    await bot.reply(text, thread_ts=root)
    return shown((await bot.wait_replies("C1", root, count))[count - 1])


# ------------------------------------------------------------------ silently ignored chains


async def test_a_relay_that_forgets_chains_on_restart_and_answers_anyway_is_caught(
    bot: BotUnderTest,
) -> None:
    """LiteLLM's proxy without its database, small relays: after a restart they answer 200 to
    the old previous_response_id and the model sees only the newest message. The turn's usage
    gives it away; the turn is answered again with the conversation, and from then on the
    endpoint+model gets transcripts."""
    bot.model.chain_mode = "ignore_unknown"
    bot.model.answerer = recall_answerer
    bot.model.reply(LONG_ANSWER)
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    bot.model.restart()

    answer = await _say(bot, "what is my name?", root, 2)

    # The person sees the right answer (it saw the first message) and one note, in place of
    # the answer that had missed the context: still two messages in the thread.
    assert "U1: my name is Ana" in answer
    assert answer.startswith(f"_{RESENT_NOTE}_")
    assert len(bot.slack.bot_replies("C1", root)) == 2
    chained, again = bot.model.requests[1], bot.model.requests[2]
    assert chained.body["previous_response_id"] == bot.model.response_ids[0]
    assert user_texts({"input": chained.seen}) == ["U1: what is my name?"]  # history dropped
    assert "previous_response_id" not in again.body
    assert [(i["role"], i["content"]) for i in again.body["input"]] == [
        ("user", "U1: my name is Ana"),
        ("assistant", LONG_ANSWER),
        ("user", "U1: what is my name?"),
    ]
    record = await _capability(bot)
    assert (record.chains, record.chains_source) == ("ignored", "continuity")
    assert _metric(bot, "slackbot_conversation_transcript_switches_total", source="continuity")
    assert _metric(bot, "slackbot_conversation_recoveries_total", reason="continuity") == 1
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "completed"]
    assert turns[1].response_id == bot.model.response_ids[2]

    # The next message continues with the whole conversation, sent by the bot; no more notes.
    third = await _say(bot, "and what do I like?", root, 3)
    body = bot.model.requests[3].body
    assert "previous_response_id" not in body
    assert user_texts(body) == [
        "U1: my name is Ana",
        "U1: what is my name?",
        "U1: and what do I like?",
    ]
    assert RESENT_NOTE not in third


async def test_a_relay_that_never_keeps_chains_is_found_by_the_start_up_probe(
    start_bot: StartBot, fake_model: FakeResponsesServer
) -> None:
    """A relay that translates to Chat Completions ignores previous_response_id, even a
    made-up one: the background probe at start-up finds out, stores it with its time, and
    follow-ups carry the conversation themselves from the first one."""
    fake_model.chain_mode = "ignore_all"
    fake_model.answerer = recall_answerer
    bot = await start_bot(conversation_probe=True)
    await bot.service.capabilities.wait_idle()

    [probe] = bot.model.requests
    assert probe.body["previous_response_id"].startswith("resp_")
    assert probe.body["store"] is False
    assert probe.body["max_output_tokens"] == 16
    record = await _capability(bot)
    assert (record.chains, record.chains_source) == ("ignored", "probe")
    assert _metric(bot, "slackbot_conversation_transcript_switches_total", source="probe") == 1

    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    answer = await _say(bot, "what is my name?", root, 2)
    assert "U1: my name is Ana" in answer
    assert RESENT_NOTE not in answer  # nothing was lost in this thread: nothing to say
    assert "previous_response_id" not in bot.model_bodies()[2]


async def test_a_conforming_endpoint_is_probed_as_keeping_chains_and_chained(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(conversation_probe=True)
    await bot.service.capabilities.wait_idle()
    record = await _capability(bot)
    assert (record.chains, record.chains_source) == ("kept", "probe")
    assert bot.model.response_ids == []  # the probe was refused, as it must be

    root, _ = await bot.mention("hello")
    await bot.wait_replies("C1", root, 1)
    await _say(bot, "more", root, 2)
    assert bot.model_bodies()[2]["previous_response_id"] == bot.model.response_ids[0]


# ------------------------------------------------------------------ lost chains, any wording


@pytest.mark.parametrize("style", ["openai", "litellm", "one-api", "new-api", "stream"])
async def test_a_lost_chain_is_recognised_however_a_relay_words_it(
    bot: BotUnderTest, style: Any
) -> None:
    """OpenAI's code, LiteLLM's ``"code": "400"`` with the words in the message, one-api's and
    new-api's ``bad_response_status_code``, or ``response.failed`` in a 200 stream with no code:
    the conversation is re-sent once from the bot's own transcript (Slack's thread is not read)
    and continues on a fresh chain."""
    bot.model.error_style = style
    bot.model.answerer = recall_answerer
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    await _say(bot, "I like tea", root, 2)
    bot.model.forget_all()

    answer = await _say(bot, "what do you know?", root, 3)

    assert "U1: my name is Ana | U1: I like tea | U1: what do you know?" in answer
    assert not answer.startswith(":warning:")
    lost, resent = bot.model_bodies()[2:4]
    assert lost["previous_response_id"] == bot.model.response_ids[1]
    assert "previous_response_id" not in resent
    assert [item["role"] for item in resent["input"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert bot.slack.calls_to("conversations.replies") == []
    assert _metric(bot, "slackbot_conversation_recoveries_total", reason="lost_chain") == 1
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed"] * 3
    assert turns[2].previous_response_id is None

    await _say(bot, "thanks", root, 4)
    assert bot.model_bodies()[4]["previous_response_id"] == bot.model.response_ids[2]


async def test_a_head_that_failed_as_lost_is_never_sent_again(bot: BotUnderTest) -> None:
    bot.model.error_style = "litellm"
    bot.model.answerer = recall_answerer
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    lost_head = bot.model.response_ids[0]
    bot.model.forget_all()
    # The re-send fails too (the endpoint is having a bad minute): both attempts get a 503.
    overloaded = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    bot.model.error(503, overloaded)
    bot.model.error(503, overloaded)

    notice = await _say(bot, "what is my name?", root, 2)
    assert (
        notice == ":warning: The model service had an internal error. Please try again in a moment."
    )
    thread = await bot.service.store.find_thread(team_id="T1", channel_id="C1", thread_ts=root)
    assert thread is not None
    assert thread.head_response_id is None

    answer = await _say(bot, "still there?", root, 3)
    bodies = bot.model_bodies()
    assert [b.get("previous_response_id") for b in bodies].count(lost_head) == 1
    assert "previous_response_id" not in bodies[-1]
    assert "U1: my name is Ana" in answer
    assert "U1: what is my name?" in answer
    await _say(bot, "good", root, 4)
    assert bot.model_bodies()[-1]["previous_response_id"] == bot.model.response_ids[-2]


UNEXPLAINED_4XX = [
    pytest.param(
        400,
        {"error": {"message": "Bad Request", "type": "invalid_request_error", "code": None}},
        id="bare-400",
    ),
    pytest.param(
        400,
        # one-api's wrapper when the upstream's body could not be read.
        {
            "error": {
                "message": "bad response status code 400",
                "type": "upstream_error",
                "param": "400",
                "code": "bad_response_status_code",
            }
        },
        id="one-api-wrapper",
    ),
    pytest.param(422, {"detail": "Unprocessable Entity"}, id="fastapi-422"),
]


@pytest.mark.parametrize(("status", "body"), UNEXPLAINED_4XX)
async def test_a_chained_call_refused_without_a_reason_is_sent_once_more_without_the_chain(
    bot: BotUnderTest, status: int, body: dict[str, Any]
) -> None:
    bot.model.answerer = recall_answerer
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    bot.model.error(status, body)

    answer = await _say(bot, "what is my name?", root, 2)

    assert "U1: my name is Ana | U1: what is my name?" in answer
    refused, resent = bot.model_bodies()[1:]
    assert refused["previous_response_id"] == bot.model.response_ids[0]
    assert "previous_response_id" not in resent
    assert _metric(bot, "slackbot_conversation_recoveries_total", reason="refused") == 1


CLEARLY_SOMETHING_ELSE = [
    pytest.param(
        403,
        {
            "error": {
                "message": "user quota is not enough",
                "type": "new_api_error",
                "code": "insufficient_user_quota",
            }
        },
        "quota is used up",
        id="new-api-quota",
    ),
    pytest.param(
        503,
        {
            "error": {
                "code": "model_not_found",
                "message": "No available channel for model test-model under group default "
                "(distributor) (request id: 20261204120000000000000)",
                "type": "new_api_error",
            }
        },
        "was not found at the model service",
        id="new-api-no-channel",
    ),
    pytest.param(
        400,
        {
            "error": {
                "message": "litellm.BadRequestError: /responses: Invalid model name passed in "
                "model=test-model. Call `/v1/models` to view available models for your key.",
                "type": "None",
                "param": "None",
                "code": "400",
            }
        },
        "was not found at the model service",
        id="litellm-unknown-model",
    ),
    pytest.param(
        400,
        {
            "error": {
                "message": "Unsupported parameter: 'temperature' is not supported with this model.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "unsupported_parameter",
            }
        },
        "channel's settings",
        id="bad-setting",
    ),
    pytest.param(
        429,
        {
            "error": {
                "code": "429",
                "message": "Requests to the Responses_Create Operation under Azure OpenAI API "
                "version 2025-03-01-preview have exceeded token rate limit of your current "
                "OpenAI S0 pricing tier. Please retry after 60 seconds.",
            }
        },
        "rate-limiting",
        id="azure-rate-limit",
    ),
]


@pytest.mark.parametrize(("status", "body", "words"), CLEARLY_SOMETHING_ELSE)
async def test_a_refusal_that_names_something_else_is_explained_not_resent(
    start_bot: StartBot, status: int, body: dict[str, Any], words: str
) -> None:
    bot = await start_bot(model_max_retries=0)
    root, _ = await bot.mention("hello")
    await bot.wait_replies("C1", root, 1)
    bot.model.error(status, body)

    notice = await _say(bot, "and now?", root, 2)

    assert words in notice, notice
    assert len(bot.model_bodies()) == 2  # no re-send
    await _say(bot, "again", root, 3)
    assert bot.model_bodies()[2]["previous_response_id"] == bot.model.response_ids[0]


# ------------------------------------------------------------------ mangled answer streams

TEXT_VARIANTS = [
    pytest.param({"flatten_reasoning": True}, id="reasoning-flattened-into-the-text"),
    pytest.param({"text_in_done_only": True}, id="text-only-in-output_text.done"),
    pytest.param({"body_as": "text/plain"}, id="json-body-as-text/plain"),
    pytest.param({"body_as": "text/event-stream"}, id="json-body-as-event-stream"),
    pytest.param({"end_with_done": True}, id="[DONE]-without-response.completed"),
]


@pytest.mark.parametrize("variant", TEXT_VARIANTS)
async def test_the_whole_right_answer_is_shown_whatever_the_stream_looked_like(
    bot: BotUnderTest, variant: dict[str, Any]
) -> None:
    bot.model.answerer = recall_answerer
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    bot.model.reply("Your name is Ana, as you said.", delta_count=4, **variant)

    answer = await _say(bot, "what is my name?", root, 2)

    assert answer == "Your name is Ana, as you said."  # no reasoning, no note, not empty
    assert answer != EMPTY_ANSWER
    assert "Thinking about the question." not in answer
    turns = await bot.turns("C1", root)
    assert [t.status for t in turns] == ["completed", "completed"]
    assert turns[1].response_id == bot.model.response_ids[1]
    # The next message continues the chain from that answer, with the whole conversation.
    follow_up = await _say(bot, "and then?", root, 3)
    assert bot.model_bodies()[2]["previous_response_id"] == bot.model.response_ids[1]
    assert "U1: my name is Ana | U1: what is my name? | U1: and then?" in follow_up
    assert len(bot.slack.bot_replies("C1", root)) == 3


# ------------------------------------------------------------------ transcript mode


async def test_transcript_mode_sends_the_conversation_itself_and_never_a_chain(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(conversation_state="transcript")
    bot.model.answerer = recall_answerer
    bot.slack.add_user("U1", name="ana", display_name="Ana")
    bot.slack.add_user("U2", name="bo", display_name="Bo")
    root, _ = await bot.mention("my name is Ana")
    await bot.wait_replies("C1", root, 1)
    await _say(bot, "remember it", root, 2)
    await bot.mention("and I am Bo", thread_ts=root, user="U2")
    answer = shown((await bot.wait_replies("C1", root, 3))[2])

    bodies = bot.model_bodies()
    assert all("previous_response_id" not in body for body in bodies)
    assert user_texts(bodies[2]) == ["Ana: my name is Ana", "Ana: remember it", "Bo: and I am Bo"]
    assert [item["role"] for item in bodies[2]["input"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert "Ana: my name is Ana" in answer
    assert bot.slack.calls_to("conversations.replies") == []


async def test_a_channel_can_be_switched_to_transcripts_by_an_admin(bot: BotUnderTest) -> None:
    from tests.e2e.test_slash_command import ADMIN, command

    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    assert "conversation_state must be one of auto, chain, transcript" in await command(
        bot, "set conversation_state sometimes"
    )
    assert "transcript" in await command(bot, "set conversation_state transcript")
    root, _ = await bot.mention("one")
    await bot.wait_replies("C1", root, 1)
    await _say(bot, "two", root, 2)
    other, _ = await bot.mention("elsewhere", channel="C2")
    await bot.wait_replies("C2", other, 1)
    await bot.reply("more", thread_ts=other, channel="C2")
    await bot.wait_replies("C2", other, 2)

    _one, two, _, more = bot.model_bodies()
    assert "previous_response_id" not in two  # C1: transcripts
    assert user_texts(two) == ["U1: one", "U1: two"]
    assert more["previous_response_id"] == bot.model.response_ids[2]  # C2: still chained


async def test_a_long_transcript_keeps_the_newest_messages_within_the_budget(
    start_bot: StartBot,
) -> None:
    bot = await start_bot(conversation_state="transcript", thread_context_chars=1_000)
    root, _ = await bot.mention("first question")
    await bot.wait_replies("C1", root, 1)
    for n in range(2, 6):
        bot.model.reply(f"answer {n} " + "x" * 300)
        await _say(bot, f"question {n}", root, n)
    bot.model.reply("done")
    await _say(bot, "last question", root, 6)

    last = bot.model_bodies()[-1]["input"]
    texts = [item["content"] for item in last]
    assert texts[-1] == "U1: last question"
    assert "U1: first question" not in texts  # the oldest went first
    assert sum(len(t) for t in texts[:-1]) <= 1_000
    assert last[0]["role"] == "user"  # never an answer without its question


async def test_a_thread_joined_mid_way_is_read_from_slack_once(start_bot: StartBot) -> None:
    bot = await start_bot(conversation_state="transcript")
    parent = bot.slack.add_message("C1", user="U2", text="we need a plan")
    bot.slack.add_message("C1", user="U2", text="for the launch", thread_ts=parent)
    await bot.mention("what do you suggest?", thread_ts=parent)
    await bot.wait_replies("C1", parent, 1)
    await _say(bot, "and the budget?", parent, 2)

    assert len(bot.slack.calls_to("conversations.replies")) == 1
    second = bot.model_bodies()[1]
    assert user_texts(second) == [
        "U2: we need a plan",
        "U2: for the launch",
        "U1: what do you suggest?",
        "U1: and the budget?",
    ]


def _sse(*events: dict[str, Any]) -> str:
    import json

    return "".join(f"data: {json.dumps(event)}\n\n" for event in events)


@pytest.mark.parametrize(
    ("draft", "final"),
    [
        pytest.param("thinking aloud " * 1500, "Short final.", id="long-draft-short-final"),
        pytest.param(
            "Short draft.",
            ("Long final paragraph. " * 40 + "\n\n") * 20,
            id="short-draft-long-final",
        ),
    ],
)
async def test_the_final_text_replaces_a_streamed_draft_across_messages(
    bot: BotUnderTest, draft: str, final: str
) -> None:
    """A relay streams one text (reasoning flattened into the answer) and finishes with
    another: the thread ends up showing exactly the final text, in as many messages as it
    needs, none left over."""
    pieces = [draft[i : i + 2000] for i in range(0, len(draft), 2000)]
    output = [{"type": "message", "content": [{"type": "output_text", "text": final}]}]
    bot.model.raw(
        _sse(
            {"type": "response.created", "response": {"id": "resp_relay", "status": "in_progress"}},
            *({"type": "response.output_text.delta", "delta": piece} for piece in pieces),
            {
                "type": "response.completed",
                "response": {"id": "resp_relay", "status": "completed", "output": output},
            },
        )
    )
    ts, _ = await bot.mention("go")
    await bot.wait_replies("C1", ts, 1, timeout=20)

    shown_texts = [shown(m) for m in bot.slack.bot_replies("C1", ts)]
    # Split messages drop the whitespace at their edges (Slack shows none): compare the rest.
    assert "".join("".join(shown_texts).split()) == "".join(final.split())
    assert all(len(text) <= 12_000 for text in shown_texts)
    assert len(shown_texts) == (1 if len(final) < 12_000 else 2)
    [turn] = await bot.turns("C1", ts)
    assert (turn.status, turn.response_id) == ("completed", "resp_relay")
