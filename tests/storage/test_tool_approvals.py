"""Tool approval questions, on SQLite and PostgreSQL: decided once, by the asker only, whatever
the clicks and replicas do; expiry and withdrawal never undo a decision; pruned with the
turn."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete

from storage.models import Turn
from storage.records import ApprovalDecision, ApprovalRecord, ApprovalStatus
from storage.repositories import Store
from tests.databases import Databases


async def _question(store: Store) -> ApprovalRecord:
    turn = await store.start_turn(
        team_id="T1",
        channel_id="C1",
        thread_ts="1.000100",
        user_id="U1",
        user_ts="1.000100",
        event_id=None,
        model="m1",
    )
    return await store.tool_approvals.create(
        team_id="T1",
        channel_id="C1",
        thread_ts="1.000100",
        user_id="U1",
        turn_id=turn.turn_id,
        call_id="call_1",
        server="orders",
        tool="cancel_order",
        title="orders · cancel order 42",
    )


async def test_only_the_asker_decides_and_only_once(store: Store) -> None:
    approvals = store.tool_approvals
    question = await _question(store)
    assert question.status == ApprovalStatus.PENDING

    outcome, record = await approvals.decide(
        approval_id=question.id, team_id="T1", user_id="U2", approve=True
    )
    assert outcome == ApprovalDecision.NOT_ASKER
    assert record is not None
    assert record.status == ApprovalStatus.PENDING
    outcome, record = await approvals.decide(
        approval_id=question.id, team_id="T2", user_id="U1", approve=True
    )
    assert (outcome, record) == (ApprovalDecision.UNKNOWN, None)  # another workspace's click

    outcome, record = await approvals.decide(
        approval_id=question.id, team_id="T1", user_id="U1", approve=False
    )
    assert outcome == ApprovalDecision.DECIDED
    assert record is not None
    assert (record.status, record.decided_by) == (ApprovalStatus.DENIED, "U1")
    assert record.decided_at is not None

    outcome, record = await approvals.decide(
        approval_id=question.id, team_id="T1", user_id="U1", approve=True
    )
    assert outcome == ApprovalDecision.ALREADY_DECIDED
    assert record is not None
    assert record.status == ApprovalStatus.DENIED
    # Expiring or withdrawing afterwards changes nothing either.
    closed, record = await approvals.close(approval_id=question.id, status=ApprovalStatus.EXPIRED)
    assert not closed
    assert record is not None
    assert record.status == ApprovalStatus.DENIED
    assert await approvals.decide(approval_id=99_999, team_id="T1", user_id="U1", approve=True) == (
        ApprovalDecision.UNKNOWN,
        None,
    )


async def test_concurrent_clicks_from_several_replicas_decide_once(databases: Databases) -> None:
    first = databases.store()
    question = await _question(first)
    replicas = [databases.store() for _ in range(4)]

    results = await asyncio.gather(
        *(
            store.tool_approvals.decide(
                approval_id=question.id, team_id="T1", user_id="U1", approve=n % 2 == 0
            )
            for n, store in enumerate(replicas * 2)
        )
    )

    outcomes = [outcome for outcome, _ in results]
    assert outcomes.count(ApprovalDecision.DECIDED) == 1
    assert outcomes.count(ApprovalDecision.ALREADY_DECIDED) == len(results) - 1
    final = await first.tool_approvals.get(question.id)
    assert final is not None
    assert final.status in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED)


async def test_expiry_races_a_click_and_one_of_them_wins(store: Store) -> None:
    approvals = store.tool_approvals
    question = await _question(store)
    (closed, _), (outcome, _) = await asyncio.gather(
        approvals.close(approval_id=question.id, status=ApprovalStatus.EXPIRED),
        approvals.decide(approval_id=question.id, team_id="T1", user_id="U1", approve=True),
    )
    assert closed != (outcome == ApprovalDecision.DECIDED)
    with pytest.raises(ValueError, match="expired or withdrawn"):
        await approvals.close(approval_id=question.id, status=ApprovalStatus.APPROVED)


async def test_message_is_noted_and_questions_go_with_their_turn(store: Store) -> None:
    approvals = store.tool_approvals
    question = await _question(store)
    await approvals.set_message(approval_id=question.id, message_ts="1.000200")
    record = await approvals.get(question.id)
    assert record is not None
    assert record.message_ts == "1.000200"
    assert [r.id for r in await approvals.list_for_turn(question.turn_id)] == [question.id]

    async with store.writing() as session:
        await session.execute(delete(Turn).where(Turn.id == question.turn_id))
    assert await approvals.get(question.id) is None
