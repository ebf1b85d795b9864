"""The command line, run as a real process: settings errors, migrate, config, and the
service itself from start to SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp

from storage.migrate import head_revision
from tests.conftest import StartBot
from tests.e2e.harness import MODEL_KEY, SIGNING_SECRET, BotUnderTest, shown, sign
from tests.e2e.harness import run_cli as _run
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import FakeSlack

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "DEFAULT_", "DATABASE_", "BOT_", "LOG_"))
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(values)
    return env


def _service_env(tmp_path: Path, slack: FakeSlack, model: FakeResponsesServer) -> dict[str, str]:
    return _env(
        tmp_path,
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY=MODEL_KEY,
        DEFAULT_MODEL="test-model",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
    )


async def test_a_missing_setting_stops_start_up_with_one_plain_line(tmp_path: Path) -> None:
    env = _env(tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", DEFAULT_MODEL="m")
    code, _out, err = await _run([], env, tmp_path)
    assert code == 2
    assert err.strip() == "error: OPENAI_API_KEY is required: set it in the environment or in .env"


async def test_a_malformed_setting_is_named(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="s",
        DEFAULT_MODEL="m",
        OPENAI_API_KEY="k",
        PORT="eighty",
    )
    code, _, err = await _run(["run"], env, tmp_path)
    assert code == 2
    assert err.strip().startswith("error: PORT is invalid")
    assert len(err.strip().splitlines()) == 1


async def test_settings_come_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=not-a-bot-token\n")
    code, _, err = await _run([], _env(tmp_path), tmp_path)
    assert code == 2
    assert "SLACK_BOT_TOKEN is invalid" in err


async def test_migrate_creates_the_database(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "bot.db"
    env = _env(tmp_path, DATABASE_URL=f"sqlite+aiosqlite:///{db}")
    code, _out, err = await _run(["migrate"], env, tmp_path)
    assert code == 0, err
    tables = {
        row[0]
        for row in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")
    }
    assert {"threads", "turns", "channel_settings", "event_claims", "alembic_version"} <= tables


async def test_config_set_validates_saves_and_the_next_turn_uses_it(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer, start_bot: StartBot
) -> None:
    env = _service_env(tmp_path, fake_slack, fake_model)
    code, _, err = await _run(
        ["config", "set", "--channel", "C1", "--temperature", "3"], env, tmp_path
    )
    assert code == 2
    assert "temperature must be a number from 0 to 2" in err
    assert "Nothing was saved" in err

    # Without --team the workspace comes from the bot token (auth.test on the fake Slack).
    code, out, err = await _run(
        [
            "config",
            "set",
            "--channel",
            "C1",
            "--model",
            "gpt-special",
            "--temperature",
            "0.3",
            "--instructions",
            "Answer like a pirate.",
        ],
        env,
        tmp_path,
    )
    assert code == 0, err
    code, out, _ = await _run(["config", "show", "--channel", "C1", "--team", "T1"], env, tmp_path)
    assert code == 0
    assert "gpt-special" in out
    assert "[channel]" in out
    assert "max_output_tokens" in out

    bot: BotUnderTest = await start_bot()
    ts, _ = await bot.mention("ahoy?")
    await bot.wait_replies("C1", ts, 1)
    other, _ = await bot.mention("elsewhere", channel="C2")
    await bot.wait_replies("C2", other, 1)
    here, there = bot.model_bodies()
    assert (here["model"], here["temperature"], here["instructions"]) == (
        "gpt-special",
        0.3,
        "Answer like a pirate.",
    )
    assert there["model"] == "test-model"
    assert "temperature" not in there

    code, out, _ = await _run(
        ["config", "reset", "--channel", "C1", "--field", "model"], env, tmp_path
    )
    assert code == 0
    assert "gpt-special" not in out
    assert "Answer like a pirate." in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_service_process_answers_and_stops_cleanly_on_sigterm(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    port = _free_port()
    env = _service_env(tmp_path, fake_slack, fake_model)
    env.update(HOST="127.0.0.1", PORT=str(port), LOG_FORMAT="json")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert process.returncode is None, "the service exited during start-up"
                assert asyncio.get_running_loop().time() < deadline, "service never became ready"
                await asyncio.sleep(0.05)

            # One signed mention, exactly as Slack would send it to this process.
            text = f"<@{fake_slack.bot_user_id}> hello process"
            ts = fake_slack.add_message("C1", user="U1", text=text)
            body = json.dumps(
                {
                    "team_id": "T1",
                    "api_app_id": "A1",
                    "type": "event_callback",
                    "event_id": "EvProc1",
                    "event_time": 1,
                    "event": {
                        "type": "app_mention",
                        "user": "U1",
                        "text": text,
                        "ts": ts,
                        "channel": "C1",
                        "event_ts": ts,
                    },
                }
            ).encode()
            headers = {"Content-Type": "application/json", **sign(body)}
            async with http.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
            ) as response:
                assert response.status == 200
            await fake_model.wait_for_requests(1, timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    # SIGTERM let the turn in flight finish: the answer is there, whole.
    [reply] = fake_slack.bot_replies("C1", ts)
    assert "hello process" in shown(reply)
    log = err.decode()
    assert "service started" in log
    assert "service stopped" in log
    assert MODEL_KEY not in log
    assert fake_slack.bot_token not in log


async def test_config_default_layer_and_history(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    env = _service_env(tmp_path, fake_slack, fake_model)
    code, out, err = await _run(
        ["config", "set", "--default", "--team", "T1", "--model", "ws-model", "--enabled", "off"],
        env,
        tmp_path,
    )
    assert code == 0, err
    assert "saved for the workspace defaults: model=ws-model, enabled=off" in out
    code, out, _ = await _run(["config", "show", "--channel", "C3", "--team", "T1"], env, tmp_path)
    assert "ws-model  [workspace]" in out
    assert "enabled            off  [workspace]" in out
    await _run(
        ["config", "set", "--channel", "C3", "--team", "T1", "--top-p", "0.9"], env, tmp_path
    )
    await _run(
        ["config", "reset", "--channel", "C3", "--team", "T1", "--field", "top_p"], env, tmp_path
    )

    code, out, _ = await _run(
        ["config", "history", "--channel", "C3", "--team", "T1"], env, tmp_path
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert "cli" in lines[0]
    assert "top_p" in lines[0]
    assert "0.9 -> not set" in lines[0]  # newest first
    assert "not set -> 0.9" in lines[1]
    code, out, _ = await _run(["config", "history", "--default", "--team", "T1"], env, tmp_path)
    assert "ws-model" in out


async def test_suggested_prompts_and_loading_messages_are_set_for_the_workspace_only(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    env = _service_env(tmp_path, fake_slack, fake_model)
    code, out, err = await _run(
        [
            "config",
            "set",
            "--default",
            "--team",
            "T1",
            "--suggested-prompts",
            "Summarise this channel | What changed, and why?",
            "--loading-messages",
            "Brewing…",
        ],
        env,
        tmp_path,
    )
    assert code == 0, err
    assert "suggested_prompts=Summarise this channel, What changed, and why?" in out
    # A workspace-only list cannot be set on a channel; five prompts are one too many.
    code, _, err = await _run(
        ["config", "set", "--channel", "C3", "--team", "T1", "--suggested-prompts", "Hi"],
        env,
        tmp_path,
    )
    assert code == 2
    assert "--default" in err
    code, _, err = await _run(
        ["config", "set", "--default", "--team", "T1", "--suggested-prompts", "a|b|c|d|e"],
        env,
        tmp_path,
    )
    assert code == 2
    assert "at most 4 items" in err
    code, out, _ = await _run(["config", "history", "--default", "--team", "T1"], env, tmp_path)
    assert "suggested_prompts" in out
    assert "loading_messages" in out


async def test_migrate_finds_the_packages_migrations_whatever_the_working_directory(
    tmp_path: Path,
) -> None:
    # Run from an unrelated folder holding a decoy alembic.ini and migrations/ (whose env.py
    # would fail): the installed package's own migrations are applied, never the folder's.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "migrations").mkdir(parents=True)
    (elsewhere / "migrations" / "env.py").write_text("raise SystemExit('decoy env.py ran')\n")
    (elsewhere / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    db = tmp_path / "bot.db"
    env = _env(tmp_path, DATABASE_URL=f"sqlite+aiosqlite:///{db}")
    del env["PYTHONPATH"]  # the package as installed, not the checkout on the path
    code, out, err = await _run(["migrate"], env, elsewhere)
    assert code == 0, err
    assert "database is at the latest migration" in out
    (version,) = sqlite3.connect(db).execute("select version_num from alembic_version").fetchone()
    assert version == head_revision()


async def test_config_enables_only_declared_mcp_servers(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    servers = [{"name": "orders", "url": "https://orders.example/mcp"}]
    env = {**_service_env(tmp_path, fake_slack, fake_model), "MCP_SERVERS": json.dumps(servers)}
    code, _, err = await _run(
        ["config", "set", "--channel", "C1", "--mcp-servers", "orders,billing"], env, tmp_path
    )
    assert code == 2
    assert "mcp_servers: unknown 'billing'; the valid values are: orders" in err
    assert "Nothing was saved" in err
    code, out, err = await _run(
        ["config", "set", "--channel", "C1", "--mcp-servers", "orders"], env, tmp_path
    )
    assert code == 0, err
    code, out, _ = await _run(["config", "show", "--channel", "C1"], env, tmp_path)
    assert code == 0
    assert "orders" in out
