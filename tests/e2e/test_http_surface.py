"""The HTTP edge: signature checks, health, readiness and metrics."""

from __future__ import annotations

import json
import time

from tests.e2e.harness import BotUnderTest, sign


def _event_body(bot: BotUnderTest, ts: str) -> bytes:
    return json.dumps(
        {
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": "EvForged",
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": f"<@{bot.slack.bot_user_id}> hi",
                "ts": ts,
                "channel": "C1",
                "event_ts": ts,
            },
        }
    ).encode()


async def test_forged_and_stale_requests_get_401_and_do_nothing(bot: BotUnderTest) -> None:
    ts = bot.slack.add_message("C1", user="U1", text="hi")
    body = _event_body(bot, ts)

    forged = sign(body, secret="not-the-secret")
    stale = sign(body, timestamp=int(time.time()) - 10 * 60)
    tampered = sign(body)
    unsigned: dict[str, str] = {}
    for headers, payload in (
        (forged, body),
        (stale, body),
        (tampered, body + b" "),
        (unsigned, body),
    ):
        status, _ = await bot.post_raw(payload, {"Content-Type": "application/json", **headers})
        assert status == 401

    sentinel, _ = await bot.mention("sentinel")
    await bot.wait_replies("C1", sentinel, 1)
    assert len(bot.model_bodies()) == 1
    assert bot.slack.bot_replies("C1", ts) == []


async def test_url_verification_challenge_is_answered(bot: BotUnderTest) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"}).encode()
    status, text = await bot.post_raw(body, {"Content-Type": "application/json", **sign(body)})
    assert status == 200
    assert "abc123" in text


async def test_health_readiness_and_metrics(bot: BotUnderTest) -> None:
    assert (await bot.get("/healthz"))[0] == 200
    status, text = await bot.get("/readyz")
    assert status == 200, text
    ts, _ = await bot.mention("count me")
    await bot.wait_replies("C1", ts, 1)
    await bot.wait_idle()
    status, text = await bot.get("/metrics")
    assert status == 200
    assert 'slackbot_events_received_total{type="app_mention"} 1.0' in text
    assert 'slackbot_turns_total{outcome="completed"} 1.0' in text


async def test_readyz_is_503_when_the_database_is_gone(bot: BotUnderTest) -> None:
    # Dropping the migration table makes the schema look unmigrated.
    from sqlalchemy import text

    async with bot.service.store.session_factory() as session:
        await session.execute(text("DROP TABLE alembic_version"))
        await session.commit()
    status, text_body = await bot.get("/readyz")
    assert status == 503
    assert "migrations" in text_body
