"""Socket Mode: the same conversation over Slack's WebSocket instead of HTTP."""

from __future__ import annotations

import time

from tests.conftest import StartBot
from tests.fakes.slack_server import FakeSlack


async def test_a_mention_over_socket_mode_is_acked_and_answered(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    bot = await start_bot(
        bot_mode="socket", slack_app_token=fake_slack.app_token, slack_signing_secret=None
    )
    await bot.slack.wait_connected(timeout=10)
    text = f"<@{bot.slack.bot_user_id}> over the socket"
    ts = bot.slack.add_message("C1", user="U1", text=text)
    envelope_id = await bot.slack.send_envelope(
        "events_api",
        {
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": "EvSock1",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": text,
                "ts": ts,
                "channel": "C1",
                "event_ts": ts,
            },
        },
    )
    await bot.slack.wait_ack(envelope_id, timeout=10)
    [reply] = await bot.wait_replies("C1", ts, 1)
    assert reply["thread_ts"] == ts
    assert bot.model_bodies()[0]["input"] == [{"role": "user", "content": "U1: over the socket"}]
    # The operator endpoints are still served in Socket Mode.
    assert (await bot.get("/healthz"))[0] == 200
    # And there is no Request URL to attack.
    assert (await bot.post_raw(b"{}", {"Content-Type": "application/json"}))[0] == 404
