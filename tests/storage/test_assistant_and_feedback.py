"""Pane threads and feedback on answers, on SQLite and PostgreSQL: one vote per answer and
person (changeable), counts per channel and model, a title claimed once, and retention."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from storage.models import AnswerFeedback, AssistantThread, Turn, utcnow
from storage.repositories import Store


async def _turn(store: Store, *, channel: str, ts: str, model: str = "m1") -> int:
    turn = await store.start_turn(
        team_id="T1",
        channel_id=channel,
        thread_ts=ts,
        user_id="U1",
        user_ts=ts,
        event_id=None,
        model=model,
    )
    return turn.turn_id


async def test_one_vote_per_answer_and_person_changeable_and_counted(store: Store) -> None:
    await _turn(store, channel="C1", ts="1.000100")
    await _turn(store, channel="C2", ts="2.000100", model="m2")
    votes = store.feedback
    first = await votes.vote(
        team_id="T1", channel_id="C1", user_ts="1.000100", user_id="U1", value="good"
    )
    assert first is not None
    assert (first.value, first.previous, first.model) == ("good", None, "m1")
    again = await votes.vote(
        team_id="T1", channel_id="C1", user_ts="1.000100", user_id="U1", value="bad"
    )
    assert again is not None
    assert (again.value, again.previous) == ("bad", "good")
    await votes.vote(team_id="T1", channel_id="C1", user_ts="1.000100", user_id="U2", value="good")
    await votes.vote(team_id="T1", channel_id="C2", user_ts="2.000100", user_id="U1", value="good")
    # Not an answer we have (another channel's ts, a pruned turn): nothing stored.
    assert (
        await votes.vote(
            team_id="T1", channel_id="C2", user_ts="1.000100", user_id="U1", value="good"
        )
        is None
    )
    assert await votes.comment(
        team_id="T1", channel_id="C1", user_ts="1.000100", user_id="U1", text=" Wrong city. "
    )
    assert not await votes.comment(
        team_id="T1", channel_id="C1", user_ts="1.000100", user_id="U3", text="x"
    )

    since = utcnow() - timedelta(days=1)
    by_channel = await store.feedback_since(since=since, by="channel", team_id="T1")
    assert [(c.key, c.good, c.bad) for c in by_channel] == [("C1", 1, 1), ("C2", 1, 0)]
    by_model = await store.feedback_since(since=since, by="model", team_id="T1", channel_id="C1")
    assert [(c.key, c.good, c.bad) for c in by_model] == [("m1", 1, 1)]
    async with store.reading() as session:
        comments = (await session.execute(select(AnswerFeedback.comment))).scalars().all()
    assert sorted(c or "" for c in comments) == ["", "", "Wrong city."]


async def test_a_pane_thread_keeps_its_context_and_is_titled_once(store: Store) -> None:
    panes = store.assistant_threads
    assert await panes.find(channel_id="D1", thread_ts="5.000100") is None
    assert not await panes.claim_title(channel_id="D1", thread_ts="5.000100")  # not a pane
    await panes.started(
        team_id="T1",
        channel_id="D1",
        thread_ts="5.000100",
        user_id="U1",
        context={"channel_id": "C1", "team_id": "T1", "enterprise_id": None},
    )
    found = await panes.find(channel_id="D1", thread_ts="5.000100")
    assert found is not None
    assert (found.viewing, found.user_id) == ("C1", "U1")
    assert found.context == {"channel_id": "C1", "team_id": "T1"}
    await panes.save_context(channel_id="D1", thread_ts="5.000100", context={"channel_id": "C7"})
    found = await panes.find(channel_id="D1", thread_ts="5.000100")
    assert found is not None
    assert (found.viewing, found.team_id) == ("C7", "T1")
    assert await panes.claim_title(channel_id="D1", thread_ts="5.000100")
    assert not await panes.claim_title(channel_id="D1", thread_ts="5.000100")


async def test_feedback_and_pane_threads_follow_retention(store: Store) -> None:
    old = await _turn(store, channel="C1", ts="1.000100")
    await _turn(store, channel="C1", ts="3.000100")
    for ts in ("1.000100", "3.000100"):
        await store.feedback.vote(
            team_id="T1", channel_id="C1", user_ts=ts, user_id="U1", value="good"
        )
    await store.assistant_threads.started(
        team_id="T1", channel_id="D1", thread_ts="9.000100", user_id="U1", context=None
    )
    await store.assistant_threads.started(
        team_id="T1", channel_id="D1", thread_ts="9.000200", user_id="U1", context=None
    )
    long_ago = utcnow() - timedelta(days=40)
    async with store.writing() as session:
        await session.execute(update(Turn).where(Turn.id == old).values(created_at=long_ago))
        await session.execute(
            update(AssistantThread)
            .where(AssistantThread.thread_ts == "9.000100")
            .values(updated_at=long_ago)
        )
    counts = await store.prune_history(older_than=utcnow() - timedelta(days=30))
    assert (counts.turns, counts.assistant_threads) == (1, 1)
    async with store.reading() as session:
        left = await session.scalar(select(func.count()).select_from(AnswerFeedback))
    assert left == 1  # the old answer's vote went with it
    assert await store.assistant_threads.find(channel_id="D1", thread_ts="9.000100") is None
    assert await store.assistant_threads.find(channel_id="D1", thread_ts="9.000200") is not None
