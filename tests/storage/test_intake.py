"""storage.intake on both engines: accepting (claim and store together), Slack order, admission
that deletes the waiting message with the turn, and adoption only from owners that are gone."""

from __future__ import annotations

import asyncio

import pytest

from storage import Store
from storage.intake import Acceptance, Intake, LimitReached, TurnLimits
from storage.repositories import TurnStart

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1700000000.000100"}


@pytest.fixture
def intake(store: Store) -> Intake:
    return Intake(store)


async def _accept(intake: Intake, ts: str, owner: str = "A", *, addressed: bool = True) -> int:
    result = await intake.accept(
        **THREAD,
        ts=ts,
        user_id="U1",
        event_id=f"Ev{ts}",
        claim_keys=[f"event:Ev{ts}", f"msg:T1:C1:{ts}"],
        payload={"text": f"message {ts}"},
        owner=owner,
        needs_thread=not addressed,
    )
    assert result.status is Acceptance.ACCEPTED
    assert result.queued_id is not None
    return result.queued_id


async def _admit(intake: Intake, queued_id: int, ts: str, **limits: int) -> object:
    return await intake.admit_turn(
        **THREAD,
        user_id="U1",
        user_ts=ts,
        event_id=None,
        model="m",
        limits=TurnLimits(**limits),
        queued_id=queued_id,
    )


async def test_a_retry_of_an_accepted_message_is_a_duplicate_and_stores_nothing(
    intake: Intake,
) -> None:
    await _accept(intake, "1700000000.000200")
    again = await intake.accept(
        **THREAD,
        ts="1700000000.000200",
        user_id="U1",
        event_id="EvOther",
        claim_keys=["event:EvOther", "msg:T1:C1:1700000000.000200"],
        payload={},
        owner="A",
        needs_thread=False,
    )
    assert again.status is Acceptance.DUPLICATE
    assert len(await intake.waiting()) == 1


async def test_a_message_not_for_the_bot_outside_its_threads_stores_nothing(
    intake: Intake,
) -> None:
    result = await intake.accept(
        **THREAD,
        ts="1700000000.000300",
        user_id="U1",
        event_id=None,
        claim_keys=["msg:T1:C1:1700000000.000300"],
        payload={},
        owner="A",
        needs_thread=True,
    )
    assert result.status is Acceptance.NOT_IN_THREAD
    assert await intake.waiting() == []
    # Once a message of that thread waits, a follow-up there is taken.
    await _accept(intake, "1700000000.000400")
    await _accept(intake, "1700000000.000500", addressed=False)


async def test_messages_come_out_in_slack_order_per_owner(intake: Intake) -> None:
    later = await _accept(intake, "1700000000.000900")
    earlier = await _accept(intake, "1700000000.000700")
    await _accept(intake, "1700000000.000600", owner="B")
    first = await intake.next_in_thread(owner="A", **THREAD)
    assert first is not None
    assert (first.id, first.payload) == (earlier, {"text": "message 1700000000.000700"})
    assert isinstance(await _admit(intake, earlier, first.ts), TurnStart)
    second = await intake.next_in_thread(owner="A", **THREAD)
    assert second is not None
    assert second.id == later


async def test_admission_records_one_turn_per_message_at_most(intake: Intake) -> None:
    queued = await _accept(intake, "1700000000.001000")
    results = await asyncio.gather(*(_admit(intake, queued, "1700000000.001000") for _ in range(4)))
    assert sum(isinstance(r, TurnStart) for r in results) == 1
    assert results.count(None) == 3
    assert await intake.waiting() == []


async def test_a_refused_message_keeps_waiting_until_forgotten(intake: Intake) -> None:
    first = await _accept(intake, "1700000000.001100")
    assert isinstance(await _admit(intake, first, "1", user_hourly_requests=1), TurnStart)
    second = await _accept(intake, "1700000000.001200")
    refusal = await _admit(intake, second, "2", user_hourly_requests=1)
    assert isinstance(refusal, LimitReached)
    assert (refusal.kind, refusal.used, refusal.limit) == ("user_hourly_requests", 1, 1)
    assert [m.id for m in await intake.waiting()] == [second]
    await intake.forget(queued_id=second)
    assert await intake.waiting() == []


async def test_only_messages_of_owners_that_are_gone_are_adopted(intake: Intake) -> None:
    mine = await _accept(intake, "1700000000.001300", owner="A")
    alive = await _accept(intake, "1700000000.001400", owner="B")
    gone = await _accept(intake, "1700000000.001500", owner="C")

    async def is_alive(owner: str) -> bool:
        return owner in ("A", "B")

    adopted = await intake.adopt_orphans(owner="A", is_alive=is_alive)
    assert [m.id for m in adopted] == [gone]
    owners = {m.id: m.owner for m in await intake.waiting()}
    assert owners == {mine: "A", alive: "B", gone: "A"}
    assert await intake.adopt_orphans(owner="A", is_alive=is_alive) == []
