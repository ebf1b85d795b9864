"""Tool-call accounting, on SQLite and PostgreSQL: rows recorded per turn (no arguments or
output anywhere in the table), counted per server and tool, pruned with their turns."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, inspect, select, update

from storage.models import ToolCall, Turn, utcnow
from storage.records import ToolCallRecord
from storage.repositories import Store


async def _turn(store: Store, *, channel: str, ts: str) -> int:
    turn = await store.start_turn(
        team_id="T1",
        channel_id=channel,
        thread_ts=ts,
        user_id="U1",
        user_ts=ts,
        event_id=None,
        model="m1",
    )
    return turn.turn_id


def _call(turn_id: int, tool: str, status: str, ms: int, channel: str = "C1") -> ToolCallRecord:
    return ToolCallRecord(turn_id, "T1", channel, "orders", tool, status, ms, 40)


async def test_tool_calls_are_recorded_and_counted(store: Store) -> None:
    a = await _turn(store, channel="C1", ts="1.000100")
    b = await _turn(store, channel="C2", ts="2.000100")
    await store.record_tool_calls(
        [
            _call(a, "lookup", "ok", 100),
            _call(a, "lookup", "timeout", 30_000),
            _call(b, "refund", "denied", 0, channel="C2"),
        ]
    )
    since = utcnow() - timedelta(days=1)
    counts = await store.tool_calls_since(team_id="T1", since=since)
    assert [(c.tool, c.calls, c.failed, c.duration_ms) for c in counts] == [
        ("lookup", 2, 1, 30_100),
        ("refund", 1, 1, 0),
    ]
    only_c2 = await store.tool_calls_since(team_id="T1", since=since, channel_id="C2")
    assert [c.tool for c in only_c2] == ["refund"]
    # The table has no place for a call's arguments or output.
    async with store.reading() as session:
        columns = await session.run_sync(
            lambda s: {c["name"] for c in inspect(s.connection()).get_columns("tool_calls")}
        )
    assert columns == {
        "id",
        "turn_id",
        "team_id",
        "channel_id",
        "server",
        "tool",
        "status",
        "duration_ms",
        "output_chars",
        "created_at",
    }


async def test_tool_calls_go_with_their_turns(store: Store) -> None:
    old = await _turn(store, channel="C1", ts="1.000100")
    new = await _turn(store, channel="C1", ts="3.000100")
    await store.record_tool_calls([_call(old, "lookup", "ok", 5), _call(new, "lookup", "ok", 5)])
    async with store.writing() as session:
        await session.execute(
            update(Turn).where(Turn.id == old).values(created_at=utcnow() - timedelta(days=40))
        )
    counts = await store.prune_history(older_than=utcnow() - timedelta(days=30))
    assert counts.turns == 1
    async with store.reading() as session:
        left = (await session.execute(select(ToolCall.turn_id))).scalars().all()
        total = await session.scalar(select(func.count()).select_from(ToolCall))
    assert left == [new]
    assert total == 1


async def test_a_turn_with_tool_rounds_is_no_measure_of_one_responses_input(
    store: Store,
) -> None:
    from storage.conversation_state import ConversationStateStore
    from storage.records import TokenUsage

    state = ConversationStateStore(store)
    plain = await store.start_turn(
        team_id="T1",
        channel_id="C1",
        thread_ts="1.000100",
        user_id="U1",
        user_ts="1.000100",
        event_id=None,
        model="m1",
    )
    await store.complete_turn(
        turn_id=plain.turn_id, response_id="resp_a", reply_ts=None, usage=TokenUsage(50, 0, 5, 0)
    )
    assert await state.usage_of_response(thread_id=plain.thread_id, response_id="resp_a")
    tooled = await store.start_turn(
        team_id="T1",
        channel_id="C1",
        thread_ts="1.000100",
        user_id="U1",
        user_ts="1.000200",
        event_id=None,
        model="m1",
    )
    await store.record_tool_calls([_call(tooled.turn_id, "lookup", "ok", 5)])
    await store.complete_turn(
        turn_id=tooled.turn_id, response_id="resp_b", reply_ts=None, usage=TokenUsage(900, 0, 9, 0)
    )
    # Its usage is the sum of its rounds: the next turn's continuity check must not use it.
    assert await state.usage_of_response(thread_id=tooled.thread_id, response_id="resp_b") is None
