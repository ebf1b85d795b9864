"""Private stays private, secrets go nowhere else, and outsiders cannot grow the database
(issue 11, cases 7, 8 and 10, and the file-size notice of case 11).

Through the real boundaries: signed events and interactivity in, the fake Slack (its Web API,
its file host on the API's origin, ``users.conversations`` with channel members) and the fake
model endpoint out, ``python -m bot`` as a real process, ``/metrics`` and the OAuth pages over
HTTP, and the SQLite file itself.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bot.slack.oauth
from storage.engine import create_engine, create_session_factory
from storage.repositories import Store
from tests.conftest import StartBot
from tests.e2e.harness import MODEL_KEY, BotUnderTest, run_cli, shown, sign
from tests.e2e.test_context import FileHost, other_host  # noqa: F401 (a fixture)
from tests.e2e.test_doctor import _doctor
from tests.e2e.test_oauth import STATE_COOKIE, install
from tests.e2e.test_slash_command import ADMIN, MEMBER, interact
from tests.fakes.responses_server import FakeResponsesServer
from tests.fakes.slack_server import SIGN_IN_PAGE, FakeSlack
from tests.faults.test_settings_faults import cli_env, command

OTHER_ADMIN = "UADMIN2"
SECRET = "Merger plan: acquire Initech before Q3"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def people(bot: BotUnderTest) -> BotUnderTest:
    bot.slack.add_user(ADMIN, name="ada", is_admin=True)
    bot.slack.add_user(OTHER_ADMIN, name="otto", is_admin=True)
    bot.slack.add_user(MEMBER, name="max")
    bot.slack.add_user("U1", name="ana")
    return bot


async def home_of(bot: BotUnderTest, user: str) -> dict[str, Any]:
    """Open the Home tab as ``user``; the view published for them."""
    before = len(bot.slack.calls_to("views.publish"))
    await bot.send_event({"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home"})
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.publish")) > before, timeout=5)
    call = bot.slack.calls_to("views.publish")[-1]
    assert call.params["user_id"] == user
    assert call.ok, call.response
    view: dict[str, Any] = call.params["view"]
    return view


# ------------------------------------------------------------------ 7. private stays private


async def test_the_home_tab_shows_a_private_channels_settings_only_to_its_members(
    people: BotUnderTest,
) -> None:
    bot = people
    bot.slack.add_channel("G1", members=[ADMIN], private=True)
    bot.slack.add_channel("C5", members=[ADMIN, OTHER_ADMIN, MEMBER])
    assert "is now" in await command(bot, f"set instructions {SECRET}", channel="G1")
    assert "is now" in await command(bot, "set model public-model", channel="C5")

    member = json.dumps(await home_of(bot, MEMBER))
    other_admin = await home_of(bot, OTHER_ADMIN)  # a workspace admin, not in G1
    admin = json.dumps(await home_of(bot, ADMIN))

    assert "Initech" not in member
    assert "<#G1>" not in member
    assert "public-model" in member
    assert "1 more channel has settings of its own" in member
    assert "Initech" not in json.dumps(other_admin)
    buttons = [b["accessory"]["value"] for b in other_admin["blocks"] if "accessory" in b]
    assert buttons == ["C5"]
    assert "Initech" in admin  # a member sees it

    # An Edit press for G1 (a payload the admin outside it made up) opens nothing.
    press = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": OTHER_ADMIN},
        "api_app_id": "A1",
        "trigger_id": "tr-1",
        "actions": [{"action_id": "edit_channel_settings", "value": "G1", "type": "button"}],
    }
    assert (await interact(bot, press))[0] == 200
    press["actions"][0]["value"] = "C5"
    assert (await interact(bot, press))[0] == 200
    await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"), timeout=5)
    [opened] = bot.slack.calls_to("views.open")
    assert json.loads(opened.params["view"]["private_metadata"])["channel_id"] == "C5"


async def test_membership_lookups_are_cached_and_bounded(people: BotUnderTest) -> None:
    bot = people
    for number in range(1_500):  # more channels than five pages of 200
        bot.slack.add_channel(f"C{number:05d}", members=[MEMBER])
    bot.slack.add_channel("CZZZZ", members=[MEMBER])  # sorts last: past the pages read
    await command(bot, "set model far-away", channel="CZZZZ")
    for _ in range(3):
        view = json.dumps(await home_of(bot, MEMBER))
        assert "far-away" not in view  # not seen within the bound: hidden, never leaked
    calls = bot.slack.calls_to("users.conversations")
    assert len(calls) == 5  # one bounded lookup (5 pages), then the cache
    assert {c.params["user"] for c in calls} == {MEMBER}


async def test_concurrent_home_opens_share_one_membership_lookup(people: BotUnderTest) -> None:
    bot = people
    bot.slack.add_channel("C5", members=[MEMBER])
    await command(bot, "set model shared-lookup", channel="C5")
    bot.slack.slow_next("users.conversations", 0.5)  # still in flight when the second comes
    for _ in range(2):
        await bot.send_event(
            {"type": "app_home_opened", "user": MEMBER, "channel": "D1", "tab": "home"}
        )
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.publish")) == 2, timeout=5)
    assert len(bot.slack.calls_to("users.conversations")) == 1
    for call in bot.slack.calls_to("views.publish"):
        assert "shared-lookup" in json.dumps(call.params["view"])


async def test_without_the_scopes_to_check_membership_no_channel_is_shown(
    people: BotUnderTest,
) -> None:
    bot = people
    bot.slack.add_channel("G1", members=[ADMIN, MEMBER], private=True)
    assert bot.slack.granted_scopes is not None
    bot.slack.granted_scopes.remove("groups:read")  # an install from before the scope
    await command(bot, f"set instructions {SECRET}", channel="G1")
    view = json.dumps(await home_of(bot, MEMBER))
    assert "Initech" not in view
    assert "groups:read" in view  # the note says what is missing
    assert bot.slack.calls_to("users.conversations")[-1].error == "missing_scope"


# ------------------------------------------------- 8. the bot token goes nowhere else


def share(
    bot: BotUnderTest, files: list[dict[str, Any]], text: str = "look"
) -> tuple[str, dict[str, Any]]:
    full = f"<@{bot.slack.bot_user_id}> {text}"
    ts = bot.slack.add_message("C1", user="U1", text=full, files=files)
    event = {
        "type": "app_mention",
        "user": "U1",
        "text": full,
        "ts": ts,
        "channel": "C1",
        "event_ts": ts,
        "files": files,
    }
    return ts, event


async def test_files_off_slacks_origin_are_never_fetched_with_the_token(
    people: BotUnderTest,
    other_host: FileHost,  # noqa: F811
) -> None:
    bot = people
    port = bot.slack.port
    same_host_other_port = FileHost("127.0.0.1")
    await same_host_other_port.start()
    try:
        elsewhere = same_host_other_port.attach("a.png", PNG, "image/png", "png")
        wrong_scheme = {**elsewhere, "name": "b.png", "url_private": f"https://127.0.0.1:{port}/x"}
        with_user = {
            **elsewhere,
            "name": "c.png",
            "url_private": f"http://user:pw@127.0.0.1:{port}/files-pri/T1-F1/c.png",
        }
        far = other_host.attach("d.png", PNG, "image/png", "png")
        fine = bot.slack.add_file("e.png", PNG, "image/png", "png")
        ts, event = share(bot, [elsewhere, wrong_scheme, with_user, far, fine])
        bot.model.script_reply("Seen.")
        await bot.send_event(event)
        [reply] = await bot.wait_replies("C1", ts, 1)
    finally:
        assert same_host_other_port.runner is not None
        await same_host_other_port.runner.cleanup()

    assert same_host_other_port.requests == []  # the API's host, but not its port
    assert other_host.requests == []
    text = shown(reply)
    for name in ("a.png", "b.png", "c.png", "d.png"):
        assert f"_I couldn't read {name}: it is not stored on Slack._" in text
    parts = bot.model_bodies()[0]["input"][0]["content"]
    assert [p["type"] for p in parts] == ["input_text", "input_image"]  # e.png only
    assert [r["path"].rsplit("/", 1)[-1] for r in bot.slack.file_requests] == ["e.png"]


@pytest.mark.parametrize(
    ("name", "mimetype", "filetype"),
    [
        ("photo.png", "image/png", "png"),
        ("report.pdf", "application/pdf", "pdf"),
        ("notes.txt", "text/plain", "text"),
    ],
)
async def test_a_sign_in_page_is_never_sent_to_the_model_as_a_file(
    people: BotUnderTest, name: str, mimetype: str, filetype: str
) -> None:
    bot = people
    # What Slack's file host answers when it will not serve the file: its sign-in page, 200.
    page = bot.slack.add_file(
        name, SIGN_IN_PAGE.encode(), mimetype, filetype, served_as="text/html"
    )
    ts, event = share(bot, [page])
    bot.model.script_reply("Nothing to see.")
    await bot.send_event(event)
    [reply] = await bot.wait_replies("C1", ts, 1)

    assert f"_I couldn't read {name}: Slack sent a web page instead of the file" in shown(reply)
    body = json.dumps(bot.model_bodies()[0])
    assert "Sign in to Slack" not in body
    assert base64.b64encode(SIGN_IN_PAGE.encode()).decode()[:40] not in body
    content = bot.model_bodies()[0]["input"][0]["content"]
    assert isinstance(content, str) or [p["type"] for p in content] == ["input_text"]


async def test_an_image_whose_bytes_are_not_its_type_is_not_sent(people: BotUnderTest) -> None:
    bot = people
    fake = bot.slack.add_file("cat.jpg", PNG, "image/jpeg", "jpg")
    ts, event = share(bot, [fake])
    await bot.send_event(event)
    [reply] = await bot.wait_replies("C1", ts, 1)
    assert "_I couldn't read cat.jpg: it is not a valid image/jpeg image._" in shown(reply)


async def test_the_oversized_file_notice_names_a_real_limit(start_bot: StartBot) -> None:
    bot = await start_bot(file_max_bytes=500_000)
    big = bot.slack.add_file("scan.png", PNG + b"\0" * 600_000, "image/png", "png")
    ts, event = share(bot, [big])
    await bot.send_event(event)
    [reply] = await bot.wait_replies("C1", ts, 1)
    assert "_I couldn't read scan.png: it is larger than 488 KB._" in shown(reply)


async def test_upstream_error_codes_never_become_metric_labels(bot: BotUnderTest) -> None:
    leaked = "sk-live-LEAKED0123456789abcdef"
    bot.model.error(400, {"error": {"code": leaked, "message": "no", "type": "bad"}})
    bot.slack.fail_next("assistant.threads.setStatus", "xoxb-9-LEAKED-slack-token-0123")
    ts, _ = await bot.mention("hello")
    await bot.wait_replies("C1", ts, 1)
    bot.model.error(400, {"error": {"code": "brand_new_code_42", "message": "no"}})
    second, _ = await bot.mention("again")
    await bot.wait_replies("C1", second, 1)

    status, metrics = await bot.get("/metrics")
    assert status == 200
    assert "LEAKED" not in metrics
    assert "brand_new_code_42" not in metrics
    model_errors = [
        line for line in metrics.splitlines() if line.startswith("slackbot_model_errors_total{")
    ]
    assert model_errors == ['slackbot_model_errors_total{code="other",model="test-model"} 2.0']
    assert (
        'slackbot_slack_api_errors_total{error="other",method="assistant.threads.setStatus"} 1.0'
        in metrics
    )


async def test_doctor_output_redacts_upstream_codes_and_drops_control_sequences(
    tmp_path: Path, fake_slack: FakeSlack, fake_model: FakeResponsesServer
) -> None:
    fake_model.models = ["test-model"]
    fake_model.error(
        400,
        {"error": {"code": f"{MODEL_KEY}\x1b]0;owned\x07\x1b[2J", "message": "refused"}},
    )
    fake_slack.fail_next("auth.test", f"token_revoked {fake_slack.bot_token}\x1b[31m")
    code, out = await _doctor(tmp_path, fake_slack, fake_model)  # asserts no key, no token

    assert code == 1
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "[redacted]" in out
    assert "FAIL slack token: Slack refused the bot token (token_revoked [redacted])" in out


async def test_cli_output_strips_terminal_control_sequences_from_stored_text(
    tmp_path: Path,
) -> None:
    env = cli_env(tmp_path)
    code, _, err = await run_cli(["migrate"], env, tmp_path)
    assert code == 0, err
    # Written by another tool (or an older version) straight into the database.
    engine = create_engine(env["DATABASE_URL"])
    try:
        store = Store(create_session_factory(engine))
        await store.update_channel_settings(
            team_id="T1",
            channel_id="C1",
            values={
                "instructions": "Be kind.\x1b]0;pwned\x07\x1b[2J\x9b31mAlways.",
                "model": "gpt\x1b[31m-red",
            },
            updated_by="U1\x1b[8m",
        )
    finally:
        await engine.dispose()
    outputs = []
    for args in (["config", "show"], ["config", "history"]):
        code, out, err = await run_cli([*args, "--channel", "C1", "--team", "T1"], env, tmp_path)
        assert code == 0, err
        outputs.append(out)
    printed = "".join(outputs)
    for control in ("\x1b", "\x07", "\x9b"):
        assert control not in printed
    assert "Be kind.Always." in printed
    assert "gpt-red" in printed


# -------------------------------------------------- 10. outsiders cannot grow the database


def count_rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        tables = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        ]
        return {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


async def start_multi(start_bot: StartBot, fake_slack: FakeSlack) -> BotUnderTest:
    fake_slack.add_user(ADMIN, name="admin", is_admin=True)
    return await start_bot(
        slack_bot_token=None,
        slack_client_id=fake_slack.client_id,
        slack_client_secret=fake_slack.client_secret,
        slack_state_secret="state-secret-0123456789",
    )


async def test_oauth_states_are_bounded_and_expired_ones_pruned(
    start_bot: StartBot,
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.slack.oauth, "MAX_PENDING_STATES", 20, raising=False)
    multi = await start_multi(start_bot, fake_slack)
    database = tmp_path / "bot.db"
    for _ in range(60):  # anyone can open the install page, as often as they like
        async with multi.http.get(
            multi.base_url + "/slack/install", allow_redirects=False
        ) as response:
            assert response.status in (200, 302)
            assert response.cookies[STATE_COOKIE].value
    assert count_rows(database)["slack_oauth_states"] <= 20

    long_ago = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None)
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM slack_oauth_states")
        db.executemany(
            "INSERT INTO slack_oauth_states (state, expire_at) VALUES (?, ?)",
            [(f"old-{n}", long_ago.isoformat(sep=" ")) for n in range(15)],
        )
    async with multi.http.get(multi.base_url + "/slack/install", allow_redirects=False) as r:
        assert r.status in (200, 302)
    with sqlite3.connect(database) as db:
        left = [s for (s,) in db.execute("SELECT state FROM slack_oauth_states")]
    assert [s for s in left if s.startswith("old-")] == []  # expired: pruned
    assert len(left) == 1

    # After the flood a real install still works.
    installed = await install(multi, "T2")
    assert installed.team_id == "T2"
    assert count_rows(database)["slack_oauth_states"] <= 20


async def test_unauthenticated_requests_write_no_rows(
    start_bot: StartBot, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    multi = await start_multi(start_bot, fake_slack)
    before = count_rows(tmp_path / "bot.db")
    body = json.dumps({"type": "event_callback", "event": {"type": "app_mention"}}).encode()
    for n in range(20):
        headers = {"Content-Type": "application/json", **sign(body, secret=f"wrong-{n}")}
        assert (await multi.post_raw(body, headers))[0] == 401
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await multi.get(path))[0] == 200
        query = f"code=c{n}&state=forged-{n}"
        async with multi.http.get(f"{multi.base_url}/slack/oauth_redirect?{query}") as r:
            assert r.status >= 400
    assert count_rows(tmp_path / "bot.db") == before
