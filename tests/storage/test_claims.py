"""Event claims: each Slack event is handled once, however often and however it arrives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from storage import Store
from tests.databases import Databases

EVENT = "event:Ev123"
MESSAGE = "msg:T1:C1:1700000000.000100"


async def test_a_slack_retry_of_the_same_event_is_refused(store: Store) -> None:
    assert await store.claim_event(keys=[EVENT]) is True
    assert await store.claim_event(keys=[EVENT]) is False


async def test_a_mention_delivered_twice_under_different_event_ids_is_handled_once(
    store: Store,
) -> None:
    # app_mention and message carry different event ids but the same channel and ts.
    assert await store.claim_event(keys=[EVENT, MESSAGE]) is True
    assert await store.claim_event(keys=["event:Ev456", MESSAGE]) is False
    # The refused claim stored nothing: its other key is still free.
    assert await store.claim_event(keys=["event:Ev456"]) is True


async def test_duplicate_keys_in_one_claim_count_once(store: Store) -> None:
    assert await store.claim_event(keys=[EVENT, EVENT]) is True


async def test_a_claim_needs_a_key(store: Store) -> None:
    with pytest.raises(ValueError, match="at least one key"):
        await store.claim_event(keys=[])


async def test_of_twenty_concurrent_claims_from_two_processes_exactly_one_wins(
    databases: Databases,
) -> None:
    stores = [databases.store(), databases.store()]  # two engines: two processes
    claims = [
        # Half list the keys in the other order, as two listeners might.
        stores[i % 2].claim_event(keys=[EVENT, MESSAGE] if i % 4 < 2 else [MESSAGE, EVENT])
        for i in range(20)
    ]
    results = await asyncio.gather(*claims)
    assert results.count(True) == 1


async def test_old_claims_are_pruned(store: Store) -> None:
    await store.claim_event(keys=[EVENT, MESSAGE])
    now = datetime.now(UTC)

    assert await store.prune_event_claims(older_than=now - timedelta(hours=1)) == 0
    assert await store.claim_event(keys=[EVENT]) is False

    assert await store.prune_event_claims(older_than=now + timedelta(seconds=1)) == 2
    assert await store.claim_event(keys=[EVENT]) is True


async def test_pruning_refuses_a_naive_datetime(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.prune_event_claims(older_than=datetime(2024, 1, 1))
