"""One Slack edge: slack_sdk's, aiohttp's and the OS's failures become ours in one module
(``bot/slack/failures.py``), and nobody else catches them. The scan below reads every module
of ``bot/`` and fails on a new catch site; the mapping itself is checked against the fake
Slack Web API through slack_sdk's real client."""

from __future__ import annotations

import ast
import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import (
    ContextError,
    DeliveryError,
    NotInstalledError,
    SlackRateLimitedError,
    SlackRefusedError,
    SlackTimeoutError,
    SlackUnreachableError,
)
from bot.slack.budget import Priority, Rate, RateBudget
from bot.slack.client import ScheduledWebClient, scheduled_call
from bot.slack.failures import reading_context, retry_after, slack_failures
from tests.fakes.slack_server import FakeSlack

BOT = Path(__file__).resolve().parents[2] / "bot"
EDGE = BOT / "slack" / "failures.py"

SLACK_ERRORS = {
    "SlackApiError",
    "SlackClientError",
    "SlackRequestError",
    "BotUserAccessError",
    "SlackTokenRotationError",
    "SlackClientNotConnectedError",
    "SlackObjectFormationError",
    "SlackClientConfigurationError",
}
OS_ERRORS = {
    "OSError",
    "IOError",
    "EnvironmentError",
    "ConnectionError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "ConnectionAbortedError",
    "BrokenPipeError",
}


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _caught(expr: ast.expr) -> list[str]:
    """The names an ``except`` clause catches (``(A, *B)`` → A, B)."""
    if isinstance(expr, ast.Tuple):
        return [name for element in expr.elts for name in _caught(element)]
    if isinstance(expr, ast.Starred):
        return _caught(expr.value)
    dotted = _dotted(expr)
    return [dotted] if dotted else []


def edge_violations(source: str, *, name: str, slack_edge: bool) -> list[str]:
    """Where ``source`` handles Slack's failures itself instead of through the edge:
    importing ``slack_sdk.errors``, naming its errors, catching aiohttp's errors, and (in the
    Slack edge, ``slack_edge``) catching the OS's network errors."""
    tree = ast.parse(source, filename=name)
    from_aiohttp: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [
                f"{where}: imports {a.name}" for a in node.names if a.name == "slack_sdk.errors"
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module == "slack_sdk.errors" or (
                module == "slack_sdk" and any(a.name == "errors" for a in node.names)
            ):
                found.append(f"{where}: imports from {module}")
            if module.split(".")[0] == "aiohttp":
                from_aiohttp.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Name | ast.Attribute):
            dotted = _dotted(node) or ""
            if dotted.split(".")[-1] in SLACK_ERRORS or dotted.startswith("slack_sdk.errors"):
                found.append(f"{where}: names {dotted}")
    for handler in (n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler)):
        if handler.type is None:
            continue
        where = f"{name}:{handler.lineno}"
        for dotted in _caught(handler.type):
            aiohttp_error = dotted.split(".")[0] == "aiohttp" or dotted in from_aiohttp
            network_error = dotted.split(".")[-1] in OS_ERRORS | {"gaierror", "SSLError"}
            if aiohttp_error or (slack_edge and network_error):
                found.append(f"{where}: catches {dotted}")
    return sorted(set(found))


def test_only_the_edge_catches_slack_sdk_aiohttp_or_network_errors() -> None:
    found: list[str] = []
    for path in sorted(BOT.rglob("*.py")):
        if path == EDGE:
            continue
        found += edge_violations(
            path.read_text(),
            name=str(path.relative_to(BOT.parent)),
            slack_edge=path.is_relative_to(BOT / "slack"),
        )
    assert found == [], "catch our errors (bot.errors), map foreign ones in bot/slack/failures.py"


@pytest.mark.parametrize(
    "snippet",
    [
        "from slack_sdk.errors import SlackApiError",
        "import slack_sdk.errors",
        "from slack_sdk import errors",
        "try:\n    pass\nexcept slack_sdk.errors.SlackApiError:\n    pass",
        "try:\n    pass\nexcept (KeyError, SlackClientError) as exc:\n    pass",
        "import aiohttp\ntry:\n    pass\nexcept aiohttp.ClientError:\n    pass",
        "from aiohttp import ClientError as E\ntry:\n    pass\nexcept E:\n    pass",
        "FAILURES = (SlackApiError, OSError)",
        "try:\n    pass\nexcept (TimeoutError, ConnectionResetError):\n    pass",
        "try:\n    pass\nexcept OSError:\n    pass",
    ],
)
def test_the_scan_finds_each_way_of_catching_them_itself(snippet: str) -> None:
    assert edge_violations(snippet, name="new.py", slack_edge=True)


