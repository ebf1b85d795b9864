"""Multi-workspace install: the OAuth flow at /slack/install and /slack/oauth_redirect saves
each workspace's bot token (in the service's own database), every Slack call for a workspace
uses that workspace's token, workspaces are isolated, and uninstalling removes the tokens."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown, sign, slash_command, wait_until
from tests.fakes.slack_server import FakeSlack

STATE_COOKIE = "slack-app-oauth-state"
ADMIN = "UADMIN"


@pytest.fixture
async def multi(start_bot: StartBot, fake_slack: FakeSlack) -> BotUnderTest:
    fake_slack.add_user(ADMIN, name="admin", is_admin=True)
    return await start_bot(
        slack_bot_token=None,
        slack_client_id=fake_slack.client_id,
        slack_client_secret=fake_slack.client_secret,
        slack_state_secret="state-secret-0123456789",
    )


async def install(bot: BotUnderTest, team_id: str) -> BotUnderTest:
    """Open /slack/install, follow Slack's redirect back with a code; returns the service as
    seen from the new workspace."""
    async with bot.http.get(bot.base_url + "/slack/install", allow_redirects=False) as response:
        assert response.status in (200, 302), await response.text()
        page = await response.text()
        cookie = response.cookies[STATE_COOKIE].value
        location = response.headers.get("Location") or ""
    match = re.search(r'https://slack\.com/oauth/v2/authorize\?[^"\s]+', location or page)
    assert match is not None, page
    authorize = parse_qs(urlsplit(match.group(0).replace("&amp;", "&")).query)
    state = authorize["state"][0]
    assert state == cookie
    assert authorize["client_id"] == [bot.slack.client_id]
    assert "chat:write" in authorize["scope"][0].split(",")

    code = bot.slack.add_workspace(team_id)
    query = urlencode({"code": code, "state": state})
    async with bot.http.get(
        f"{bot.base_url}/slack/oauth_redirect?{query}",
        headers={"Cookie": f"{STATE_COOKIE}={cookie}"},
        allow_redirects=False,
    ) as response:
        body = await response.text()
        assert response.status == 200, body
    workspace = bot.slack.workspaces[team_id]
    return bot.in_team(team_id, bot_user=workspace.bot_user_id, bot_id=workspace.bot_id)


def stored_bots(tmp_path: Path) -> dict[str, str]:
    """team id → bot token, as slack_sdk's installation store keeps them (same SQLite file)."""
    with sqlite3.connect(tmp_path / "bot.db") as db:
        rows = db.execute("SELECT team_id, bot_token FROM slack_bots").fetchall()
    return {team: token for team, token in rows}


async def command(bot: BotUnderTest, text: str, *, channel: str = "C1") -> str:
    status, _, answer = await slash_command(bot, text, user=ADMIN, channel=channel)
    assert status == 200
    return answer


async def app_event(bot: BotUnderTest, event: dict[str, Any]) -> tuple[int, str]:
    """A signed event that is not a message (not counted as a turn)."""
    body = json.dumps(
        {
            "team_id": bot.team_id,
            "api_app_id": "A1",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{event['type']}{time.time_ns()}",
            "event_time": int(time.time()),
        }
    ).encode()
    return await bot.post_raw(body, {"Content-Type": "application/json", **sign(body)})


def tokens_used(slack: FakeSlack, thread_ts: str) -> set[str | None]:
    """Tokens of every Slack call the service made about a thread."""
    return {
        c.token
        for c in slack.calls
        if thread_ts in (c.params.get("thread_ts"), c.params.get("ts"), c.params.get("timestamp"))
    }


