"""Storage faults: another writer holding SQLite's lock, and a database that turned read-only
while the service runs."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import shown, wait_until


async def test_a_writer_holding_the_lock_delays_the_turn_but_does_not_lose_it(
    start_bot: StartBot, tmp_path: Path
) -> None:
    bot = await start_bot(slack_native_streaming=False)
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction
        # The message is stored before Slack gets its 200, so the delivery waits too.
        delivery = asyncio.create_task(bot.mention("are you there?"))
        await asyncio.sleep(1.0)  # the other writer holds the lock for a second
        # Nothing could be written meanwhile: the message is queued on SQLite's busy timeout.
        assert bot.model.requests == []
        assert not delivery.done()
        other.execute("COMMIT")
        ts, _ = await delivery
    finally:
        other.close()

    [reply] = await bot.wait_replies("C1", ts, 1)
    assert shown(reply) == "answer 1 to: U1: are you there?"
    [turn] = await bot.turns("C1", ts)
    assert turn.status == "completed"
    assert turn.duration_ms is not None


@contextmanager
def _immutable(*paths: Path) -> Iterator[None]:
    """Make files read-only even for root (``chattr +i``); chmod does not stop root."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: cannot make a file read-only for root")
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(
            f"chattr +i refused ({done.stderr.decode().strip()}): needs CAP_LINUX_IMMUTABLE"
        )
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


async def _mention_on_a_read_only_database(
    start_bot: StartBot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> tuple[list[str], list[logging.LogRecord], bool]:
    """Answer once, make the database read-only, mention again; returns what the thread got
    for the second mention, the error log records and whether handling ended in time."""
    bot = await start_bot(slack_native_streaming=False)
    first, _ = await bot.mention("before")
    await bot.wait_replies("C1", first, 1)
    db = tmp_path / "bot.db"
    # The database file and its WAL become read-only (as after `chmod a-w` for a non-root
    # user, or a read-only remount). The shared-memory index must stay writable: SQLite maps
    # it, and an immutable mapping kills the process with SIGBUS. Pooled connections are
    # dropped so the next ones open the file as SQLite does then: read-only.
    with _immutable(db, db.with_name("bot.db-wal")):
        await bot.service.store.session_factory.kw["bind"].dispose()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            ts, _ = await bot.mention("after")
            try:
                await wait_until(lambda: bot.slack.bot_replies("C1", ts) != [], timeout=10)
                ended = True
            except AssertionError:
                ended = bot.service.tracker.active == 0
        records = [r for r in caplog.records if r.levelno >= logging.ERROR]
        texts = [shown(m) for m in bot.slack.bot_replies("C1", ts)]
    return texts, records, ended


async def test_a_read_only_database_does_not_hang_and_is_logged(
    start_bot: StartBot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _texts, records, ended = await _mention_on_a_read_only_database(start_bot, tmp_path, caplog)
    assert ended, "the turn was still running 10 s after the mention"
    logged = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in records)
    assert "readonly database" in logged, logged


async def test_a_read_only_database_tells_the_thread(
    start_bot: StartBot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts, _records, _ended = await _mention_on_a_read_only_database(start_bot, tmp_path, caplog)
    assert texts, "the user got no answer and no error"
    assert texts[0].startswith(":warning:")
