"""Usage reports and retention over the real boundaries: the CLI as a real process on a
database filled by real conversations, and ``/ai usage`` through signed slash commands."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import Store, TokenUsage, create_engine, create_session_factory, upgrade_to_head
from storage.models import EventClaim, SettingsAudit, Thread, Turn, utcnow
from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_cli import _env, _run
from tests.e2e.test_slash_command import ADMIN, MEMBER, command

PRICES = json.dumps({"test-model": {"input": 2, "cached": 1, "output": 10}})
# (input, cached, output, reasoning) per turn. U1 in C1 costs $0.0046, U2 in C1 $0.009;
# U1's turn in C2 uses a model without a price.
USAGE = {
    ("C1", "U1"): (1000, 400, 300, 100),
    ("C1", "U2"): (2000, 0, 500, 0),
    ("C2", "U1"): (100, 0, 50, 0),
}


async def _converse(bot: BotUnderTest) -> None:
    await bot.service.store.update_channel_settings(
        team_id="T1", channel_id="C2", values={"model": "other-model"}, updated_by="cli"
    )
    for (channel, user), (inp, cached, out, reasoning) in USAGE.items():
        bot.model.reply(
            usage={
                "input_tokens": inp,
                "cached_tokens": cached,
                "output_tokens": out,
                "reasoning_tokens": reasoning,
            }
        )
        ts, _ = await bot.mention(f"hello from {user}", channel=channel, user=user)
        await bot.wait_replies(channel, ts, 1)


def _db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


async def test_the_usage_command_reports_tokens_and_cost_as_table_csv_and_json(
    tmp_path: Path, start_bot: StartBot
) -> None:
    bot = await start_bot()
    await _converse(bot)
    # Someone finds the other model's answer unhelpful (a 👎, stored as the buttons store it).
    async with bot.service.store.reading() as session:
        other = (await session.execute(select(Turn).where(Turn.channel_id == "C2"))).scalar_one()
    vote = await bot.service.store.feedback.vote(
        team_id="T1", channel_id="C2", user_ts=other.user_ts, user_id="U9", value="bad"
    )
    assert vote is not None
    assert vote.model == "other-model"
    # Only the database and the prices: no Slack or model settings at all.
    env = _env(tmp_path, DATABASE_URL=_db(tmp_path), MODEL_PRICES=PRICES)

    code, out, err = await _run(["usage", "--team", "T1"], env, tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("usage since ")
    assert lines[0].endswith("UTC by channel (workspace T1)")
    assert lines[1].split() == [
        "team",
        "channel",
        "turns",
        "input",
        "cached",
        "output",
        "reasoning",
        "total",
        "est.",
        "cost",
        "up",
        "down",
    ]
    # up/down: 👍/👎 votes on the channel's answers.
    assert lines[3].split() == [
        "T1",
        "C1",
        "2",
        "3,000",
        "400",
        "800",
        "100",
        "3,800",
        "$0.0136",
        "0",
        "0",
    ]
    assert lines[4].split() == ["T1", "C2", "1", "100", "0", "50", "0", "150", "-", "0", "1"]
    assert lines[6].split() == ["total", "3", "3,100", "400", "850", "100", "3,950", "-", "0", "1"]

    code, out, err = await _run(
        ["usage", "--by", "user", "--format", "csv", "--since", "1d"], env, tmp_path
    )
    assert code == 0, err
    assert out.splitlines() == [
        "team,user,turns,input_tokens,cached_tokens,output_tokens,reasoning_tokens,"
        "total_tokens,cost_usd",
        "T1,U2,1,2000,0,500,0,2500,0.009",
        "T1,U1,2,1100,400,350,100,1450,",
    ]

    code, out, err = await _run(["usage", "--by", "model", "--format", "json"], env, tmp_path)
    assert code == 0, err
    report = json.loads(out)
    assert report["by"] == "model"
    assert report["team"] is None
    assert [
        (r["model"], r["turns"], r["cost_usd"], r["up"], r["down"]) for r in report["rows"]
    ] == [
        ("test-model", 2, 0.0136, 0, 0),
        ("other-model", 1, None, 0, 1),
    ]

    # Without prices there is no cost column; a future start shows nothing.
    plain = _env(tmp_path, DATABASE_URL=_db(tmp_path))
    code, out, _ = await _run(["usage", "--format", "csv"], plain, tmp_path)
    assert out.splitlines()[0].endswith("total_tokens,up,down")
    code, out, _ = await _run(["usage", "--since", "2999-01-01"], plain, tmp_path)
    assert out.splitlines()[-1] == "no turns recorded"


async def test_usage_refuses_bad_prices_and_spans_in_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, DATABASE_URL=_db(tmp_path), MODEL_PRICES='{"m": {"input": 1}}')
    code, _, err = await _run(["usage"], env, tmp_path)
    assert (code, err.strip()) == (2, "error: MODEL_PRICES is invalid: m: output price is missing")
    env = _env(tmp_path, DATABASE_URL=_db(tmp_path))
    code, _, err = await _run(["usage", "--since", "last week"], env, tmp_path)
    assert code == 2
    assert err.strip().startswith("error: --since: last week is not a time span")


async def _old_and_new_rows(tmp_path: Path, engine: AsyncEngine, *, age: timedelta) -> Store:
    await upgrade_to_head(_db(tmp_path))
    store = Store(create_session_factory(engine))
    old = utcnow() - age
    for thread in ("1.old", "1.new"):
        start = await store.start_turn(
            team_id="T1",
            channel_id="C1",
            thread_ts=thread,
            user_id="U1",
            user_ts=thread,
            event_id=None,
            model="m",
        )
        await store.complete_turn(
            turn_id=start.turn_id, response_id=f"r{thread}", reply_ts=None, usage=TokenUsage(1)
        )
        await store.claim_event(keys=[f"event:{thread}"])
        await store.update_channel_settings(
            team_id="T1", channel_id="C1", values={"model": thread}, updated_by="U1"
        )
        if thread == "1.old":
            async with store.session_factory() as session, session.begin():
                await session.execute(update(Turn).values(created_at=old))
                await session.execute(update(Thread).values(updated_at=old))
                await session.execute(update(EventClaim).values(claimed_at=old))
                await session.execute(update(SettingsAudit).values(changed_at=old))
    return store


async def test_prune_removes_old_rows_only(tmp_path: Path) -> None:
    engine = create_engine(_db(tmp_path))
    try:
        await _check_prune(
            tmp_path, await _old_and_new_rows(tmp_path, engine, age=timedelta(days=45))
        )
    finally:
        await engine.dispose()


async def _check_prune(tmp_path: Path, store: Store) -> None:
    env = _env(tmp_path, DATABASE_URL=_db(tmp_path), RETENTION_DAYS="60")
    code, out, err = await _run(["prune"], env, tmp_path)  # RETENTION_DAYS: nothing that old
    assert code == 0, err
    assert out.strip().endswith(": 0 turns, 0 threads, 0 event claims, 0 settings changes")

    code, out, err = await _run(["prune", "--older-than", "30d"], env, tmp_path)
    assert code == 0, err
    assert out.startswith("pruned rows older than ")
    assert out.strip().endswith(": 1 turns, 1 threads, 1 event claims, 1 settings changes")
    assert await store.find_thread(team_id="T1", channel_id="C1", thread_ts="1.old") is None
    [kept] = await store.list_turns(team_id="T1", channel_id="C1", thread_ts="1.new")
    assert kept.response_id == "r1.new"
    assert [row.new_value for row in await store.list_settings_audit(team_id="T1")] == ["1.new"]
    assert not await store.claim_event(keys=["event:1.new"])
    assert await store.claim_event(keys=["event:1.old"])

    code, out, _ = await _run(
        ["prune"], _env(tmp_path, DATABASE_URL=_db(tmp_path), RETENTION_DAYS="0"), tmp_path
    )
    assert (code, out.strip()) == (0, "RETENTION_DAYS is 0 (keep forever): nothing pruned")
    code, _, err = await _run(["prune", "--older-than", "0h"], env, tmp_path)
    assert code == 2
    assert "at least 1h ago" in err


@pytest.fixture
async def priced(start_bot: StartBot) -> BotUnderTest:
    bot = await start_bot(model_prices=PRICES)
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.slack.add_user(MEMBER, name="max")
    return bot


async def test_ai_usage_shows_the_channels_tokens_top_users_and_cost(priced: BotUnderTest) -> None:
    bot = priced
    await _converse(bot)
    answer = await command(bot, "usage", user=MEMBER)
    lines = answer.splitlines()
    assert lines[0] == "*Usage in <#C1>*"
    for span in ("today", "7 days", "30 days"):
        assert f"• {span}: 3,800 tokens (2 turns) · ~$0.0136" in lines
    top = lines.index("*Top users, 30 days*")
    assert lines[top + 1 :] == [
        "1. <@U2>: 2,500 tokens (1 turn) · ~$0.0090",
        "2. <@U1>: 1,300 tokens (1 turn) · ~$0.0046",
        "*Feedback, 30 days*: no votes yet",
    ]
    # A channel whose model has no price shows tokens only.
    other = await command(bot, "usage", user=MEMBER, channel="C2")
    assert "• today: 150 tokens (1 turn)" in other.splitlines()
    assert "$" not in other


async def test_ai_usage_workspace_is_for_admins(priced: BotUnderTest) -> None:
    bot = priced
    await _converse(bot)
    refused = await command(bot, "usage workspace", user=MEMBER)
    assert refused.startswith("Sorry, only workspace admins and owners can see")
    assert "3,950" not in refused
    answer = await command(bot, "usage workspace", user=ADMIN, channel="C9")
    lines = answer.splitlines()
    assert lines[0] == "*Usage in this workspace*"
    assert "• 30 days: 3,950 tokens (3 turns)" in lines  # no cost: C2's model has no price
    channels = lines.index("*Top channels, 30 days*")
    assert lines[channels + 1 : channels + 3] == [
        "1. <#C1>: 3,800 tokens (2 turns) · ~$0.0136",
        "2. <#C2>: 150 tokens (1 turn)",
    ]
    users = lines.index("*Top users, 30 days*")
    assert lines[users + 1 :] == [
        "1. <@U2>: 2,500 tokens (1 turn) · ~$0.0090",
        "2. <@U1>: 1,450 tokens (2 turns)",
        "*Feedback by channel, 30 days*: no votes yet",
        "*Feedback by model, 30 days*: no votes yet",
    ]
    assert "usage workspace" in await command(bot, "help", user=MEMBER)
