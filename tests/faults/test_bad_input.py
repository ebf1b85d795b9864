"""Bad input at the HTTP edge (issue 5, item 5): malformed, oversized, forged and replayed
requests go through the real aiohttp server into Bolt; each gets a sensible status, nothing
reaches the model, and the service keeps answering.

Observed behaviour (slack_bolt 1.30, aiohttp 3.14):

* Signature problems (forged, missing, replayed 6 min old) → 401 ``invalid request``.
* Over 1 MiB → 413 from aiohttp, which stops reading at the limit.
* Well-signed JSON objects Bolt has no listener for (no ``event``, unknown event or envelope
  type, empty body) → 404 ``unhandled request``; app_mention/message events with missing or
  mistyped fields → 200 and ignored by ``bot.slack.events``.
* The signature is checked on the raw bytes before anything parses them (bot.server), so an
  unsigned body of any shape → 401. Signed bodies that cannot be parsed (invalid UTF-8,
  non-JSON with a JSON content type, deep nesting, JSON that is not an object, an ``event``
  that is not an object, ``payload=`` that is not JSON) → 400, with no traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from typing import Any

import pytest

from tests.e2e.harness import BotUnderTest, sign

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

_ids = itertools.count(1)


def envelope(event: Any = None, *, omit_event: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token": "legacy",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": f"EvBad{next(_ids):06d}",
        "event_time": int(time.time()),
    }
    if not omit_event:
        body["event"] = event
    body.update(extra)
    return body


def encoded(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def mention_event(**fields: Any) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "user": "U1",
        "text": "<@UBOT> hi",
        "ts": "1700000999.000100",
        "channel": "C1",
        "event_ts": "1700000999.000100",
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


async def post_signed(bot: BotUnderTest, body: bytes, headers: dict[str, str] = JSON) -> int:
    status, _ = await bot.post_raw(body, {**headers, **sign(body)})
    return status


async def assert_still_serving(bot: BotUnderTest, model_calls_before: int = 0) -> None:
    """Health is 200, the junk never reached the model, and a real mention is answered."""
    await asyncio.sleep(0.2)  # let any (wrongly) started turn reach the model first
    assert len(bot.model.requests) == model_calls_before, "junk reached the model"
    assert (await bot.get("/healthz"))[0] == 200
    ts, _ = await bot.mention("still there?")
    replies = await bot.wait_replies("C1", ts, 1)
    assert replies
    assert len(bot.model.requests) == model_calls_before + 1


def unhandled_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR records carrying a traceback: a crashed handler or listener."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info
    ]


# --------------------------------------------------------------------- well-signed junk

MISSING_FIELDS: dict[str, tuple[bytes, int]] = {
    # name: (body, status Bolt answers)
    "no event": (encoded(envelope(omit_event=True)), 404),
    "empty event": (encoded(envelope({})), 404),
    "event without type": (encoded(envelope({"user": "U1", "text": "<@UBOT> x"})), 404),
    "no user": (encoded(envelope(mention_event(user=_DROP))), 200),
    "no ts": (encoded(envelope(mention_event(ts=_DROP))), 200),
    "no channel": (encoded(envelope(mention_event(channel=_DROP))), 200),
    "user not a string": (encoded(envelope(mention_event(user=["U1"]))), 200),
    "ts not a string": (encoded(envelope(mention_event(ts=1700000999.0001))), 200),
    "channel not a string": (encoded(envelope(mention_event(channel={"id": "C1"}))), 200),
    "event type not a string": (encoded(envelope({"type": 5})), 404),
    "unknown event type": (encoded(envelope({"type": "pin_added", "user": "U1"})), 404),
    "reaction_added": (
        encoded(envelope({"type": "reaction_added", "user": "U1", "reaction": "+1"})),
        404,
    ),
    "unknown envelope type": (encoded({"type": "weird_envelope", "team_id": "T1"}), 404),
    "envelope without type": (encoded({"team_id": "T1"}), 404),
    "empty body": (b"", 404),
    "form without payload": (b"a=b&c", 404),
}


@pytest.mark.parametrize("name", list(MISSING_FIELDS))
async def test_signed_junk_gets_a_4xx_or_is_ignored(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    body, expected = MISSING_FIELDS[name]
    headers = FORM if name.startswith("form") else JSON
    assert await post_signed(bot, body, headers) == expected
    await assert_still_serving(bot)
    assert unhandled_errors(caplog) == []


NOT_AN_OBJECT_EVENT = {
    "event is a list": [1, 2],
    "event is a string": "hello",
    "event is null": None,
}


@pytest.mark.parametrize("name", list(NOT_AN_OBJECT_EVENT))
async def test_event_that_is_not_an_object_is_refused_cleanly(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    status = await post_signed(bot, encoded(envelope(NOT_AN_OBJECT_EVENT[name])))
    await assert_still_serving(bot)
    assert status == 400
    assert unhandled_errors(caplog) == []


@pytest.mark.parametrize(
    "event",
    [
        mention_event(text=5),
        mention_event(text={"a": 1}),
        {
            "type": "message",
            "channel_type": "im",
            "user": "U1",
            "text": ["hi"],
            "ts": "1700000999.000200",
            "channel": "D1",
        },
    ],
    ids=["mention-int", "mention-dict", "dm-list"],
)
async def test_text_that_is_not_a_string_never_reaches_the_model(
    bot: BotUnderTest, event: dict[str, Any]
) -> None:
    bot.slack.add_message(str(event["channel"]), user="U1", text="x", ts=str(event["ts"]))
    assert await post_signed(bot, encoded(envelope(event))) == 200
    await assert_still_serving(bot)


async def test_unhashable_subtype_is_ignored(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    event = mention_event(subtype={"x": 1})
    assert await post_signed(bot, encoded(envelope(event))) == 200
    await assert_still_serving(bot)
    assert unhandled_errors(caplog) == []


async def test_huge_text_inside_the_body_limit_is_answered(bot: BotUnderTest) -> None:
    """~1 MB of text (just under MAX_BODY_BYTES): accepted, sent to the model once,
    answered; the service stays healthy."""
    bot.model.script_reply("that was long")
    ts = bot.slack.add_message("C1", user="U1", text="<@UBOT> long")
    text = "<@UBOT> " + "x" * (1024 * 1024 - 2_000)
    body = encoded(envelope(mention_event(text=text, ts=ts, event_ts=ts)))
    assert 1024 * 1024 - 2_000 < len(body) < 1024 * 1024
    assert await post_signed(bot, body) == 200
    bot.sent.append({})  # one more event to wait for
    replies = await bot.wait_replies("C1", ts, 1, timeout=20)
    assert "that was long" in json.dumps(replies)
    [request] = bot.model_bodies()
    # The bot mention is stripped and the author named ("U1: …"): same length otherwise.
    assert len(request["input"][0]["content"]) == len(text) - len("<@UBOT> ") + len("U1: ")
    assert (await bot.get("/healthz"))[0] == 200
    bot.sent.pop()


# --------------------------------------------------------------------- unparseable bodies

UNPARSEABLE: dict[str, tuple[bytes, dict[str, str]]] = {
    "invalid UTF-8": (b'{"type":"event_callback","x":"\xff\xfe"}', JSON),
    "deeply nested JSON (10,000 levels)": (b"[" * 10_000 + b"]" * 10_000, JSON),
    "deeply nested JSON object (10,000 levels)": (
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        JSON,
    ),
    "non-JSON with JSON content type": (b"hello, not json", JSON),
    "truncated JSON": (b'{"type": "event_callback", "event": {', JSON),
    "JSON array": (b"[1, 2, 3]", JSON),
    "JSON string": (b'"hi"', JSON),
    "JSON null": (b"null", JSON),
    "authorizations not a list": (encoded(envelope(mention_event(), authorizations="x")), JSON),
    "event channel is an integer": (encoded(envelope(mention_event(channel=5))), JSON),
    "form payload=%%%": (b"payload=%%%", FORM),
    "form payload=notjson": (b"payload=notjson", FORM),
}


@pytest.mark.parametrize("name", list(UNPARSEABLE))
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
async def test_unparseable_bodies_are_refused_without_a_500(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture, name: str, signed: bool
) -> None:
    body, headers = UNPARSEABLE[name]
    status, _ = await bot.post_raw(body, {**headers, **(sign(body) if signed else {})})
    await assert_still_serving(bot)
    # Invalid UTF-8 cannot be verified at all (the signature is over UTF-8 text): 401 even when
    # the bytes were signed; everything else that is signed but unparseable is a 400.
    assert status == (400 if signed and name != "invalid UTF-8" else 401)
    assert unhandled_errors(caplog) == []


# --------------------------------------------------------------------- size and signatures


async def test_body_over_1_mib_gets_413(bot: BotUnderTest) -> None:
    body = b'{"type":"event_callback","x":"' + b"x" * (1024 * 1024 + 10) + b'"}'
    status, text = await bot.post_raw(body, {**JSON, **sign(body)})
    assert status == 413
    assert "1048576" in text
    await assert_still_serving(bot)


async def test_oversized_body_is_refused_before_it_is_all_sent(bot: BotUnderTest) -> None:
    """aiohttp stops reading at client_max_size: a client announcing 64 MiB gets its 413
    after sending ~1.1 MiB, without the server waiting for the rest."""
    announced = 64 * 1024 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.service.port)
    try:
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {announced}\r\n\r\n".encode()
        )
        chunk = b"x" * 65_536
        sent = 0
        while sent < 1024 * 1024 + 2 * len(chunk):
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
        with contextlib_suppress():
            await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert sent < announced
    await assert_still_serving(bot)


class contextlib_suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


def _valid_mention_body(bot: BotUnderTest) -> tuple[bytes, str]:
    ts = bot.slack.add_message("C1", user="U1", text="<@UBOT> hi")
    return encoded(envelope(mention_event(ts=ts, event_ts=ts))), ts


@pytest.mark.parametrize(
    "case",
    [
        "replayed 6 minutes old",
        "forged signature",
        "missing signature",
        "missing timestamp",
        "timestamp not a number",
        "signature of another body",
    ],
)
async def test_signature_problems_get_401_and_do_nothing(bot: BotUnderTest, case: str) -> None:
    body, ts = _valid_mention_body(bot)
    headers: dict[str, str]
    if case == "replayed 6 minutes old":
        headers = sign(body, timestamp=int(time.time()) - 6 * 60)
    elif case == "forged signature":
        headers = sign(body, secret="not-the-signing-secret")
    elif case == "missing signature":
        headers = {"X-Slack-Request-Timestamp": str(int(time.time()))}
    elif case == "missing timestamp":
        headers = {"X-Slack-Signature": sign(body)["X-Slack-Signature"]}
    elif case == "timestamp not a number":
        headers = {**sign(body), "X-Slack-Request-Timestamp": "soon"}
    else:
        headers = sign(body + b" ")
    status, text = await bot.post_raw(body, {**JSON, **headers})
    assert status == 401
    assert "invalid request" in text
    await assert_still_serving(bot)
    assert bot.slack.bot_replies("C1", ts) == []


async def test_empty_body_unsigned_gets_401(bot: BotUnderTest) -> None:
    status, _ = await bot.post_raw(b"", JSON)
    assert status == 401
    await assert_still_serving(bot)
