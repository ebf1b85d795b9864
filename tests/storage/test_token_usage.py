"""Token usage per channel over a time window (for daily token budgets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from storage import Store, TokenUsage, TurnStatus
from storage.models import Turn

T0 = datetime(2026, 12, 1, tzinfo=UTC)


async def _turn(
    store: Store,
    *,
    team_id: str = "T1",
    channel_id: str = "C1",
    created_at: datetime,
    tokens: tuple[int, int] = (0, 0),
    status: str = TurnStatus.COMPLETED,
) -> int:
    start = await store.start_turn(
        team_id=team_id,
        channel_id=channel_id,
        thread_ts="1700000000.000100",
        user_id="U1",
        user_ts=f"{created_at.timestamp()}",
        event_id=None,
        model="gpt-5-mini",
    )
    usage = TokenUsage(input_tokens=tokens[0], cached_tokens=1, output_tokens=tokens[1])
    if status == TurnStatus.COMPLETED:
        await store.complete_turn(
            turn_id=start.turn_id, response_id=f"resp_{start.turn_id}", reply_ts=None, usage=usage
        )
    elif status != TurnStatus.PENDING:
        await store.fail_turn(turn_id=start.turn_id, status=status, error_code="x", usage=usage)
    async with store.session_factory() as session, session.begin():
        await session.execute(
            update(Turn).where(Turn.id == start.turn_id).values(created_at=created_at)
        )
    return start.turn_id


async def test_tokens_used_since_sums_one_channels_turns_in_the_window(store: Store) -> None:
    assert await store.tokens_used_since(team_id="T1", channel_id="C1", since=T0) == 0

    await _turn(store, created_at=T0 - timedelta(microseconds=1), tokens=(1000, 1000))
    await _turn(store, created_at=T0, tokens=(100, 20))  # at `since`: counted
    await _turn(store, created_at=T0 + timedelta(hours=3), tokens=(10, 2), status="failed")
    await _turn(store, created_at=T0 + timedelta(hours=4), tokens=(5, 0), status="stopped")
    await _turn(store, created_at=T0 + timedelta(hours=5), status="pending")
    # Other channels and other workspaces do not count.
    await _turn(store, channel_id="C2", created_at=T0 + timedelta(hours=1), tokens=(7, 7))
    await _turn(store, channel_id="", created_at=T0 + timedelta(hours=1), tokens=(7, 7))
    await _turn(store, team_id="T2", created_at=T0 + timedelta(hours=1), tokens=(9, 9))

    assert await store.tokens_used_since(team_id="T1", channel_id="C1", since=T0) == 137
    assert (
        await store.tokens_used_since(team_id="T1", channel_id="C1", since=T0 - timedelta(days=1))
        == 2137
    )
    assert (
        await store.tokens_used_since(
            team_id="T1", channel_id="C1", since=T0 + timedelta(hours=3, minutes=30)
        )
        == 5
    )
    assert await store.tokens_used_since(team_id="T1", channel_id="C2", since=T0) == 14
    assert await store.tokens_used_since(team_id="T2", channel_id="C1", since=T0) == 18
    assert await store.tokens_used_since(team_id="T1", channel_id="C3", since=T0) == 0
    # Any timezone works; the window is the same instant.
    other_zone = T0.astimezone(timezone(timedelta(hours=-5)))
    assert await store.tokens_used_since(team_id="T1", channel_id="C1", since=other_zone) == 137


async def test_tokens_used_since_needs_an_aware_datetime(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.tokens_used_since(team_id="T1", channel_id="C1", since=datetime(2026, 12, 1))
