"""Security at the boundaries (issue 5, item 6): signatures on every path that does something,
each secret sent only to its own service, no redirect followed with the key, only http(s)
URLs, secrets never logged or posted, and a non-root container."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from aiohttp import web

from bot.errors import ConfigError
from bot.logs import JsonFormatter, RedactingFilter
from bot.settings import load_settings
from tests.e2e.harness import MODEL_KEY, SIGNING_SECRET, BotUnderTest, shown

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------- signatures


def _slash_command() -> bytes:
    return urllib.parse.urlencode(
        {
            "command": "/ai",
            "text": "config",
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": "U1",
            "trigger_id": "trig",
            "response_url": "http://127.0.0.1:1/hook",
        }
    ).encode()


def _interactivity(kind: str) -> bytes:
    if kind == "block_actions":
        payload = {
            "type": "block_actions",
            "team": {"id": "T1"},
            "user": {"id": "U1"},
            "trigger_id": "trig",
            "actions": [{"action_id": "edit_channel_settings", "value": "C1"}],
        }
    else:
        payload = {
            "type": "view_submission",
            "team": {"id": "T1"},
            "user": {"id": "U1"},
            "view": {
                "callback_id": "channel_settings",
                "private_metadata": json.dumps({"channel_id": "C1"}),
                "state": {"values": {}},
            },
        }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def _event() -> bytes:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": "EvUnsigned",
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": "<@UBOT> hi",
                "ts": "1700000500.000100",
                "channel": "C1",
            },
        }
    ).encode()


@pytest.mark.parametrize(
    ("kind", "body", "content_type"),
    [
        ("event", _event(), "application/json"),
        ("url_verification", b'{"type":"url_verification","challenge":"c"}', "application/json"),
        ("slash command", _slash_command(), "application/x-www-form-urlencoded"),
        ("block_actions", _interactivity("block_actions"), "application/x-www-form-urlencoded"),
        (
            "view_submission",
            _interactivity("view_submission"),
            "application/x-www-form-urlencoded",
        ),
    ],
)
async def test_every_slack_request_kind_is_401_when_unsigned(
    bot: BotUnderTest, kind: str, body: bytes, content_type: str
) -> None:
    calls_before = len(bot.slack.calls)
    status, text = await bot.post_raw(body, {"Content-Type": content_type})
    assert status == 401, (kind, text)
    # An unsigned slash command must not even be acknowledged with its answer.
    assert "Only admins" not in text
    assert "model" not in text.lower()
    assert bot.model.requests == []
    assert len(bot.slack.calls) == calls_before  # no views.open, no postMessage
    assert bot.slack.views == {}


async def test_operator_endpoints_do_nothing_on_post(bot: BotUnderTest) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        status, _ = await bot.post_raw(b"{}", {"Content-Type": "application/json"}, path=path)
        assert status == 405


# --------------------------------------------------------------------- where secrets go


async def test_each_secret_goes_only_to_its_own_service(bot: BotUnderTest) -> None:
    token = bot.slack.bot_token
    ts, _ = await bot.mention("hello")
    await bot.wait_replies("C1", ts, 1)
    await bot.reply("and again", thread_ts=ts)
    await bot.wait_replies("C1", ts, 2)

    assert bot.slack.calls
    for call in bot.slack.calls:
        assert call.token == token, call.method
        dumped = json.dumps([call.headers, call.params], default=str)
        assert MODEL_KEY not in dumped, call.method
        assert SIGNING_SECRET not in dumped, call.method
    assert len(bot.model.requests) == 2
    for request in bot.model.requests:
        assert request.headers["authorization"] == f"Bearer {MODEL_KEY}"
        dumped = json.dumps([request.headers, request.body], default=str)
        assert token not in dumped
        assert SIGNING_SECRET not in dumped
        assert "xoxb-" not in dumped


async def test_a_redirect_from_the_model_endpoint_is_not_followed(bot: BotUnderTest) -> None:
    received: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        return web.json_response({})

    elsewhere = web.Application()
    elsewhere.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(elsewhere, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        bot.model.script_error(
            307, "", headers={"Location": f"http://127.0.0.1:{port}/v1/responses"}
        )
        ts, _ = await bot.mention("follow me")
        [reply] = await bot.wait_replies("C1", ts, 1)
    finally:
        await runner.cleanup()
    assert received == []
    text = shown(reply)
    assert text.startswith(":warning:")
    assert "http" not in text
    assert str(port) not in text
    assert MODEL_KEY not in text
    assert len(bot.model.requests) == 1


# --------------------------------------------------------------------- settings


@pytest.mark.parametrize("variable", ["OPENAI_BASE_URL", "SLACK_API_URL"])
@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/api/", "gopher://x"])
def test_settings_refuse_non_http_urls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-1-abc",
        "SLACK_SIGNING_SECRET": "secret-123456",
        "OPENAI_API_KEY": "sk-abcdefghijkl",
        "DEFAULT_MODEL": "m",
        "BOT_MODE": "http",
        variable: url,
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings(env_file=None)


# --------------------------------------------------------------------- logs


async def test_secrets_never_reach_logs_or_slack_even_when_echoed(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = bot.slack.bot_token
    bot.model.script_error(
        401,
        {
            "error": {
                "message": f"Incorrect API key provided: {MODEL_KEY}. Also saw {token}.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "param": None,
            }
        },
    )
    ts, _ = await bot.mention("does this leak?")
    [reply] = await bot.wait_replies("C1", ts, 1)
    assert "credentials" in shown(reply)

    assert caplog.records, "nothing was logged at DEBUG"
    formatter = logging.Formatter("%(message)s")
    for record in caplog.records:
        rendered = [formatter.format(record), record.getMessage()]
        rendered += [str(v) for v in record.__dict__.values() if isinstance(v, str)]
        for text in rendered:
            assert MODEL_KEY not in text, record.name
            assert token not in text, record.name
    assert MODEL_KEY not in caplog.text
    assert token not in caplog.text
    for call in bot.slack.calls:
        dumped = json.dumps(call.params, default=str)
        assert MODEL_KEY not in dumped
        assert token not in dumped
    for message in bot.slack.channel_messages("C1"):
        dumped = json.dumps(message)
        assert MODEL_KEY not in dumped
        assert token not in dumped


def test_redacting_filter_scrubs_messages_args_extras_and_exceptions() -> None:
    known = "hunter2-known-secret"
    shapes = [
        "xoxb-123-456-abcDEF",
        "xoxp-1-2-3",
        "xapp-1-A1-2-abcdef",
        "sk-proj-abcdefgh12345",
        known,
    ]
    filt = RedactingFilter([known, "short"])  # "short" (<6 chars) is ignored, not an error
    try:
        raise RuntimeError(f"boom {shapes[0]} {known}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "msg %s and %s " + shapes[2], (shapes[1], known), exc_info
    )
    record.token = shapes[3]  # an extra=
    record.note = f"key={known}"
    assert filt.filter(record) is True
    output = record.getMessage() + (record.exc_text or "") + record.token + record.note
    formatted = JsonFormatter().format(record)
    for secret in shapes:
        assert secret not in output
        assert secret not in formatted
    assert "[redacted]" in record.getMessage()
    assert "RuntimeError" in (record.exc_text or "")
    assert record.token == "[redacted]"
    assert record.note == "key=[redacted]"
    assert "short" in filt.scrub("short text")  # a short word is not a secret
    assert filt.scrub("plain text stays") == "plain text stays"


# --------------------------------------------------------------------- container


def test_dockerfile_runs_as_a_non_root_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    cmd_index = max(i for i, line in enumerate(lines) if re.match(r"(CMD|ENTRYPOINT)\b", line))
    users = [line.split(None, 1)[1] for line in lines[:cmd_index] if line.startswith("USER ")]
    assert users, "no USER before CMD: the container runs as root"
    user = users[-1].split(":")[0].strip()
    assert user not in ("root", "0"), users[-1]
    assert not any(line.startswith("USER ") for line in lines[cmd_index:])


def test_signing_secret_is_checked_against_the_clock() -> None:
    # The replay window the service relies on (5 minutes) is slack_sdk's.
    from slack_sdk.signature import SignatureVerifier

    from tests.e2e.harness import sign

    verifier = SignatureVerifier(SIGNING_SECRET)
    body = b"{}"
    fresh = sign(body)
    old = sign(body, timestamp=int(time.time()) - 6 * 60)
    assert verifier.is_valid(body, fresh["X-Slack-Request-Timestamp"], fresh["X-Slack-Signature"])
    assert not verifier.is_valid(body, old["X-Slack-Request-Timestamp"], old["X-Slack-Signature"])