def test_the_scan_lets_our_own_errors_and_plain_timeouts_through() -> None:
    snippet = (
        "from aiohttp import web\n"
        "try:\n    pass\nexcept (DeliveryError, SlackRefusedError, TimeoutError):\n    pass\n"
        "try:\n    pass\nexcept OSError:\n    pass\n"
    )
    assert edge_violations(snippet, name="bot/slack/new.py", slack_edge=True) == [
        "bot/slack/new.py:8: catches OSError"
    ]
    assert edge_violations(snippet, name="bot/cli.py", slack_edge=False) == []


# --- the mapping, through slack_sdk's real client against the fake Slack ---------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user("U1", name="ada")
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)


async def test_a_refusal_carries_slacks_code_the_method_and_the_status(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.fail_next("users.info", "user_not_found")
    with pytest.raises(SlackRefusedError) as refused, slack_failures():
        await client.users_info(user="U1")
    exc = refused.value
    assert (exc.code, exc.method, exc.status) == ("user_not_found", "users.info", 200)
    assert not isinstance(exc, SlackRateLimitedError)
    assert retry_after(exc) is None
    assert type(exc.__cause__).__name__ == "SlackApiError"


async def test_a_429_carries_retry_after(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail_next("users.info", "ratelimited", status=429, retry_after=7)
    with pytest.raises(SlackRateLimitedError) as limited, slack_failures("users.info"):
        await client.users_info(user="U1")
    exc = limited.value
    assert (exc.code, exc.status, exc.retry_after) == ("ratelimited", 429, 7.0)
    assert retry_after(exc) == 7.0


async def test_an_unreachable_slack_and_a_slow_one_are_told_apart() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    nobody = AsyncWebClient(token="xoxb-1", base_url=f"http://127.0.0.1:{port}/api/")
    with pytest.raises(SlackUnreachableError) as unreachable, slack_failures("auth.test"):
        await nobody.auth_test()
    assert (unreachable.value.code, unreachable.value.method) == ("slack_unreachable", "auth.test")

    async with FakeSlack() as slow:
        slow.slow_next("auth.test", 5.0)
        impatient = AsyncWebClient(token=slow.bot_token, base_url=slow.api_url, timeout=0.2)
        with pytest.raises(SlackTimeoutError) as late, slack_failures("auth.test"):
            await impatient.auth_test()
    assert late.value.code == "timeout"


async def test_no_slot_before_the_deadline_is_a_timeout_and_a_bug_stays_a_bug(
    slack: FakeSlack,
) -> None:
    budget = RateBudget(rates={"users.info": Rate(per_minute=0.5, burst=1)})
    scheduled = ScheduledWebClient(budget=budget, token=slack.bot_token, base_url=slack.api_url)
    await budget.acquire("users.info")  # the only slot for a while
    deadline = asyncio.get_running_loop().time() + 0.1
    with pytest.raises(SlackTimeoutError):
        await scheduled_call(
            scheduled, "users.info", lambda: {"user": "U1"}, priority=Priority.NORMAL,
            deadline=deadline,
        )  # fmt: skip
    assert slack.calls_to("users.info") == []

    with pytest.raises(KeyError), slack_failures("users.info"):
        raise KeyError("ours")  # not a Slack failure: left as it is


async def test_reading_the_model_input_fails_only_as_context_error(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.fail_next("conversations.replies", "not_in_channel")
    with pytest.raises(ContextError) as refused, reading_context():
        await client.conversations_replies(channel="C1", ts="1.0")
    assert refused.value.code == "not_in_channel"

    with pytest.raises(ContextError) as gone, reading_context():
        raise NotInstalledError("T9")
    assert gone.value.code == "not_installed"

    with pytest.raises(ContextError) as unreachable, reading_context():
        raise ConnectionResetError("reset by peer")
    assert unreachable.value.code == "slack_unreachable"
    assert isinstance(unreachable.value.__cause__, DeliveryError)
