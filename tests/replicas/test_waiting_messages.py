"""Several replicas on one PostgreSQL database: a message waiting in one live replica is never
taken by another replica's start-up, and once its replica is killed the next one to start
answers it, in order. Real ``python -m bot`` processes."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.service import INTERRUPTED_NOTICE
from tests.e2e.harness import wait_until
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import FakeSlack
from tests.faults.test_process_faults import BotProcess, fake_slack_texts


async def _query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


async def _waiting_owners(url: str) -> list[str]:
    """Owners of the messages still waiting (none where nothing keeps them)."""
    try:
        return [row[0] for row in await _query(url, "SELECT owner FROM accepted_messages")]
    except ProgrammingError as exc:
        if "accepted_messages" not in str(exc):
            raise
        return []


async def _statuses(url: str, thread_ts: str) -> list[str]:
    rows = await _query(
        url,
        "SELECT turns.status FROM turns JOIN threads ON threads.id = turns.thread_id "
        "WHERE threads.thread_ts = :ts ORDER BY turns.id",
        ts=thread_ts,
    )
    return [row[0] for row in rows]


async def test_a_waiting_message_is_never_stolen_and_survives_its_replicas_death(
    tmp_path: Path, postgres_url: str, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    def replica() -> BotProcess:
        return BotProcess(tmp_path / "unused.db", fake_slack, fake_model, database_url=postgres_url)

    a, b, b_again, a_again = replica(), replica(), replica(), replica()
    async with aiohttp.ClientSession() as http:
        try:
            await a.start(http)
            await b.start(http)
            root, _ = await a.mention(http, "first question", "EvR1")
            await fake_slack.wait_for(lambda: fake_slack.bot_replies("C1", root), timeout=10)
            good = fake_model.response_ids[0]
            fake_model.stall_after(1, text="stuck answer")
            await a.follow_up(http, "second question", "EvR2", thread_ts=root)
            await fake_model.wait_for_requests(2, timeout=10)
            _, status = await a.follow_up(http, "third question", "EvR3", thread_ts=root)
            assert status == 200
            # Stored before Slack had its 200, owned by A.
            [owner] = await _waiting_owners(postgres_url)

            # Replica B restarts while A lives: its start-up leaves A's turn and A's waiting
            # message alone (it only closes and adopts what a dead process left).
            assert await b.stop() == 0, b.stderr
            await b_again.start(http)
            assert await b_again.stop() == 0, b_again.stderr
            assert await _statuses(postgres_url, root) == ["completed", "pending"]
            assert await _waiting_owners(postgres_url) == [owner]
            assert INTERRUPTED_NOTICE not in fake_slack_texts(fake_slack, root)
            assert len(fake_model.requests) == 2

            # A dies. The next replica to start closes A's turn and answers A's message.
            assert await a.stop(signal.SIGKILL) == -signal.SIGKILL
            await a_again.start(http)
            await wait_until(lambda: len(fake_model.requests) >= 3, timeout=20)
            await fake_slack.wait_for(
                lambda: any(
                    t.endswith("third question") for t in fake_slack_texts(fake_slack, root)
                ),
                timeout=20,
            )
            assert await a_again.stop() == 0, a_again.stderr
        finally:
            for process in (a, b, b_again, a_again):
                await process.ensure_stopped()

    assert await _statuses(postgres_url, root) == ["completed", "failed", "completed"]
    assert await _waiting_owners(postgres_url) == []
    texts = fake_slack_texts(fake_slack, root)
    assert texts.index(INTERRUPTED_NOTICE) < len(texts) - 1
    assert sum(t.endswith("third question") for t in texts) == 1  # answered once
    third = fake_model.requests[2].body
    assert third["input"][-1]["content"].endswith("third question")
    assert third["previous_response_id"] == good
