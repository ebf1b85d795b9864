"""``python -m bot doctor`` as a real process, against the fake Slack and the fake model
endpoint: every check says ok when all is well, and each broken part gets its own FAIL line
with a fix and exit code 1."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from bot.doctor import manifest_bot_scopes
from tests.e2e.harness import MODEL_KEY, SIGNING_SECRET
from tests.e2e.harness import run_cli as _run
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import DEFAULT_BOT_SCOPES, FakeSlack

REPO = Path(__file__).resolve().parents[2]


def _env(
    tmp_path: Path, slack: FakeSlack, model: FakeResponsesServer, **values: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "DEFAULT_", "DATABASE_", "BOT_", "LOG_"))
    }
    env.update(
        PYTHONPATH=str(REPO),
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY=MODEL_KEY,
        DEFAULT_MODEL="test-model",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
    )
    env.update(values)
    return env


async def _doctor(
    tmp_path: Path, slack: FakeSlack, model: FakeResponsesServer, **values: str
) -> tuple[int, str]:
    env = _env(tmp_path, slack, model, **values)
    code, _, err = await _run(["migrate"], env, tmp_path)
    assert code == 0, err
    code, out, err = await _run(["doctor"], env, tmp_path)
    assert MODEL_KEY not in out + err
    assert slack.bot_token not in out + err
    return code, out


def _line(out: str, check: str) -> str:
    """The report line of ``check`` plus its fix line, if any."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line[5:].startswith(check + ":"):
            fix = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("     ") else ""
            return line + "\n" + fix
    raise AssertionError(f"no line for {check!r} in:\n{out}")


@pytest.fixture
def good_model(fake_model: FakeResponsesServer) -> FakeResponsesServer:
    fake_model.models = ["test-model", "other-model"]
    return fake_model


def test_the_fake_grants_exactly_the_manifest_scopes() -> None:
    assert sorted(manifest_bot_scopes()) == sorted(DEFAULT_BOT_SCOPES)


