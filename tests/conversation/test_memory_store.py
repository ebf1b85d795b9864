"""The in-memory store the unit tests use keeps the real store's rules: the same scenarios run
against ``MemoryStore`` and against ``Store`` + ``Intake`` + ``ConversationStateStore`` on a
real SQLite database. A rule the fake got wrong would make the unit tests prove nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.conversation_state import ConversationStateStore
from storage.intake import Intake
from storage.records import Acceptance, LimitReached, TokenUsage, TurnLimits, TurnStart
from tests.conversation.fakes import MemoryStore
from tests.databases import Databases

KEYS = {"team_id": "T1", "channel_id": "C1"}


@dataclass
class Backend:
    intake: Any
    store: Any
    state: Any


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        memory = MemoryStore()
        yield Backend(memory, memory, memory)
        return
    async with Databases.migrated("sqlite", tmp_path) as databases:
        store = databases.store()
        yield Backend(Intake(store), store, ConversationStateStore(store))


async def accept(
    b: Backend, ts: str, *, thread_ts: str = "1.0", keys: list[str] | None = None, **more: Any
) -> Any:
    options = {"owner": "here", "needs_thread": False, "user_id": "U1", **more}
    return await b.intake.accept(
        **KEYS,
        thread_ts=thread_ts,
        ts=ts,
        event_id=None,
        claim_keys=keys or [f"msg:{ts}"],
        payload={"text": ts},
        **options,
    )


async def admit(
    b: Backend, ts: str, queued_id: int | None, *, user_id: str = "U1", **limits: int
) -> TurnStart | LimitReached | None:
    admitted: TurnStart | LimitReached | None = await b.intake.admit_turn(
        **KEYS,
        thread_ts="1.0",
        user_id=user_id,
        user_ts=ts,
        event_id=None,
        model="m1",
        limits=TurnLimits(**limits),
        queued_id=queued_id,
    )
    return admitted


async def test_claims_and_threads(backend: Backend) -> None:
    first = await accept(backend, "1.0", keys=["event:E1", "msg:1.0"])
    assert first.status is Acceptance.ACCEPTED
    again = await accept(backend, "1.0", keys=["event:E2", "msg:1.0"])
    assert again.status is Acceptance.DUPLICATE
    # Not addressed: taken only in a thread the bot is in, or one where a message waits.
    assert (await accept(backend, "1.1", needs_thread=True)).status is Acceptance.ACCEPTED
    stranger = await accept(backend, "9.1", thread_ts="9.0", needs_thread=True)
    assert stranger.status is Acceptance.NOT_IN_THREAD


async def test_waiting_messages_come_in_slack_order_per_owner(backend: Backend) -> None:
    later = await accept(backend, "3.0")
    earlier = await accept(backend, "2.0")
    await accept(backend, "1.5", owner="elsewhere")
    found = await backend.intake.next_in_thread(owner="here", **KEYS, thread_ts="1.0")
    assert found is not None
    assert (found.id, found.ts) == (earlier.queued_id, "2.0")
    await backend.intake.forget(queued_id=earlier.queued_id)
    found = await backend.intake.next_in_thread(owner="here", **KEYS, thread_ts="1.0")
    assert found is not None
    assert found.id == later.queued_id


async def test_a_turn_is_admitted_once_and_the_head_moves_only_on_completion(
    backend: Backend,
) -> None:
    queued = (await accept(backend, "1.0")).queued_id
    turn = await admit(backend, "1.0", queued)
    assert isinstance(turn, TurnStart)
    assert turn.previous_response_id is None
    assert await admit(backend, "1.0", queued) is None  # gone: never two turns
    await backend.store.complete_turn(
        turn_id=turn.turn_id, response_id="resp_1", reply_ts="r1", usage=TokenUsage(10, 0, 5, 0)
    )
    second = await admit(backend, "2.0", None)
    assert isinstance(second, TurnStart)
    assert second.previous_response_id == "resp_1"
    await backend.store.fail_turn(turn_id=second.turn_id, status="failed", error_code="x")
    found = await backend.store.find_thread(**KEYS, thread_ts="1.0")
    assert found is not None
    assert found.head_response_id == "resp_1"
    with pytest.raises(ValueError, match="status"):
        await backend.store.fail_turn(turn_id=second.turn_id, status="pending", error_code=None)


async def test_the_hourly_limit(backend: Backend) -> None:
    assert isinstance(await admit(backend, "1.0", None, user_hourly_requests=2), TurnStart)
    assert isinstance(await admit(backend, "2.0", None, user_hourly_requests=2), TurnStart)
    refused = await admit(backend, "3.0", None, user_hourly_requests=2)
    assert isinstance(refused, LimitReached)
    assert (refused.kind, refused.limit, refused.used, refused.held) == (
        "user_hourly_requests",
        2,
        2,
        0,
    )
    assert isinstance(
        await admit(backend, "3.0", None, user_id="U2", user_hourly_requests=2), TurnStart
    )


async def test_budgets_count_use_and_the_reservations_of_running_turns(backend: Backend) -> None:
    running = await admit(backend, "1.0", None, channel_daily_tokens=1_000, reserve_tokens=600)
    assert isinstance(running, TurnStart)
    refused = await admit(backend, "2.0", None, channel_daily_tokens=600, reserve_tokens=10)
    assert isinstance(refused, LimitReached)
    assert (refused.kind, refused.used, refused.held) == ("daily_token_budget", 0, 600)
    await backend.store.complete_turn(
        turn_id=running.turn_id, response_id="r", reply_ts=None, usage=TokenUsage(300, 0, 200, 0)
    )
    refused = await admit(backend, "3.0", None, workspace_daily_tokens=500, reserve_tokens=10)
    assert isinstance(refused, LimitReached)
    assert (refused.kind, refused.used, refused.held) == ("workspace_daily_token_budget", 500, 0)


async def test_transcripts_heads_and_notes(backend: Backend) -> None:
    first = await admit(backend, "1.0", None)
    assert isinstance(first, TurnStart)
    thread = first.thread_id
    await backend.state.add_entries(
        thread_id=thread,
        turn_id=first.turn_id,
        entries=[("user", "U1", "question", [{"id": "F1"}]), ("assistant", None, "answer", [])],
    )
    await backend.store.complete_turn(
        turn_id=first.turn_id, response_id="resp_1", reply_ts=None, usage=TokenUsage(40, 0, 9, 3)
    )
    second = await admit(backend, "2.0", None)
    assert isinstance(second, TurnStart)
    entries = await backend.state.entries(thread_id=thread, before_turn_id=second.turn_id)
    assert [(e.role, e.author_id, e.text, len(e.files)) for e in entries] == [
        ("user", "U1", "question", 1),
        ("assistant", None, "answer", 0),
    ]
    assert await backend.state.entries(thread_id=thread, before_turn_id=first.turn_id) == []
    usage = await backend.state.usage_of_response(thread_id=thread, response_id="resp_1")
    assert usage is not None
    assert (usage.model, usage.input_tokens, usage.output_tokens) == ("m1", 40, 9)
    assert await backend.state.forget_head(thread_id=thread, response_id="other") is False
    assert await backend.state.forget_head(thread_id=thread, response_id="resp_1") is True
    found = await backend.store.find_thread(**KEYS, thread_ts="1.0")
    assert found is not None
    assert found.head_response_id is None
    assert await backend.state.note_once(thread_id=thread, kind="context_resent") is True
    assert await backend.state.note_once(thread_id=thread, kind="context_resent") is False