async def test_install_then_answer_each_workspace_with_its_own_token(
    multi: BotUnderTest, tmp_path: Path
) -> None:
    status, _ = await multi.get("/healthz")
    assert status == 200
    t2 = await install(multi, "T2")
    t3 = await install(multi, "T3")
    bots = stored_bots(tmp_path)
    token2, token3 = multi.slack.workspaces["T2"].bot_token, multi.slack.workspaces["T3"].bot_token
    assert bots == {"T2": token2, "T3": token3}
    # The OAuth exchange went to SLACK_API_URL (the fake), with the app's credentials.
    assert [c.ok for c in multi.slack.calls_to("oauth.v2.access")] == [True, True]

    # Settings are per workspace: the same channel id in T2 and T3 keeps its own model.
    assert "other-model" in await command(t2, "set model other-model")

    ts2, _ = await t2.mention("hello from T2")
    (reply2,) = await t2.wait_replies("C1", ts2, 1)
    ts3, _ = await t3.mention("hello from T3")
    (reply3,) = await t3.wait_replies("C1", ts3, 1)
    assert shown(reply2)
    assert shown(reply3)
    assert reply2["user"] == t2.bot_user_id
    assert reply3["user"] == t3.bot_user_id

    # Every Slack call about a thread used that workspace's bot token, and only it.
    assert tokens_used(multi.slack, ts2) == {token2}
    assert tokens_used(multi.slack, ts3) == {token3}
    posts = [c for c in multi.slack.calls if c.method.startswith("chat.")]
    assert posts
    assert all(
        c.headers["Authorization"] in (f"Bearer {token2}", f"Bearer {token3}") for c in posts
    )

    # The bot's own mention was stripped with the right workspace's bot user id.
    bodies = multi.model_bodies()
    assert [b["model"] for b in bodies] == ["other-model", "test-model"]
    assert "<@" not in json.dumps(bodies[0]["input"])
    assert "<@" not in json.dumps(bodies[1]["input"])

    # Threads, turns and usage are stored under the right workspace.
    assert len(await t2.turns("C1", ts2)) == 1
    assert len(await t3.turns("C1", ts3)) == 1
    assert await t3.turns("C1", ts2) == []
    assert await t2.turns("C1", ts3) == []
    since = datetime.now(UTC) - timedelta(hours=1)
    store = multi.service.store
    usage2 = await store.usage_since(since=since, by="model", team_id="T2")
    usage3 = await store.usage_since(since=since, by="model", team_id="T3")
    assert [r.key for r in usage2] == ["other-model"]
    assert [r.key for r in usage3] == ["test-model"]


async def test_uninstall_deletes_the_tokens_and_later_events_are_not_answered(
    multi: BotUnderTest, tmp_path: Path
) -> None:
    t2 = await install(multi, "T2")
    t3 = await install(multi, "T3")
    ts, _ = await t2.mention("first")
    await t2.wait_replies("C1", ts, 1)

    multi.slack.uninstall_workspace("T2")
    status, _ = await app_event(t2, {"type": "app_uninstalled", "event_ts": "1700000001.000000"})
    assert status == 200
    await wait_until(lambda: "T2" not in stored_bots(tmp_path), timeout=5)
    assert set(stored_bots(tmp_path)) == {"T3"}

    # A later T2 event is acknowledged and not answered; nothing breaks for T3.
    calls_before = len(multi.slack.calls_to("chat.postMessage"))
    full = f"<@{t2.bot_user_id}> anyone there?"
    late = multi.slack.add_message("C1", user="U1", text=full)
    status, _ = await app_event(
        t2,
        {"type": "app_mention", "user": "U1", "text": full, "ts": late, "channel": "C1"},
    )
    assert status in (200, 401)
    ts3, _ = await t3.mention("still here?")
    await t3.wait_replies("C1", ts3, 1)
    assert multi.slack.bot_replies("C1", late, bot_id=t2.bot_id) == []
    new_posts = multi.slack.calls_to("chat.postMessage")[calls_before:]
    assert all(c.token == multi.slack.workspaces["T3"].bot_token for c in new_posts)
    status, _ = await multi.get("/healthz")
    assert status == 200


async def test_a_forged_state_is_refused(multi: BotUnderTest, tmp_path: Path) -> None:
    code = multi.slack.add_workspace("T9")
    query = urlencode({"code": code, "state": "forged.0000"})
    async with multi.http.get(
        f"{multi.base_url}/slack/oauth_redirect?{query}",
        headers={"Cookie": f"{STATE_COOKIE}=forged.0000"},
        allow_redirects=False,
    ) as response:
        assert response.status >= 400
    assert multi.slack.calls_to("oauth.v2.access") == []
    assert stored_bots(tmp_path) == {}


async def test_events_are_still_signature_checked_in_oauth_mode(multi: BotUnderTest) -> None:
    body = json.dumps({"type": "event_callback", "team_id": "T2", "event": {}}).encode()
    status, _ = await multi.post_raw(body, {"Content-Type": "application/json"})
    assert status == 401


def test_bot_token_is_optional_only_with_client_id_and_secret(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    from pydantic import ValidationError

    from bot.settings import Settings

    base: dict[str, Any] = {
        "slack_signing_secret": "s",
        "openai_api_key": "k",
        "default_model": "m",
        "bot_mode": "http",
    }
    with pytest.raises(ValidationError, match="SLACK_BOT_TOKEN is required"):
        Settings(_env_file=None, **base)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="must be set together"):
        Settings(_env_file=None, slack_client_id="1.2", **base)  # type: ignore[call-arg]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_client_id="1.2",
        slack_client_secret="secret",
        **base,
    )
    assert settings.oauth_enabled
    assert settings.slack_bot_token is None
    assert "secret" in settings.secrets()


def test_the_install_asks_for_exactly_the_manifest_bot_scopes() -> None:
    from bot.doctor import manifest_bot_scopes
    from bot.slack.oauth import BOT_SCOPES

    assert sorted(BOT_SCOPES) == sorted(manifest_bot_scopes())
