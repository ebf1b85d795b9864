"""Turns and the response chain: the head advances only when a turn completes."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from storage import (
    Store,
    TokenUsage,
    TurnNotFoundError,
    TurnRecord,
    TurnStart,
    TurnStatus,
)
from storage.models import Thread, Turn
from tests.databases import Databases

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1700000000.000100"}


async def _start(store: Store, user_ts: str, **thread: str) -> TurnStart:
    return await store.start_turn(
        **(thread or THREAD),
        user_id="U1",
        user_ts=user_ts,
        event_id=f"Ev{user_ts}",
        model="gpt-5-mini",
    )


async def test_a_follow_up_continues_the_chain_from_the_last_completed_turn(store: Store) -> None:
    first = await _start(store, "1.0")
    assert first.previous_response_id is None
    assert await store.find_thread(**THREAD) is not None

    first_token = datetime.now(UTC)
    await store.complete_turn(
        turn_id=first.turn_id,
        response_id="resp_1",
        reply_ts="1.1",
        usage=TokenUsage(input_tokens=120, cached_tokens=100, output_tokens=30, reasoning_tokens=8),
        first_token_at=first_token,
    )
    thread = await store.find_thread(**THREAD)
    assert thread is not None
    assert thread.head_response_id == "resp_1"

    second = await _start(store, "2.0")
    assert second.thread_id == first.thread_id == thread.id
    assert second.previous_response_id == "resp_1"

    record = await store.get_turn(turn_id=first.turn_id)
    assert record.status == TurnStatus.COMPLETED
    assert record.usage == TokenUsage(120, 100, 30, 8)
    assert (record.response_id, record.reply_ts, record.event_id) == ("resp_1", "1.1", "Ev1.0")
    assert record.first_token_at == first_token
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.started_at.tzinfo == UTC
    assert record.finished_at >= record.started_at
    assert record.duration_ms is not None
    assert record.duration_ms >= 0


async def test_a_failed_turn_leaves_the_chain_head_alone(store: Store) -> None:
    first = await _start(store, "1.0")
    await store.complete_turn(
        turn_id=first.turn_id, response_id="resp_1", reply_ts="1.1", usage=TokenUsage()
    )
    second = await _start(store, "2.0")
    await store.fail_turn(
        turn_id=second.turn_id,
        status=TurnStatus.INCOMPLETE,
        error_code="max_output_tokens",
        response_id="resp_2",
        reply_ts="2.1",
        usage=TokenUsage(output_tokens=500),
    )

    thread = await store.find_thread(**THREAD)
    assert thread is not None
    assert thread.head_response_id == "resp_1"
    third = await _start(store, "3.0")
    assert third.previous_response_id == "resp_1"

    failed = await store.get_turn(turn_id=second.turn_id)
    assert (failed.status, failed.error_code, failed.response_id) == (
        "incomplete",
        "max_output_tokens",
        "resp_2",
    )
    assert failed.output_tokens == 500
    assert failed.finished_at is not None


async def test_fail_turn_accepts_only_closing_statuses(store: Store) -> None:
    start = await _start(store, "1.0")
    for status in ("pending", "completed", "bogus"):
        with pytest.raises(ValueError, match="status"):
            await store.fail_turn(turn_id=start.turn_id, status=status, error_code=None)
    await store.fail_turn(turn_id=start.turn_id, status="undelivered", error_code="slack_down")
    assert (await store.get_turn(turn_id=start.turn_id)).status == "undelivered"


async def test_a_rebuilt_chain_restarts_from_nothing(store: Store) -> None:
    first = await _start(store, "1.0")
    await store.complete_turn(
        turn_id=first.turn_id, response_id="resp_lost", reply_ts=None, usage=TokenUsage()
    )
    second = await _start(store, "2.0")
    assert second.previous_response_id == "resp_lost"

    # The endpoint answered previous_response_not_found: the turn is re-sent without it.
    await store.restart_chain(turn_id=second.turn_id, previous_response_id=None)
    await store.complete_turn(
        turn_id=second.turn_id, response_id="resp_new", reply_ts=None, usage=TokenUsage()
    )

    record = await store.get_turn(turn_id=second.turn_id)
    assert record.previous_response_id is None
    thread = await store.find_thread(**THREAD)
    assert thread is not None
    assert thread.head_response_id == "resp_new"


async def test_turns_are_listed_in_order_per_thread(store: Store) -> None:
    ids = [(await _start(store, f"{i}.0")).turn_id for i in range(3)]
    await _start(store, "9.0", team_id="T1", channel_id="C1", thread_ts="other")

    turns = await store.list_turns(**THREAD)
    assert [turn.id for turn in turns] == ids
    assert [turn.user_ts for turn in turns] == ["0.0", "1.0", "2.0"]
    assert await store.list_turns(team_id="T1", channel_id="C1", thread_ts="unknown") == []


async def test_turn_records_carry_every_column(store: Store) -> None:
    columns = {column.key for column in Turn.__table__.columns}
    assert {field.name for field in dataclasses.fields(TurnRecord)} == columns


async def test_unknown_turn_ids_raise_turn_not_found(store: Store) -> None:
    with pytest.raises(TurnNotFoundError):
        await store.get_turn(turn_id=404)
    with pytest.raises(TurnNotFoundError):
        await store.complete_turn(
            turn_id=404, response_id="resp", reply_ts=None, usage=TokenUsage()
        )
    with pytest.raises(TurnNotFoundError):
        await store.fail_turn(turn_id=404, status="failed", error_code="x")
    with pytest.raises(TurnNotFoundError):
        await store.restart_chain(turn_id=404, previous_response_id=None)


async def test_turns_left_pending_by_a_crash_are_closed_at_startup(store: Store) -> None:
    completed = await _start(store, "1.0")
    await store.complete_turn(
        turn_id=completed.turn_id, response_id="resp_1", reply_ts=None, usage=TokenUsage()
    )
    failed = await _start(store, "2.0")
    await store.fail_turn(turn_id=failed.turn_id, status="failed", error_code="server_error")
    pending = await _start(store, "3.0")
    elsewhere = await _start(store, "4.0", team_id="T2", channel_id="C9", thread_ts="5.0")

    abandoned = await store.close_abandoned_turns()

    assert [(turn.turn_id, turn.thread_ts, turn.user_ts) for turn in abandoned] == [
        (pending.turn_id, THREAD["thread_ts"], "3.0"),
        (elsewhere.turn_id, "5.0", "4.0"),
    ]
    assert (abandoned[1].team_id, abandoned[1].channel_id) == ("T2", "C9")
    closed = await store.get_turn(turn_id=pending.turn_id)
    assert (closed.status, closed.error_code) == ("failed", "interrupted")
    assert (await store.get_turn(turn_id=failed.turn_id)).error_code == "server_error"
    assert (await store.get_turn(turn_id=completed.turn_id)).status == "completed"
    thread = await store.find_thread(**THREAD)
    assert thread is not None
    assert thread.head_response_id == "resp_1"
    assert await store.close_abandoned_turns(error_code="restarted") == []


async def test_concurrent_first_turns_in_a_new_thread_create_one_thread(
    databases: Databases,
) -> None:
    stores = [databases.store(), databases.store()]  # two engines: two processes
    starts = await asyncio.gather(*(_start(stores[i % 2], f"{i}.0") for i in range(10)))

    assert len({start.thread_id for start in starts}) == 1
    engine = databases.engine()
    async with engine.connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(Thread))).scalar()
    assert count == 1
    assert len(await stores[0].list_turns(**THREAD)) == 10


async def test_health_checks(store: Store) -> None:
    await store.ping()
    assert await store.schema_is_current() is True


async def test_timestamps_are_aware_utc_on_every_engine(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    start = await _start(store, "1.0")
    record = await store.get_turn(turn_id=start.turn_id)
    assert record.created_at.tzinfo == UTC
    assert before <= record.created_at <= datetime.now(UTC)
