"""The rules of the turn core, checked on the real ``ConversationService`` over in-memory fakes
of its ports: no network, no database, milliseconds each (``conftest.py`` fails a slow one).

What the user would see is read from the recording sinks, what the model got from the scripted
model's requests, and the chain from the in-memory store.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.conversation import (
    BUSY_NOTE,
    RESENT_NOTE,
    SHUTDOWN_NOTE,
    STOPPED_NOTE,
    STORAGE_NOTE,
    IncomingMessage,
    TurnOutcome,
)
from bot.errors import (
    ChainNotFoundError,
    ContextError,
    ModelAuthError,
    ModelBadRequestError,
    ModelServerError,
    NotInstalledError,
    ResponseFailedError,
    StreamProtocolError,
)
from bot.model.types import TextDelta
from bot.user_messages import context_message, user_message
from storage.errors import StorageError
from tests.conversation.conftest import Core
from tests.conversation.fakes import Gate, answer, message

WAIT = 1.0


def inputs(core: Core, call: int) -> list[tuple[str, str]]:
    """(role, text) of the input items the model got on call ``call`` (0-based)."""
    items = core.model.requests[call].input
    assert isinstance(items, list)
    return [(item["role"], item["content"]) for item in items]


async def first_turn(core: Core, *, input_tokens: int = 10, output_tokens: int = 5) -> None:
    """A thread 1.0 whose first question was answered as resp_1."""
    core.model.then(
        answer("first answer", "resp_1", input_tokens=input_tokens, output_tokens=output_tokens)
    )
    assert await core.handle(message("1.0", "first question")) is TurnOutcome.COMPLETED
    assert core.store.head("1.0") == "resp_1"


def follow_up(ts: str, text: str = "next question") -> IncomingMessage:
    return message(ts, text, thread_ts="1.0", mentions_bot=False)


# -- ordering ---------------------------------------------------------------------------------


async def test_a_threads_messages_are_answered_oldest_first_one_at_a_time(core: Core) -> None:
    gate = Gate()
    core.model.then([*answer("a", "resp_1")[:1], gate, *answer("a", "resp_1")[1:]])
    messages = [
        message("1.0", "one"),
        message("2.0", "two", thread_ts="1.0"),
        message("3.0", "three", thread_ts="1.0"),
    ]
    tickets = [await core.service.accept(m) for m in messages]
    # Their tasks start newest first: the order must still be Slack's.
    tasks = [asyncio.create_task(core.service.answer(t)) for t in reversed(tickets)]
    await asyncio.wait_for(gate.reached.wait(), WAIT)
    assert len(core.model.requests) == 1  # the others wait for the running turn
    gate.open()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)

    assert outcomes == [TurnOutcome.COMPLETED] * 3
    assert [inputs(core, n)[-1][1] for n in range(3)] == ["one", "two", "three"]
    assert [r.previous_response_id for r in core.model.requests] == [None, "resp_1", "resp_2"]
    assert core.model.most_running == 1
    assert core.store.head("1.0") == "resp_3"
    assert core.store.waiting == {}


async def test_other_threads_do_not_wait_for_a_running_turn(core: Core) -> None:
    gate = Gate()
    core.model.then([gate, *answer("slow", "resp_a")], answer("quick", "resp_b"))
    slow = asyncio.create_task(core.handle(message("1.0", "slow one")))
    await asyncio.wait_for(gate.reached.wait(), WAIT)

    assert await asyncio.wait_for(core.handle(message("5.0", "other")), WAIT) == "completed"
    gate.open()
    assert await asyncio.wait_for(slow, WAIT) is TurnOutcome.COMPLETED
    assert (core.store.head("1.0"), core.store.head("5.0")) == ("resp_a", "resp_b")


async def test_a_follow_up_needs_no_mention_but_a_stranger_thread_is_ignored(core: Core) -> None:
    await first_turn(core)
    assert await core.handle(follow_up("2.0")) is TurnOutcome.COMPLETED
    stranger = message("9.1", "chatting", thread_ts="9.0", mentions_bot=False)
    assert await core.handle(stranger) is TurnOutcome.IGNORED
    assert len(core.model.requests) == 2


# -- exactly once -----------------------------------------------------------------------------


async def test_a_retried_event_is_answered_once(core: Core) -> None:
    original = message("1.0", "hello", event_id="Ev1")
    outcomes = await asyncio.gather(core.handle(original), core.handle(original))

    assert sorted(outcomes) == sorted([TurnOutcome.COMPLETED, TurnOutcome.DUPLICATE])
    assert len(core.model.requests) == 1
    assert len(core.store.turns) == 1
    assert [s.final for s in core.sinks.opened] == ["answer 1"]


async def test_the_app_mention_and_message_pair_is_one_turn(core: Core) -> None:
    mention = message("1.0", "hello", event_id="EvMention")
    plain = message("1.0", "hello", event_id="EvMessage")
    assert await core.handle(mention) is TurnOutcome.COMPLETED
    assert await core.handle(plain) is TurnOutcome.DUPLICATE
    assert len(core.model.requests) == 1
    assert len(core.sinks.opened) == 1


# -- limits and budgets -----------------------------------------------------------------------


async def test_the_hourly_limit_refuses_with_a_notice_and_no_model_call(core: Core) -> None:
    core.settings.channel["user_hourly_requests"] = 1
    await first_turn(core)

    assert await core.handle(follow_up("2.0")) is TurnOutcome.OVER_BUDGET
    assert len(core.model.requests) == 1
    (refused,) = core.sinks.for_ts("2.0")
    notice, partial = refused.failure or ("", "")
    assert "You have asked 1 question in the last hour; the limit is 1" in notice
    assert "`user_hourly_requests`" in notice
    assert partial == ""
    assert core.store.waiting == {}  # told, then forgotten
    assert core.store.head("1.0") == "resp_1"


async def test_the_channels_daily_budget_refuses_once_used(core: Core) -> None:
    core.settings.channel["daily_token_budget"] = 100
    await first_turn(core, input_tokens=80, output_tokens=30)

    assert await core.handle(follow_up("2.0")) is TurnOutcome.OVER_BUDGET
    (refused,) = core.sinks.for_ts("2.0")
    assert refused.failure is not None
    assert "daily budget of 100 tokens (110 used today)" in refused.failure[0]
    assert len(core.model.requests) == 1


async def test_a_running_answer_holds_its_reservation_against_the_budget(core: Core) -> None:
    core.settings.channel["daily_token_budget"] = 500
    gate = Gate()
    core.model.then([gate, *answer("long", "resp_1")])
    running = asyncio.create_task(core.handle(message("1.0", "a long question")))
    await asyncio.wait_for(gate.reached.wait(), WAIT)

    # Nothing is used yet, but the running turn holds its reservation (1,000 output tokens).
    assert await core.handle(message("5.0", "another")) is TurnOutcome.OVER_BUDGET
    (refused,) = core.sinks.for_ts("5.0")
    assert refused.failure is not None
    assert "held by answers in progress" in refused.failure[0]
    gate.open()
    assert await asyncio.wait_for(running, WAIT) is TurnOutcome.COMPLETED
    assert len(core.model.requests) == 1


# -- a lost or refused chain ------------------------------------------------------------------


async def test_a_lost_chain_is_resent_once_from_the_transcript(core: Core) -> None:
    await first_turn(core)
    lost = ChainNotFoundError("Previous response not found", status_code=400)
    core.model.then([lost], answer("second answer", "resp_2"))

    assert await core.handle(follow_up("2.0", "second question")) is TurnOutcome.COMPLETED
    assert [r.previous_response_id for r in core.model.requests] == [None, "resp_1", None]
    assert inputs(core, 2) == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    (reply,) = core.sinks.for_ts("2.0")
    assert reply.final == "second answer"
    assert core.store.head("1.0") == "resp_2"  # a fresh chain from the re-sent answer
    assert core.store.turn_list()[-1].previous_response_id is None
    assert core.recoveries == ["lost_chain"]


async def test_a_lost_head_is_never_sent_again_even_when_the_resend_fails(core: Core) -> None:
    await first_turn(core)
    lost = ChainNotFoundError("Previous response not found", status_code=400)
    down = ModelServerError("upstream down", status_code=503)
    core.model.then([lost], [down], answer("third answer", "resp_3"))

    assert await core.handle(follow_up("2.0", "second question")) is TurnOutcome.FAILED
    assert len(core.model.requests) == 3  # the chained call and one re-send, no more
    (failed,) = core.sinks.for_ts("2.0")
    assert failed.failure == (user_message(down), "")
    assert core.store.head("1.0") is None  # the lost head is dropped

    assert await core.handle(follow_up("3.0", "third question")) is TurnOutcome.COMPLETED
    assert [r.previous_response_id for r in core.model.requests[2:]] == [None, None]
    assert inputs(core, 3)[0] == ("user", "first question")
    assert "resp_1" not in [r.previous_response_id for r in core.model.requests[2:]]


async def test_a_chained_4xx_that_names_nothing_else_is_resent_once(core: Core) -> None:
    await first_turn(core)
    vague = ModelBadRequestError("Bad Request", status_code=400, code="400")
    core.model.then([vague], [ModelBadRequestError("Bad Request", status_code=400, code="400")])

    assert await core.handle(follow_up("2.0")) is TurnOutcome.FAILED
    assert [r.previous_response_id for r in core.model.requests] == [None, "resp_1", None]
    assert core.recoveries == ["refused"]
    assert core.store.head("1.0") == "resp_1"  # not known lost: kept for the next turn


async def test_a_refusal_that_names_its_cause_is_not_resent(core: Core) -> None:
    await first_turn(core)
    core.model.then([ModelAuthError("bad key", status_code=401)])

    assert await core.handle(follow_up("2.0")) is TurnOutcome.FAILED
    assert len(core.model.requests) == 2
    assert core.recoveries == []


async def test_a_vague_in_stream_failure_after_text_is_not_resent(core: Core) -> None:
    await first_turn(core)
    core.model.then([TextDelta("Half an ans"), ResponseFailedError("failed", code="400")])

    assert await core.handle(follow_up("2.0")) is TurnOutcome.FAILED
    assert len(core.model.requests) == 2  # the user saw text: never answered twice
    (reply,) = core.sinks.for_ts("2.0")
    assert reply.failure is not None
    assert reply.failure[1] == "Half an ans"


# -- the continuity check ---------------------------------------------------------------------


async def test_a_chain_the_endpoint_ignored_switches_to_transcripts(core: Core) -> None:
    capabilities = core.with_capabilities()
    await first_turn(core, input_tokens=400, output_tokens=300)
    # Billed for 20 input tokens where the history alone is 700: the chain was ignored.
    core.model.then(
        answer("I have no idea what you mean", "resp_2x", input_tokens=20),
        answer("second answer", "resp_2", input_tokens=760),
    )

    assert await core.handle(follow_up("2.0", "second question")) is TurnOutcome.COMPLETED
    assert [r.previous_response_id for r in core.model.requests] == [None, "resp_1", None]
    (reply,) = core.sinks.for_ts("2.0")
    assert reply.final == f"_{RESENT_NOTE}_\n\nsecond answer"
    assert core.store.head("1.0") == "resp_2"
    assert await capabilities.chains_ignored("m1")
    assert core.recoveries == ["continuity"]

    # From now on the earlier messages go in the input, with no previous_response_id.
    assert await core.handle(follow_up("3.0", "third question")) is TurnOutcome.COMPLETED
    assert core.model.requests[3].previous_response_id is None
    assert inputs(core, 3) == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
        ("assistant", "second answer"),
        ("user", "third question"),
    ]
    assert RESENT_NOTE not in (core.sinks.for_ts("3.0")[0].final or "")  # once per thread


async def test_with_chains_chosen_an_ignored_chain_is_recorded_not_acted_on(core: Core) -> None:
    capabilities = core.with_capabilities()
    core.settings.channel["conversation_state"] = "chain"
    await first_turn(core, input_tokens=400, output_tokens=300)
    core.model.then(answer("no idea", "resp_2", input_tokens=20))

    assert await core.handle(follow_up("2.0")) is TurnOutcome.COMPLETED
    assert len(core.model.requests) == 2
    assert await capabilities.chains_ignored("m1")
    assert core.store.head("1.0") == "resp_2"


# -- stop, failures, shutdown -----------------------------------------------------------------


async def test_stop_keeps_the_partial_answer_and_the_head(core: Core) -> None:
    await first_turn(core)
    core.sinks.configure(stop_after=1)
    core.model.then(answer("one two three", "resp_2", chunks=3))

    assert await core.handle(follow_up("2.0")) is TurnOutcome.STOPPED
    (reply,) = core.sinks.for_ts("2.0")
    assert reply.deltas == ["one t"]  # stopped at the first piece
    assert reply.failure == (STOPPED_NOTE, "one t")
    turn = core.store.turn_list()[-1]
    assert (turn.status, turn.error_code) == ("stopped", "stopped_by_user")
    assert core.store.head("1.0") == "resp_1"
    assert core.model.running == 0  # the model stream was closed at once


async def test_a_model_failure_leaves_the_head_and_tells_the_thread(core: Core) -> None:
    await first_turn(core)
    broken = StreamProtocolError("stream ended early", partial_text="")
    core.model.then([TextDelta("Half "), broken])

    assert await core.handle(follow_up("2.0")) is TurnOutcome.FAILED
    (reply,) = core.sinks.for_ts("2.0")
    assert reply.failure == (user_message(broken), "Half ")
    turn = core.store.turn_list()[-1]
    assert (turn.status, turn.error_code) == ("failed", "stream_protocol_error")
    assert core.store.head("1.0") == "resp_1"

    # The next message follows on from the last good answer.
    assert await core.handle(follow_up("3.0")) is TurnOutcome.COMPLETED
    assert core.model.requests[-1].previous_response_id == "resp_1"


async def test_shutdown_closes_the_turn_with_a_note_and_goes_on_cancelling(core: Core) -> None:
    await first_turn(core)
    gate = Gate()
    core.model.then([TextDelta("Partly "), gate, *answer("done", "resp_2")])
    task = asyncio.create_task(core.handle(follow_up("2.0")))
    await asyncio.wait_for(gate.reached.wait(), WAIT)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    (reply,) = core.sinks.for_ts("2.0")
    assert reply.failure == (SHUTDOWN_NOTE, "Partly ")
    turn = core.store.turn_list()[-1]
    assert (turn.status, turn.error_code) == ("failed", "shutdown")
    assert core.store.head("1.0") == "resp_1"


async def test_a_reply_slack_refuses_is_undelivered_and_the_head_stays(core: Core) -> None:
    await first_turn(core)
    core.sinks.configure(refuse_finish=True)

    assert await core.handle(follow_up("2.0")) is TurnOutcome.UNDELIVERED
    turn = core.store.turn_list()[-1]
    assert (turn.status, turn.response_id) == ("undelivered", "resp_2")
    assert core.store.head("1.0") == "resp_1"
    assert core.store.held == {}


async def test_a_workspace_gone_before_the_turn_makes_no_model_call(core: Core) -> None:
    core.sinks.configure(refuse_start=NotInstalledError("T1"))
    assert await core.handle(message("1.0")) is TurnOutcome.FAILED
    assert core.model.requests == []
    assert core.store.turn_list()[-1].error_code == "not_installed"


async def test_an_unreadable_thread_fails_the_turn_with_a_note(core: Core) -> None:
    async def refuse(_: object) -> object:
        raise ContextError("Slack refused", code="not_in_channel")

    core.context.current = refuse  # type: ignore[method-assign,assignment]
    assert await core.handle(message("1.0")) is TurnOutcome.FAILED
    (reply,) = core.sinks.opened
    assert reply.failure is not None
    assert reply.failure[0] == context_message(ContextError("", code="not_in_channel"))
    assert core.store.turn_list()[-1].error_code == "not_in_channel"


# -- the database and the thread lock -------------------------------------------------------


async def test_a_database_that_refuses_the_message_gets_a_note(core: Core) -> None:
    core.store.refuse = StorageError("attempt to write a readonly database", code="read_only")
    assert await core.handle(message("1.0")) is TurnOutcome.FAILED
    (reply,) = core.sinks.opened
    assert reply.failure == (STORAGE_NOTE, "")
    assert core.model.requests == []


async def test_a_thread_busy_on_another_replica_gets_a_note(core: Core) -> None:
    core.thread_locks.timeout = True
    assert await core.handle(message("1.0")) is TurnOutcome.FAILED
    (reply,) = core.sinks.opened
    assert reply.failure == (BUSY_NOTE, "")
    assert core.store.waiting == {}
    assert core.model.requests == []


async def test_a_channel_the_bot_is_switched_off_in_is_ignored(core: Core) -> None:
    core.settings.channel["enabled"] = False
    assert await core.handle(message("1.0")) is TurnOutcome.IGNORED
    assert core.model.requests == []
    assert core.store.waiting == {}


async def test_the_request_carries_the_settings_and_no_raw_ids(core: Core) -> None:
    core.settings.channel.update(temperature=0.3, max_output_tokens=200)
    await first_turn(core)
    request = core.model.requests[0]
    assert (request.model, request.instructions) == ("m1", "Be brief.")
    assert (request.temperature, request.max_output_tokens) == (0.3, 200)
    assert request.safety_identifier is not None
    assert "U1" not in request.safety_identifier
    assert "T1" not in request.safety_identifier
    assert request.prompt_cache_key is not None
    assert "1.0" not in request.prompt_cache_key
