"""People's profiles (``users.info``) per workspace: cached with cachetools' TTL and size
bound, one call in flight per person, Slack's refusals remembered a short while and passing
failures not at all; against the fake Slack Web API through slack_sdk's real client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.identity import BotIdentity
from bot.slack.users import FAILURE_TTL, UserDirectory, UserLookupFailed
from bot.slack.workspaces import WorkspaceClients
from tests.fakes.slack_server import FakeSlack


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        for user in ("U1", "U2", "U3"):
            fake.add_user(user, name=user.lower(), display_name=f"Person {user}")
        yield fake


@pytest.fixture
def workspaces(slack: FakeSlack) -> WorkspaceClients:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    return WorkspaceClients.single(
        token=slack.bot_token,
        identity=BotIdentity(user_id="UBOT", bot_id="BBOT", team_id="T1"),
        client=client,
        stream_client=client,
    )


def lookups(slack: FakeSlack) -> int:
    return len(slack.calls_to("users.info"))


async def test_concurrent_lookups_share_one_call_and_the_answer_is_cached_for_the_ttl(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    clock = Clock()
    users = UserDirectory(workspaces, ttl=300, clock=clock)
    slack.slow_next("users.info", 0.2)
    names = await asyncio.gather(*(users.name("U1", team_id="T1") for _ in range(10)))
    assert names == ["Person U1"] * 10
    assert lookups(slack) == 1
    assert users.cached("U1", team_id="T1")
    clock.now = 299.0
    await users.name("U1", team_id="T1")
    assert lookups(slack) == 1
    clock.now = 300.0  # expired: asked again
    assert not users.cached("U1", team_id="T1")
    await users.name("U1", team_id="T1")
    assert lookups(slack) == 2


async def test_a_refusal_is_remembered_a_minute_and_a_rate_limit_not_at_all(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    clock = Clock()
    users = UserDirectory(workspaces, clock=clock)
    slack.fail_next("users.info", "user_not_found")
    for _ in range(3):
        with pytest.raises(UserLookupFailed, match="user_not_found"):
            await users.info("U1", team_id="T1")
    assert lookups(slack) == 1
    clock.now = FAILURE_TTL
    assert (await users.info("U1", team_id="T1"))["id"] == "U1"
    assert lookups(slack) == 2

    slack.fail_next("users.info", "ratelimited", status=429, retry_after=1)
    with pytest.raises(UserLookupFailed, match="ratelimited"):
        await users.info("U3", team_id="T1")
    assert not users.cached("U3", team_id="T1")  # passing: the next look asks again
    assert (await users.info("U3", team_id="T1"))["id"] == "U3"


async def test_the_cache_is_bounded_and_kept_per_workspace(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    users = UserDirectory(workspaces, max_cached=2)
    for user in ("U1", "U2", "U3"):
        await users.info(user, team_id="T1")
    assert [users.cached(u, team_id="T1") for u in ("U1", "U2", "U3")] == [False, True, True]
    assert not users.cached("U3", team_id="T2")  # another workspace's U3 is another person


async def test_when_the_turn_that_asked_is_cancelled_the_others_go_on_without_the_name(
    slack: FakeSlack, workspaces: WorkspaceClients
) -> None:
    users = UserDirectory(workspaces)
    slack.slow_next("users.info", 5.0)
    first = asyncio.create_task(users.info("U1", team_id="T1"))
    await asyncio.sleep(0)  # it runs until its request is on the wire (Slack answers in 5 s)
    other = asyncio.create_task(users.name("U1", team_id="T1"))
    await asyncio.sleep(0)  # it joins the lookup in flight
    assert not first.done()
    assert not other.done()
    first.cancel()
    assert await asyncio.wait_for(other, timeout=5) is None  # not cancelled with it
    with pytest.raises(asyncio.CancelledError):
        await first
