"""The per-workspace Slack rate budget: calls wait for their slot, by priority; updates thin
out first; a 429 pauses the method for everyone and the call waits its turn again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from bot.slack.budget import SLACK_RATES, Priority, Rate, RateBudget

FAST = {"chat.update": Rate(per_minute=600, burst=4)}  # 10 a second after a burst of 4


class _Response(dict[str, Any]):
    def __init__(self, status_code: int, retry_after: str | None) -> None:
        super().__init__(ok=False, error="ratelimited")
        self.status_code = status_code
        self.headers = {"Retry-After": retry_after} if retry_after else {}


def test_no_minute_of_a_tier_ever_holds_more_calls_than_slack_allows() -> None:
    for method, per_minute in (("chat.startStream", 20), ("chat.update", 50), ("users.info", 100)):
        rate = SLACK_RATES[method]
        assert rate.burst + rate.per_minute < per_minute


async def test_waiting_calls_are_served_by_priority_then_in_order() -> None:
    budget = RateBudget(rates=FAST)
    for _ in range(4):  # the burst
        await budget.acquire("chat.update")
    served: list[str] = []

    async def call(name: str, priority: Priority) -> None:
        await budget.acquire("chat.update", priority=priority)
        served.append(name)

    tasks = [
        asyncio.create_task(call("update 1", Priority.UPDATE)),
        asyncio.create_task(call("update 2", Priority.UPDATE)),
        asyncio.create_task(call("final", Priority.FINAL)),
        asyncio.create_task(call("first", Priority.FIRST)),
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    assert served == ["first", "final", "update 1", "update 2"]


async def test_updates_leave_a_reserve_for_first_and_final_texts() -> None:
    budget = RateBudget(rates={"chat.update": Rate(per_minute=6, burst=8)})  # reserve 2
    for _ in range(6):
        assert budget.try_acquire("chat.update")
    with pytest.raises(TimeoutError):
        await budget.acquire(
            "chat.update",
            priority=Priority.UPDATE,
            deadline=asyncio.get_running_loop().time() + 0.2,
        )
    await budget.acquire("chat.update", priority=Priority.FINAL)  # still served at once


@pytest.mark.slow  # waits out a real Retry-After
async def test_a_429_pauses_the_method_and_the_call_is_made_again_after_retry_after() -> None:
    budget = RateBudget(rates=FAST)
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def send() -> str:
        attempts.append(loop.time())
        if len(attempts) == 1:
            raise SlackApiError("rate limited", _Response(429, "1"))
        return "ok"

    async def someone_else() -> float:
        await asyncio.sleep(0.1)  # starts while the method is paused
        await budget.acquire("chat.update", priority=Priority.FIRST)
        return loop.time()

    other = asyncio.create_task(someone_else())
    assert await budget.run("chat.update", send, priority=Priority.FINAL) == "ok"
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 0.95
    # Everyone else waited out the pause too: it is the workspace's budget for the method.
    assert await other - attempts[0] >= 0.95


async def test_past_its_deadline_a_rate_limited_call_gives_up() -> None:
    budget = RateBudget(rates=FAST)

    async def send() -> str:
        raise SlackApiError("rate limited", _Response(429, "30"))

    with pytest.raises(SlackApiError):
        await budget.run("chat.update", send, deadline=asyncio.get_running_loop().time() + 1)


async def test_a_native_stream_needs_a_start_slot_and_a_stop_slot_for_every_open_stream() -> None:
    budget = RateBudget()
    opened = 0
    while budget.try_open_stream():
        opened += 1
    stop = SLACK_RATES["chat.stopStream"]
    assert opened == stop.burst  # each open stream keeps a stop slot
    budget.stream_closed()
    assert budget.open_streams == opened - 1
