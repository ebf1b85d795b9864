"""Usage reports (grouped by channel, user or model) and pruning old history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from storage import Store, TokenUsage, UsageCounts
from storage.models import EventClaim, SettingsAudit, Thread, Turn

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)


async def _turn(
    store: Store,
    *,
    team: str = "T1",
    channel: str = "C1",
    user: str = "U1",
    model: str = "gpt-a",
    thread: str = "1.1",
    usage: tuple[int, int, int, int] = (100, 10, 20, 5),
    created_at: datetime | None = None,
) -> int:
    start = await store.start_turn(
        team_id=team,
        channel_id=channel,
        thread_ts=thread,
        user_id=user,
        user_ts=f"{thread}{user}",
        event_id=None,
        model=model,
    )
    await store.complete_turn(
        turn_id=start.turn_id,
        response_id=f"resp_{start.turn_id}",
        reply_ts=None,
        usage=TokenUsage(*usage),
    )
    if created_at is not None:
        async with store.session_factory() as session, session.begin():
            await session.execute(
                update(Turn).where(Turn.id == start.turn_id).values(created_at=created_at)
            )
            await session.execute(
                update(Thread).where(Thread.id == start.thread_id).values(updated_at=created_at)
            )
    return start.turn_id


async def test_usage_is_grouped_by_channel_user_or_model_and_scoped_by_team(store: Store) -> None:
    await _turn(store, channel="C1", user="U1", model="gpt-a", usage=(100, 10, 20, 5))
    await _turn(store, channel="C1", user="U2", model="gpt-b", usage=(50, 0, 5, 0))
    await _turn(store, channel="C2", user="U1", model="gpt-a", usage=(10, 0, 1, 0))
    await _turn(store, team="T2", channel="C1", user="U9", usage=(1000, 0, 1, 0))
    await _turn(store, channel="C1", user="U1", usage=(7, 0, 7, 0), created_at=OLD)
    since = NOW - timedelta(days=30)

    by_channel = await store.usage_since(since=since, by="channel", team_id="T1")
    assert [(r.key, r.counts) for r in by_channel] == [
        ("C1", UsageCounts(2, 150, 10, 25, 5)),
        ("C2", UsageCounts(1, 10, 0, 1, 0)),
    ]
    assert by_channel[0].by_model == {
        "gpt-a": UsageCounts(1, 100, 10, 20, 5),
        "gpt-b": UsageCounts(1, 50, 0, 5, 0),
    }
    assert by_channel[0].counts.total_tokens == 175

    by_user = await store.usage_since(since=since, by="user", team_id="T1", channel_id="C1")
    assert [(r.key, r.counts.total_tokens) for r in by_user] == [("U1", 120), ("U2", 55)]

    by_model = await store.usage_since(since=since, by="model", team_id="T1")
    assert [(r.key, r.counts.turns) for r in by_model] == [("gpt-a", 2), ("gpt-b", 1)]

    everywhere = await store.usage_since(since=since, by="channel")
    assert [(r.team_id, r.key) for r in everywhere] == [("T2", "C1"), ("T1", "C1"), ("T1", "C2")]
    assert await store.usage_since(since=NOW + timedelta(hours=1), by="user") == []
    # The old turn counts once the window reaches back to it.
    older = await store.usage_since(since=OLD - timedelta(days=1), by="channel", team_id="T1")
    assert older[0].counts.turns == 3


async def test_top_users_are_the_heaviest_first_and_limited(store: Store) -> None:
    for user, tokens in (("U1", 5), ("U2", 50), ("U3", 20)):
        await _turn(store, user=user, thread=f"2.{user}", usage=(tokens, 0, 0, 0))
    await _turn(store, channel="C2", user="U4", usage=(500, 0, 0, 0))
    since = NOW - timedelta(days=1)
    top = await store.top_users(team_id="T1", channel_id="C1", since=since, limit=2)
    assert [row.key for row in top] == ["U2", "U3"]
    assert [r.key for r in await store.top_users(team_id="T1", since=since)] == [
        "U4",
        "U2",
        "U3",
        "U1",
    ]


async def test_usage_needs_aware_times_and_a_team_for_a_channel(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.usage_since(since=datetime(2026, 1, 1), by="user")
    with pytest.raises(ValueError, match="needs team_id"):
        await store.usage_since(since=NOW, by="user", channel_id="C1")
    with pytest.raises(ValueError, match="by must be one of"):
        await store.usage_since(since=NOW, by="colour")  # type: ignore[arg-type]


async def _count(store: Store, column: object) -> int:
    async with store.session_factory() as session:
        return int(await session.scalar(select(func.count(column))) or 0)  # type: ignore[call-overload]


async def test_pruning_removes_only_old_rows(store: Store) -> None:
    # An old thread with only old turns: both go.
    await _turn(store, thread="3.old", created_at=OLD)
    # A live thread with one old and one new turn: the old turn goes, the thread stays.
    await _turn(store, thread="3.live", created_at=OLD)
    await _turn(store, thread="3.live")
    recent = await _turn(store, team="T2", thread="3.new")
    assert await store.claim_event(keys=["event:old", "event:new"])
    async with store.session_factory() as session, session.begin():
        await session.execute(
            update(EventClaim).where(EventClaim.key == "event:old").values(claimed_at=OLD)
        )
    await store.update_channel_settings(
        team_id="T1", channel_id="C1", values={"model": "m1"}, updated_by="U1"
    )
    await store.update_channel_settings(
        team_id="T1", channel_id="C1", values={"model": "m2"}, updated_by="U1"
    )
    async with store.session_factory() as session, session.begin():
        first = await session.scalar(select(func.min(SettingsAudit.id)))
        await session.execute(
            update(SettingsAudit).where(SettingsAudit.id == first).values(changed_at=OLD)
        )

    counts = await store.prune_history(older_than=NOW - timedelta(days=30))
    assert (counts.turns, counts.threads, counts.event_claims, counts.settings_audit) == (
        2,
        1,
        1,
        1,
    )
    assert counts.total == 5
    assert await _count(store, Turn.id) == 2
    assert await store.list_turns(team_id="T2", channel_id="C1", thread_ts="3.new")
    assert (await store.get_turn(turn_id=recent)).team_id == "T2"
    assert await store.find_thread(team_id="T1", channel_id="C1", thread_ts="3.old") is None
    live = await store.find_thread(team_id="T1", channel_id="C1", thread_ts="3.live")
    assert live is not None
    assert await store.claim_event(keys=["event:old"])  # forgotten, so claimable again
    assert not await store.claim_event(keys=["event:new"])
    audit = await store.list_settings_audit(team_id="T1")
    assert [row.new_value for row in audit] == ["m2"]
    settings = await store.get_channel_settings(team_id="T1", channel_id="C1")
    assert settings is not None
    assert settings.model == "m2"  # settings themselves are never pruned

    again = await store.prune_history(older_than=NOW - timedelta(days=30))
    assert again.total == 0


async def test_pruning_needs_an_aware_cutoff(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.prune_history(older_than=datetime(2026, 1, 1))
