"""Cached lookups: cachetools' TTL and size bound, with concurrent misses sharing one call."""

from __future__ import annotations

import asyncio

import pytest

from bot.lookup_cache import SharedLookups
from bot.model_catalogue import ModelCatalogue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_misses_share_one_call_and_the_answer_is_cached() -> None:
    clock = Clock()
    lookups: SharedLookups[str, int] = SharedLookups(ttl=10, maxsize=10, timer=clock)
    calls = 0
    release = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiting = [asyncio.create_task(lookups.get("k", load)) for _ in range(5)]
    await asyncio.sleep(0)  # let every task reach the lookup
    release.set()
    assert await asyncio.gather(*waiting) == [42] * 5
    assert calls == 1
    assert await lookups.get("k", load) == 42
    assert calls == 1
    clock.now = 10.5  # past the TTL: asked again
    assert await lookups.get("k", load) == 42
    assert calls == 2


async def test_the_size_is_bounded_and_unkept_answers_are_not_cached() -> None:
    lookups: SharedLookups[int, int | None] = SharedLookups(ttl=60, maxsize=3)
    for key in range(5):
        await lookups.get(key, lambda key=key: asyncio.sleep(0, result=key))  # type: ignore[misc]
    assert len(lookups) == 3
    calls = 0

    async def nothing() -> int | None:
        nonlocal calls
        calls += 1
        return None

    for _ in range(2):
        assert await lookups.get(99, nothing, keep=lambda v: v is not None) is None
    assert calls == 2


async def test_an_error_or_a_cancellation_reaches_every_waiter() -> None:
    lookups: SharedLookups[str, int] = SharedLookups(ttl=60, maxsize=10)
    started = asyncio.Event()

    async def failing() -> int:
        started.set()
        await asyncio.sleep(0.01)
        raise RuntimeError("slack said no")

    first = asyncio.create_task(lookups.get("k", failing))
    await started.wait()
    second = asyncio.create_task(lookups.get("k", failing))
    for task in (first, second):
        with pytest.raises(RuntimeError, match="slack said no"):
            await task
    assert len(lookups) == 0

    started.clear()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(30)
        return 1

    owner = asyncio.create_task(lookups.get("k", slow))
    await started.wait()
    waiter = asyncio.create_task(lookups.get("k", slow))
    await asyncio.sleep(0)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, timeout=5)  # cancelled with it, never left hanging


async def test_forms_opened_together_share_one_model_list_request() -> None:
    requests = 0

    async def list_models() -> list[str]:
        nonlocal requests
        requests += 1
        await asyncio.sleep(0.01)
        return ["gpt-b", "gpt-a", "gpt-c"]

    catalogue = ModelCatalogue(list_models=list_models, allowed=["gpt-c", "gpt-a", "gpt-z"])
    choices = await asyncio.gather(*(catalogue.choices() for _ in range(4)))
    assert choices == [["gpt-c", "gpt-a"]] * 4
    assert requests == 1
