"""Transcripts, the chain head, one-time notes and endpoint capabilities, on SQLite and
PostgreSQL: what lets a conversation be re-sent without the model endpoint or Slack."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from storage import Store, TokenUsage, TurnStart
from storage.conversation_state import ConversationStateStore, TranscriptEntry
from storage.models import utcnow

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1700000000.000100"}
FILE = {
    "id": "F1",
    "name": "chart.png",
    "mimetype": "image/png",
    "filetype": "png",
    "size": 70,
    "url_private": "https://files.slack.com/files-pri/T1-F1/chart.png",
    # Never kept: anything that is not needed to read the file again.
    "preview": "a long preview text",
    "thumb_64": "https://files.slack.com/thumb",
    "user": "U1",
}


@pytest.fixture
def state(store: Store) -> ConversationStateStore:
    return ConversationStateStore(store)


async def _turn(store: Store, user_ts: str) -> TurnStart:
    return await store.start_turn(
        **THREAD, user_id="U1", user_ts=user_ts, event_id=None, model="gpt-x"
    )


async def test_a_thread_transcript_is_kept_in_order_with_authors_and_file_descriptors(
    store: Store, state: ConversationStateStore
) -> None:
    one = await _turn(store, "1.1")
    await state.add_entries(
        thread_id=one.thread_id,
        turn_id=one.turn_id,
        entries=[("user", "U1", "Ana: remember this chart", [FILE])],
    )
    await state.add_entries(
        thread_id=one.thread_id,
        turn_id=one.turn_id,
        entries=[("assistant", None, "It shows growth.", ())],
    )
    two = await _turn(store, "1.2")
    await state.add_entries(
        thread_id=two.thread_id, turn_id=two.turn_id, entries=[("user", "U2", "Bo: and?", ())]
    )

    before_two = await state.entries(thread_id=one.thread_id, before_turn_id=two.turn_id)
    assert [(e.role, e.author_id, e.text) for e in before_two] == [
        ("user", "U1", "Ana: remember this chart"),
        ("assistant", None, "It shows growth."),
    ]
    assert before_two[0].files == (
        {key: FILE[key] for key in ("id", "name", "mimetype", "filetype", "size", "url_private")},
    )
    everything = await state.entries(thread_id=one.thread_id, before_turn_id=two.turn_id + 1)
    assert [e.text for e in everything][-1] == "Bo: and?"
    with pytest.raises(ValueError, match="role"):
        await state.add_entries(
            thread_id=one.thread_id, turn_id=one.turn_id, entries=[("system", None, "x", ())]
        )


async def test_transcripts_are_pruned_with_their_turns(
    store: Store, state: ConversationStateStore
) -> None:
    old = await _turn(store, "1.1")
    await state.add_entries(
        thread_id=old.thread_id, turn_id=old.turn_id, entries=[("user", "U1", "old", ())]
    )
    await store.complete_turn(
        turn_id=old.turn_id, response_id="resp_1", reply_ts="1.5", usage=TokenUsage()
    )
    await asyncio.sleep(0.01)
    cutoff = utcnow()
    await asyncio.sleep(0.01)
    new = await _turn(store, "1.2")
    await state.add_entries(
        thread_id=new.thread_id, turn_id=new.turn_id, entries=[("user", "U1", "new", ())]
    )

    counts = await store.prune_history(older_than=cutoff)

    assert counts.turns == 1
    remaining = await state.entries(thread_id=new.thread_id, before_turn_id=new.turn_id + 1)
    assert [e.text for e in remaining] == ["new"]
    async with store.reading() as session:
        assert await session.scalar(select(func.count(TranscriptEntry.id))) == 1


async def test_a_lost_head_is_dropped_only_while_it_is_still_the_head(
    store: Store, state: ConversationStateStore
) -> None:
    turn = await _turn(store, "1.1")
    await store.complete_turn(
        turn_id=turn.turn_id, response_id="resp_lost", reply_ts=None, usage=TokenUsage()
    )
    assert await state.forget_head(thread_id=turn.thread_id, response_id="resp_other") is False
    assert await state.forget_head(thread_id=turn.thread_id, response_id="resp_lost") is True
    thread = await store.find_thread(**THREAD)
    assert thread is not None
    assert thread.head_response_id is None
    # The next turn starts without a previous_response_id.
    assert (await _turn(store, "1.2")).previous_response_id is None


async def test_usage_of_a_response_is_that_of_its_completed_turn(
    store: Store, state: ConversationStateStore
) -> None:
    turn = await _turn(store, "1.1")
    usage = TokenUsage(input_tokens=120, cached_tokens=100, output_tokens=30, reasoning_tokens=8)
    await store.complete_turn(
        turn_id=turn.turn_id, response_id="resp_1", reply_ts=None, usage=usage
    )
    found = await state.usage_of_response(thread_id=turn.thread_id, response_id="resp_1")
    assert found is not None
    assert (found.model, found.input_tokens, found.output_tokens, found.reasoning_tokens) == (
        "gpt-x",
        120,
        30,
        8,
    )
    assert await state.usage_of_response(thread_id=turn.thread_id, response_id="nope") is None


async def test_a_note_is_given_once_per_thread_even_when_asked_concurrently(
    store: Store, state: ConversationStateStore
) -> None:
    turn = await _turn(store, "1.1")
    results = await asyncio.gather(
        *(state.note_once(thread_id=turn.thread_id, kind="context_resent") for _ in range(5))
    )
    assert sorted(results) == [False, False, False, False, True]
    assert await state.note_once(thread_id=turn.thread_id, kind="another") is True


async def test_endpoint_capabilities_are_stored_with_their_time_and_updated_in_place(
    state: ConversationStateStore,
) -> None:
    endpoint = "https://relay.example/v1"
    first = await state.record_capability(
        endpoint=endpoint, model="gpt-x", chains="kept", source="doctor", tools=True, streaming=True
    )
    assert (first.chains, first.tools, first.streaming) == ("kept", True, True)
    assert utcnow() - first.checked_at < timedelta(minutes=1)

    second = await state.record_capability(
        endpoint=endpoint, model="gpt-x", chains="ignored", source="continuity", detail="seen"
    )
    # tools and streaming were not checked this time: what was known stays.
    assert (second.chains, second.chains_source, second.tools, second.streaming) == (
        "ignored",
        "continuity",
        True,
        True,
    )
    assert second.checked_at >= first.checked_at
    assert [r.model for r in await state.capabilities()] == ["gpt-x"]
    assert await state.capability(endpoint=endpoint, model="other") is None
    with pytest.raises(ValueError, match="chains"):
        await state.record_capability(endpoint=endpoint, model="m", chains="maybe", source="x")


async def test_concurrent_first_records_of_one_endpoint_and_model_make_one_row(
    state: ConversationStateStore,
) -> None:
    await asyncio.gather(
        *(
            state.record_capability(
                endpoint="https://e/v1", model="m", chains="kept", source="probe"
            )
            for _ in range(4)
        )
    )
    assert len(await state.capabilities()) == 1


def test_file_descriptors_are_stored_without_foreign_fields() -> None:
    from storage.conversation_state import _file_json

    stored = _file_json([FILE, "not a file"])  # type: ignore[list-item]
    assert stored is not None
    assert "preview" not in stored
    assert "thumb" not in stored
    assert json.loads(stored)[0]["url_private"] == FILE["url_private"]


async def test_a_relays_long_response_id_fits_the_chain(
    store: Store, state: ConversationStateStore
) -> None:
    # LiteLLM's proxy encodes its routing into ids of ~450 characters (seen from 1.108.7).
    long_id = "resp_" + "K_bIhexcF34xV2ljPoeULMPsVRO0" * 16
    assert len(long_id) > 445
    turn = await _turn(store, "1.1")
    await store.complete_turn(
        turn_id=turn.turn_id, response_id=long_id, reply_ts=None, usage=TokenUsage()
    )
    follow = await _turn(store, "1.2")
    assert follow.previous_response_id == long_id
    assert await state.forget_head(thread_id=turn.thread_id, response_id=long_id) is True