async def test_all_good_every_line_ok_and_exit_0(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    code, out = await _doctor(tmp_path, fake_slack, good_model)
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines, out
    assert all(line.startswith("ok   ") for line in lines), out
    for check in (
        "configuration",
        "database",
        "slack token",
        "slack scopes",
        "slack assistant pane",
        "model endpoint",
        "default model",
        "model test-model",
    ):
        assert _line(out, check).startswith("ok")
    assert _line(out, "model test-model").startswith(
        "ok   model test-model: chains kept (it refuses an unknown previous_response_id); "
        "tools accepted; streaming works"
    )
    assert fake_slack.calls_to("auth.test")
    # The one-token test call: non-streamed, unstored, DEFAULT_MODEL, 16 tokens at most; then
    # the model's checks (chains, tools, streaming), each as small.
    bodies = [r.body for r in good_model.requests if r.path.endswith("/responses")]
    assert len(bodies) == 4
    body = bodies[0]
    assert all(b["max_output_tokens"] == 16 and b["store"] is False for b in bodies)
    assert body["model"] == "test-model"
    assert body["max_output_tokens"] == 16
    assert body["stream"] is False
    assert body["store"] is False


async def test_a_wrong_bot_token_gets_invalid_auth_and_its_fix(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    code, out = await _doctor(
        tmp_path, fake_slack, good_model, SLACK_BOT_TOKEN="xoxb-9-not-the-right-token"
    )
    assert code == 1
    line = _line(out, "slack token")
    assert line.startswith("FAIL slack token: Slack refused the bot token (invalid_auth)")
    assert "fix:" in line
    assert "Bot User OAuth Token" in line
    assert "slack scopes:" not in out  # nothing to check scopes of
    # The other checks still ran.
    assert _line(out, "default model").startswith("ok")
    assert "xoxb-9-not-the-right-token" not in out


async def test_missing_scopes_are_named(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    fake_slack.granted_scopes = [
        s for s in DEFAULT_BOT_SCOPES if s not in ("assistant:write", "reactions:write")
    ]
    code, out = await _doctor(tmp_path, fake_slack, good_model)
    assert code == 1
    line = _line(out, "slack scopes")
    assert line.startswith("FAIL slack scopes:")
    assert "reactions:write, assistant:write" in line
    assert "chat:write" not in line
    assert "reinstall" in line
    assert _line(out, "slack token").startswith("ok")
    # The assistant pane's own check names what the pane misses, and only that.
    pane = _line(out, "slack assistant pane")
    assert pane.startswith("FAIL slack assistant pane: the bot token lacks the assistant pane's")
    assert "assistant:write" in pane
    assert "reactions:write" not in pane


async def test_no_scope_header_is_a_warning_not_a_failure(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    fake_slack.granted_scopes = None
    code, out = await _doctor(tmp_path, fake_slack, good_model)
    assert code == 0, out
    assert _line(out, "slack scopes").startswith("warn")


async def test_the_model_endpoint_refuses_the_key(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    code, out = await _doctor(
        tmp_path, fake_slack, good_model, OPENAI_API_KEY="sk-wrong-key-0123456789"
    )
    assert code == 1
    line = _line(out, "model endpoint")
    assert line.startswith("FAIL model endpoint: the model endpoint refused OPENAI_API_KEY")
    assert "fix: check OPENAI_API_KEY" in line
    assert "default model:" not in out  # the same refusal would only repeat
    assert "sk-wrong-key-0123456789" not in out
    assert _line(out, "slack token").startswith("ok")


async def test_the_model_endpoint_is_unreachable(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = await _doctor(
        tmp_path, fake_slack, good_model, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1"
    )
    assert code == 1
    line = _line(out, "model endpoint")
    assert line.startswith(
        f"FAIL model endpoint: could not reach the model endpoint at http://127.0.0.1:{port}/v1"
    )
    assert "fix: check OPENAI_BASE_URL" in line


async def test_an_unknown_default_model(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    good_model.error(
        404,
        {
            "error": {
                "message": "The model `no-such-model` does not exist or you do not have access.",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
        },
    )
    code, out = await _doctor(tmp_path, fake_slack, good_model, DEFAULT_MODEL="no-such-model")
    assert code == 1
    assert _line(out, "model endpoint").startswith("ok")
    line = _line(out, "default model")
    assert line.startswith(
        "FAIL default model: the endpoint does not know DEFAULT_MODEL=no-such-model"
    )
    assert "fix: set DEFAULT_MODEL to a model the endpoint offers: it offers test-model" in line


async def test_each_model_is_reported_and_a_relay_that_ignores_chains_is_a_warning(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    from bot.conversation import endpoint_key
    from storage import Store, create_engine, create_session_factory
    from storage.conversation_state import ConversationStateStore

    good_model.chain_mode = "ignore_all"
    code, out = await _doctor(
        tmp_path, fake_slack, good_model, ALLOWED_MODELS="test-model,other-model"
    )
    assert code == 0, out  # transcript mode copes: a warning, not a failure
    for model in ("test-model", "other-model"):
        line = _line(out, f"model {model}")
        assert line.startswith(
            f"warn model {model}: chains ignored (it answered a made-up previous_response_id); "
            "tools accepted; streaming works: the service sends each thread's earlier messages "
            "itself for this model (transcript mode)"
        ), line
    # Stored with its time, for the service's CONVERSATION_STATE=auto.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        state = ConversationStateStore(Store(create_session_factory(engine)))
        records = await state.capabilities()
    finally:
        await engine.dispose()
    assert {
        (r.endpoint, r.model, r.chains, r.chains_source, r.tools, r.streaming) for r in records
    } == {
        (endpoint_key(good_model.base_url), m, "ignored", "doctor", True, True)
        for m in ("test-model", "other-model")
    }


async def test_a_model_that_cannot_stream_fails(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    good_model.reply()  # the one-token call
    good_model.reply()  # the tools check (the chain check is refused without a script)
    good_model.drop_after(1, text="cut here")  # the streamed check breaks off
    code, out = await _doctor(tmp_path, fake_slack, good_model)
    assert code == 1
    line = _line(out, "model test-model")
    assert line.startswith("FAIL model test-model: chains kept"), line
    assert "streaming does not work" in line
    assert 'fix: every answer is streamed: check that the endpoint supports "stream": true' in line


async def test_unapplied_migrations_and_a_missing_setting(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    env = _env(tmp_path, fake_slack, good_model)
    code, out, _ = await _run(["doctor"], env, tmp_path)  # no migrate first
    assert code == 1
    line = _line(out, "database")
    assert line.startswith("FAIL database: the database's migrations are not current")
    assert "python -m bot migrate" in line

    del env["OPENAI_API_KEY"]
    code, out, _ = await _run(["doctor"], env, tmp_path)
    assert code == 1
    assert out.startswith("FAIL configuration: OPENAI_API_KEY is required")
    assert "fix:" in out


async def test_each_mcp_server_and_enabled_hosted_tool_is_checked(
    tmp_path: Path, fake_slack: FakeSlack, good_model: FakeResponsesServer
) -> None:
    async with FakeMcpServer(required_headers={"X-Api-Key": "mcp-secret-1"}) as mcp:
        servers = [
            {"name": "orders", "url": mcp.url, "headers_from_env": {"X-Api-Key": "ORDERS_KEY"}},
            {"name": "gone", "url": "http://127.0.0.1:9/mcp", "timeout": 2},
        ]
        env = _env(
            tmp_path,
            fake_slack,
            good_model,
            MCP_SERVERS=json.dumps(servers),
            ORDERS_KEY="mcp-secret-1",
        )
        code, _, err = await _run(
            ["config", "set", "--channel", "C1", "--hosted-tools", "web_search,code_interpreter"],
            env,
            tmp_path,
        )
        assert code == 0, err
        # default model, tools, streaming, then web_search (the chain check uses no script).
        for _ in range(4):
            good_model.reply("OK")
        good_model.error(
            400,
            {
                "error": {
                    "message": "Tool 'code_interpreter' is not supported with test-model.",
                    "type": "invalid_request_error",
                    "param": "tools",
                    "code": None,
                }
            },
        )
        code, out, err = await _run(["doctor"], env, tmp_path)
    assert code == 1, out
    assert "mcp-secret-1" not in out + err
    assert _line(out, "mcp server orders").startswith("ok   mcp server orders: 6 tools: ")
    assert _line(out, "mcp server gone").startswith("FAIL mcp server gone: could not list")
    assert _line(out, "hosted tool web_search").startswith(
        "ok   hosted tool web_search: the endpoint accepts web_search"
    )
    refused = _line(out, "hosted tool code_interpreter")
    assert refused.startswith("FAIL hosted tool code_interpreter: the endpoint refuses")
    assert "hosted_tools" in refused
    bodies = [r.body for r in good_model.requests if r.path.endswith("/responses")]
    assert bodies[-2]["tools"] == [{"type": "web_search"}]
    assert bodies[-1]["tools"] == [{"type": "code_interpreter", "container": {"type": "auto"}}]
