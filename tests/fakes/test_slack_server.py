"""The fake Slack speaks Slack's wire format: proven with the real slack_sdk clients and Bolt."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.messages.chunk import MarkdownTextChunk, TaskUpdateChunk
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import FakeSlack

CHANNEL = "C1"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)


async def slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# --- auth ------------------------------------------------------------------------------------


async def test_auth_test_names_the_bot(slack: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.auth_test()

    assert response["ok"] is True
    assert response["user_id"] == "UBOT"
    assert response["bot_id"] == "BBOT"
    assert response["team_id"] == "T1"
    assert slack.api_url.endswith("/api/")
    call = slack.calls_to("auth.test")[0]
    assert call.token == slack.bot_token
    assert call.headers["Authorization"] == f"Bearer {slack.bot_token}"


async def test_every_method_checks_the_token(slack: FakeSlack) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    missing = AsyncWebClient(base_url=slack.api_url)
    app_level = AsyncWebClient(token=slack.app_token, base_url=slack.api_url)

    assert (await slack_error(wrong.auth_test())).response["error"] == "invalid_auth"
    error = await slack_error(wrong.chat_postMessage(channel=CHANNEL, text="hi"))
    assert error.response["error"] == "invalid_auth"
    error = await slack_error(missing.chat_postMessage(channel=CHANNEL, text="hi"))
    assert error.response["error"] == "not_authed"
    error = await slack_error(app_level.chat_postMessage(channel=CHANNEL, text="hi"))
    assert error.response["error"] == "not_allowed_token_type"
    assert slack.channel_messages(CHANNEL) == []


async def test_unknown_method(client: AsyncWebClient) -> None:
    error = await slack_error(client.api_call("chat.postMesage", json={"channel": CHANNEL}))
    assert error.response["error"] == "unknown_method"


# --- messages --------------------------------------------------------------------------------


async def test_post_update_and_read_back_a_thread(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="<@UBOT> hello?")

    first = await client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text="Thinking…")
    second = await client.chat_postMessage(
        channel=CHANNEL,
        thread_ts=parent,
        text="Part 2",
        blocks=[{"type": "markdown", "text": "**Part 2**"}],
    )
    await client.chat_update(channel=CHANNEL, ts=first["ts"], text="Part 1")

    assert float(parent) < float(first["ts"]) < float(second["ts"])
    assert first["message"]["bot_id"] == "BBOT"
    assert first["message"]["user"] == "UBOT"
    thread = slack.thread_messages(CHANNEL, parent)
    assert [m["text"] for m in thread] == ["<@UBOT> hello?", "Part 1", "Part 2"]
    assert thread[0]["reply_count"] == 2
    assert thread[2]["blocks"] == [{"type": "markdown", "text": "**Part 2**"}]
    assert [m["ts"] for m in slack.bot_replies(CHANNEL, parent)] == [first["ts"], second["ts"]]


async def test_update_errors(slack: FakeSlack, client: AsyncWebClient) -> None:
    human = slack.add_message(CHANNEL, user="U1", text="mine")

    error = await slack_error(client.chat_update(channel=CHANNEL, ts="1.000001", text="x"))
    assert error.response["error"] == "message_not_found"
    error = await slack_error(client.chat_update(channel=CHANNEL, ts=human, text="x"))
    assert error.response["error"] == "cant_update_message"


async def test_form_bodies_with_blocks_as_a_json_string(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    # Slack accepts form-encoded bodies where blocks is a JSON string; so must the fake.
    blocks = [{"type": "markdown", "text": "# Hi"}]
    response = await client.api_call(
        "chat.postMessage", data={"channel": CHANNEL, "text": "Hi", "blocks": json.dumps(blocks)}
    )

    assert response["message"]["blocks"] == blocks
    assert slack.calls_to("chat.postMessage")[0].params["blocks"] == blocks


async def test_delete_removes_the_bots_message(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="q")
    reply = await client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text="a")

    await client.chat_delete(channel=CHANNEL, ts=reply["ts"])

    assert [m["ts"] for m in slack.thread_messages(CHANNEL, parent)] == [parent]
    error = await slack_error(client.chat_delete(channel=CHANNEL, ts=parent))
    assert error.response["error"] == "cant_delete_message"


async def test_replies_are_paginated_with_cursors(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="start")
    for n in range(6):
        slack.add_message(CHANNEL, user="U1", text=f"reply {n}", thread_ts=parent)
    await client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text="bot")
    slack.replies_page_size = 3

    texts: list[str] = []
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await client.conversations_replies(
            channel=CHANNEL, ts=parent, limit=200, cursor=cursor
        )
        pages.append(page.data)  # type: ignore[arg-type]
        texts += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break

    assert texts == ["start", *(f"reply {n}" for n in range(6)), "bot"]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert pages[2]["messages"][-1]["bot_id"] == "BBOT"
    assert all(c.http_method == "GET" for c in slack.calls_to("conversations.replies"))


async def test_replies_default_page_is_100(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="start")
    for n in range(120):
        slack.add_message(CHANNEL, user="U1", text=f"{n}", thread_ts=parent)

    page = await client.conversations_replies(channel=CHANNEL, ts=parent)

    assert len(page["messages"]) == 100
    assert page["has_more"] is True


async def test_replies_errors(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.add_message(CHANNEL, user="U1", text="start")

    error = await slack_error(client.conversations_replies(channel=CHANNEL, ts="1.000001"))
    assert error.response["error"] == "thread_not_found"
    error = await slack_error(client.conversations_replies(channel="C404", ts="1.000001"))
    assert error.response["error"] == "channel_not_found"


# --- limits ----------------------------------------------------------------------------------


def markdown(text: str) -> dict[str, str]:
    return {"type": "markdown", "text": text}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"text": "x", "blocks": [markdown("b")] * 51}, "invalid_blocks"),
        ({"text": "x", "blocks": [markdown("b" * 12_001)]}, "invalid_blocks"),
        ({"text": "x", "blocks": [markdown("b" * 6_001), markdown("c" * 6_000)]}, "invalid_blocks"),
        ({"text": "x", "blocks": [markdown("")]}, "invalid_blocks"),
        (
            {
                "text": "x",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3_001}}],
            },
            "invalid_blocks",
        ),
        ({"text": "x", "blocks": "not json"}, "invalid_blocks_format"),
        pytest.param(
            {}, "no_text", marks=pytest.mark.filterwarnings("ignore:The top-level `text`")
        ),
    ],
)
async def test_post_limits_are_enforced(
    slack: FakeSlack, client: AsyncWebClient, kwargs: dict[str, Any], error: str
) -> None:
    failure = await slack_error(client.chat_postMessage(channel=CHANNEL, **kwargs))

    assert failure.response["error"] == error
    assert slack.channel_messages(CHANNEL) == []


async def test_messages_at_the_limits_are_accepted(client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=CHANNEL, text="x" * 40_000)
    await client.chat_postMessage(channel=CHANNEL, text="x", blocks=[markdown("b" * 12_000)])
    await client.chat_postMessage(
        channel=CHANNEL, text="x", blocks=[markdown("b" * 6_000), markdown("c" * 6_000)]
    )
    await client.chat_postMessage(channel=CHANNEL, text="x", blocks=[markdown("b")] * 50)


async def test_update_limits_are_enforced(client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=CHANNEL, text="x")

    error = await slack_error(
        client.chat_update(channel=CHANNEL, ts=posted["ts"], text="x" * 40_001)
    )
    assert error.response["error"] == "msg_too_long"
    error = await slack_error(
        client.chat_update(
            channel=CHANNEL, ts=posted["ts"], text="x", blocks=[markdown("b" * 12_001)]
        )
    )
    assert error.response["error"] == "invalid_blocks"


# --- faults and rate limits ------------------------------------------------------------------


async def test_429_is_retried_by_the_rate_limit_handler(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    slack.fail_next("chat.postMessage", status=429, retry_after=0)

    response = await client.chat_postMessage(channel=CHANNEL, text="hi")

    assert response["ok"] is True
    first, second = slack.calls_to("chat.postMessage")
    assert (first.status, first.error) == (429, "ratelimited")
    assert second.ok
    assert len(slack.bot_replies(CHANNEL, response["ts"])) == 1


async def test_tiers_are_not_enforced_unless_switched_on(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    for i in range(10):
        await client.chat_postMessage(channel=CHANNEL, text=f"message {i}")
    assert slack.rate_limited == []


async def test_enforced_tiers_allow_a_burst_then_answer_429_with_retry_after(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.enforce_tiers()
    posted = await client.chat_postMessage(channel=CHANNEL, text="first")
    for i in range(50):  # Tier 3: 50 chat.update calls in any 60 s, all at once if need be
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text=f"edit {i}")

    error = await slack_error(client.chat_update(channel=CHANNEL, ts=posted["ts"], text="more"))

    assert error.response.status_code == 429
    assert error.response["error"] == "ratelimited"
    assert 1 <= int(error.response.headers["Retry-After"]) <= 60
    message = slack.message(CHANNEL, posted["ts"])
    assert message is not None
    assert message["text"] == "edit 49"  # the refused call did nothing


async def test_enforced_tiers_pace_posts_per_channel(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.enforce_tiers()
    for i in range(5):  # a burst of five per channel
        await client.chat_postMessage(channel=CHANNEL, text=f"burst {i}")

    error = await slack_error(client.chat_postMessage(channel=CHANNEL, text="sixth"))
    other = await client.chat_postMessage(channel="C2", text="another channel")

    assert error.response.status_code == 429
    assert int(error.response.headers["Retry-After"]) == 1
    assert other["ok"] is True
    assert len(slack.rate_limited) == 1


async def test_429_without_a_retry_handler_surfaces_retry_after(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.fail_next("chat.update", status=429, retry_after=7)

    error = await slack_error(client.chat_update(channel=CHANNEL, ts="1.1", text="x"))

    assert error.response.status_code == 429
    assert error.response["error"] == "ratelimited"
    assert error.response.headers["Retry-After"] == "7"


async def test_fail_next_repeats_then_recovers(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", "channel_not_found", times=2)

    for _ in range(2):
        error = await slack_error(client.chat_postMessage(channel=CHANNEL, text="hi"))
        assert error.response["error"] == "channel_not_found"
    assert (await client.chat_postMessage(channel=CHANNEL, text="hi"))["ok"] is True


# --- the rest of the surface -----------------------------------------------------------------


async def test_native_streaming_with_the_sdk_helper(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="q")
    stream = await client.chat_stream(
        channel=CHANNEL,
        thread_ts=parent,
        recipient_user_id="U1",
        recipient_team_id="T1",
        buffer_size=5,
    )

    await stream.append(markdown_text="Hello, ")
    await stream.append(markdown_text="world")
    await stream.stop(markdown_text="!")

    [reply] = slack.bot_replies(CHANNEL, parent)
    assert reply["text"] == "Hello, world!"
    assert [c.method for c in slack.calls] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    error = await slack_error(
        client.chat_appendStream(channel=CHANNEL, ts=reply["ts"], markdown_text="more")
    )
    assert error.response["error"] == "message_not_in_streaming_state"


async def test_streaming_rules(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="q")

    error = await slack_error(client.chat_startStream(channel=CHANNEL, thread_ts=parent))
    assert error.response["error"] == "missing_recipient_team_id"
    dm = slack.add_message("D1", user="U1", text="q")
    started = await client.chat_startStream(channel="D1", thread_ts=dm, markdown_text="a")
    slack.expire_stream("D1", started["ts"])
    error = await slack_error(
        client.chat_appendStream(channel="D1", ts=started["ts"], markdown_text="b")
    )
    assert error.response["error"] == "message_not_in_streaming_state"
    assert slack.bot_replies("D1", dm)[0]["text"] == "a"


async def test_stream_chunks_are_recorded_and_checked_as_slack_checks_them(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="q")
    started = await client.chat_startStream(
        channel=CHANNEL,
        thread_ts=parent,
        recipient_user_id="U1",
        recipient_team_id="T1",
        task_display_mode="plan",
        chunks=[{"type": "task_update", "id": "t1", "title": "Look up", "status": "pending"}],
    )
    ts = started["ts"]
    # slack_sdk's own models serialise to what the fake takes.
    await client.chat_appendStream(
        channel=CHANNEL,
        ts=ts,
        chunks=[
            TaskUpdateChunk(
                id="t1",
                title="Look up",
                status="complete",
                sources=[{"type": "url", "url": "https://a.example/", "text": "A"}],
            ),
            MarkdownTextChunk(text="Found it."),
        ],
    )
    task = {"type": "task_update", "id": "t2", "title": "x", "status": "error"}
    for bad in (
        [{"type": "thinking", "text": "x"}],  # unknown type
        [{"type": "task_update", "title": "no id", "status": "complete"}],
        [{"type": "task_update", "id": "t2", "title": "x", "status": "done"}],
        [{**task, "extra": 1}],
        [{**task, "details": "d" * 257}],
        [{**task, "sources": [{"type": "url", "url": "javascript:x", "text": "x"}]}],
        [{"type": "markdown_text"}],
    ):  # fmt: skip
        error = await slack_error(client.chat_appendStream(channel=CHANNEL, ts=ts, chunks=bad))
        assert error.response["error"] == "invalid_arguments", bad
    await client.chat_stopStream(
        channel=CHANNEL, ts=ts, chunks=[{"type": "plan_update", "title": "Done"}]
    )

    assert slack.stream_display_mode(CHANNEL, ts) == "plan"
    assert slack.stream_tasks(CHANNEL, ts) == [
        {
            "id": "t1",
            "title": "Look up",
            "status": "complete",
            "sources": [{"type": "url", "url": "https://a.example/", "text": "A"}],
        }
    ]
    assert [c["type"] for c in slack.stream_chunks(CHANNEL, ts)] == [
        "task_update",
        "task_update",
        "markdown_text",
        "plan_update",
    ]
    assert slack.bot_replies(CHANNEL, parent)[0]["text"] == "Found it."
    error = await slack_error(
        client.chat_startStream(
            channel="D1", thread_ts=parent, markdown_text="a", task_display_mode="list"
        )
    )
    assert error.response["error"] == "invalid_arguments"


async def test_assistant_status_clears_when_the_bot_replies(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="q")

    await client.assistant_threads_setStatus(
        channel_id=CHANNEL, thread_ts=parent, status="is thinking…", loading_messages=["Hmm"]
    )
    assert slack.thread_status(CHANNEL, parent) == "is thinking…"
    assert slack.statuses[0]["loading_messages"] == ["Hmm"]

    await client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text="answer")
    assert slack.thread_status(CHANNEL, parent) == ""


async def test_users_reactions_ephemerals_and_views(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_user("UADMIN", name="ada", is_admin=True)
    ts = slack.add_message(CHANNEL, user="UADMIN", text="hi")

    user = (await client.users_info(user="UADMIN"))["user"]
    assert (user["id"], user["name"], user["is_admin"], user["is_bot"]) == (
        "UADMIN",
        "ada",
        True,
        False,
    )
    assert user["profile"]["display_name"] == "ada"
    error = await slack_error(client.users_info(user="UNOBODY"))
    assert error.response["error"] == "user_not_found"

    await client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes")
    assert slack.thread_messages(CHANNEL, ts)[0]["reactions"][0]["name"] == "eyes"
    error = await slack_error(client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes"))
    assert error.response["error"] == "already_reacted"
    await client.reactions_remove(channel=CHANNEL, timestamp=ts, name="eyes")
    assert "reactions" not in slack.thread_messages(CHANNEL, ts)[0]

    await client.chat_postEphemeral(channel=CHANNEL, user="UADMIN", text="only you")
    assert slack.ephemerals[0]["text"] == "only you"

    opened = await client.views_open(
        trigger_id="t1",
        view={"type": "modal", "title": {"type": "plain_text", "text": "S"}, "blocks": []},
    )
    view_id = opened["view"]["id"]
    updated = await client.views_update(view_id=view_id, view={"type": "modal", "blocks": []})
    assert updated["view"]["id"] == view_id
    published = await client.views_publish(user_id="UADMIN", view={"type": "home", "blocks": []})
    assert published["view"]["id"] in slack.views


async def test_views_slack_would_refuse_are_refused(client: AsyncWebClient) -> None:
    def modal(element: dict[str, Any]) -> dict[str, Any]:
        block = {"type": "input", "block_id": "b", "label": {"type": "plain_text", "text": "L"}}
        return {"type": "modal", "blocks": [{**block, "element": element}]}

    option = {"text": {"type": "plain_text", "text": "a"}, "value": "a"}
    refused = [
        {"type": "plain_text_input", "action_id": "v", "max_length": 8000},
        {"type": "plain_text_input", "action_id": "v", "max_length": 5, "initial_value": "toolong"},
        {"type": "static_select", "options": [option], "initial_option": {**option, "value": "b"}},
        {"type": "static_select", "options": [option] * 101},
        {"type": "static_select", "options": [{**option, "value": "v" * 151}]},
        {
            "type": "static_select",
            "options": [{**option, "text": {"type": "plain_text", "text": "t" * 76}}],
        },
    ]
    for element in refused:
        error = await slack_error(client.views_open(trigger_id="t", view=modal(element)))
        assert error.response["error"] == "invalid_arguments", element
        assert error.response["response_metadata"]["messages"][0].startswith("[ERROR]")
    fine = {"type": "static_select", "options": [option], "initial_option": option}
    assert (await client.views_open(trigger_id="t", view=modal(fine)))["ok"]


async def test_response_urls_take_five_messages(slack: FakeSlack) -> None:
    from slack_sdk.webhook.async_client import AsyncWebhookClient

    url = slack.response_url()
    hook = AsyncWebhookClient(url)
    for n in range(5):
        answer = await hook.send(text=f"answer {n}", response_type="ephemeral")
        assert (answer.status_code, answer.body) == (200, "ok")
    assert (await hook.send(text="sixth")).status_code == 404
    assert [r["text"] for r in slack.responses_to(url)] == [f"answer {n}" for n in range(5)]
    assert slack.responses_to(slack.response_url()) == []


async def test_users_conversations_lists_private_channels_only_where_the_bot_is(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_channel("C1", members=["U1"])
    slack.add_channel("G1", members=["U1"], private=True)
    slack.add_channel("G2", members=["U1"], private=True, bot=False)
    slack.add_channel("C2", members=["U2"])
    listed = await client.users_conversations(user="U1", types="public_channel,private_channel")
    assert [c["id"] for c in listed["channels"]] == ["C1", "G1"]
    page = await client.users_conversations(
        user="U1", types="public_channel,private_channel", limit=1
    )
    assert [c["id"] for c in page["channels"]] == ["C1"]
    cursor = page["response_metadata"]["next_cursor"]
    rest = await client.users_conversations(
        user="U1", types="public_channel,private_channel", limit=1, cursor=cursor
    )
    assert [c["id"] for c in rest["channels"]] == ["G1"]
    assert slack.granted_scopes is not None
    slack.granted_scopes.remove("groups:read")
    error = await slack_error(client.users_conversations(user="U1", types="private_channel"))
    assert error.response["error"] == "missing_scope"


async def test_files_are_served_with_the_token_and_a_sign_in_page_without(
    slack: FakeSlack,
) -> None:
    import aiohttp

    file = slack.add_file("a.txt", b"hello", "text/plain", "text")
    async with aiohttp.ClientSession() as http:
        for url in (file["url_private"], file["url_private_download"]):
            headers = {"Authorization": f"Bearer {slack.bot_token}"}
            async with http.get(url, headers=headers) as response:
                assert (response.status, await response.read()) == (200, b"hello")
        async with http.get(file["url_private"]) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "Sign in" in await response.text()
    assert len(slack.file_requests) == 3


async def test_slow_next_delays_one_answer(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.slow_next("api.test", 0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.api_test()
    assert loop.time() - started >= 0.3
    started = loop.time()
    await client.api_test()
    assert loop.time() - started < 0.3


async def test_wait_for_wakes_on_calls_and_times_out(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = slack.add_message(CHANNEL, user="U1", text="q")

    task = asyncio.create_task(client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text="a"))
    replies = await slack.wait_for(lambda: slack.bot_replies(CHANNEL, parent))
    await task

    assert replies[0]["text"] == "a"
    with pytest.raises(TimeoutError, match=r"chat\.postMessage:ok"):
        await slack.wait_for(lambda: slack.calls_to("chat.update"), timeout=0.05)


# --- Socket Mode -----------------------------------------------------------------------------


async def test_socket_mode_client_connects_and_acks(slack: FakeSlack) -> None:
    received: list[dict[str, Any]] = []
    web_client = AsyncWebClient(base_url=slack.api_url)
    socket = SocketModeClient(app_token=slack.app_token, web_client=web_client)

    async def on_message(
        client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        received.append(message)

    async def on_request(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        response = SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "ok"})
        await client.send_socket_mode_response(response)

    socket.message_listeners.append(on_message)
    socket.socket_mode_request_listeners.append(on_request)
    try:
        await socket.connect()
        await slack.wait_connected()
        envelope_id = await slack.send_envelope("slash_commands", {"command": "/model"})
        ack = await slack.wait_ack(envelope_id)
    finally:
        await socket.close()

    assert ack == {"envelope_id": envelope_id, "payload": {"text": "ok"}}
    assert received[0]["type"] == "hello"
    assert received[1]["payload"] == {"command": "/model"}
    assert received[1]["accepts_response_payload"] is True
    assert slack.calls_to("apps.connections.open")[0].token == slack.app_token


async def test_socket_mode_reconnects_on_disconnect(slack: FakeSlack) -> None:
    socket = SocketModeClient(
        app_token=slack.app_token, web_client=AsyncWebClient(base_url=slack.api_url)
    )
    try:
        await socket.connect()
        await slack.wait_connected()
        await slack.send_disconnect()
        await slack.wait_for(lambda: slack.socket_connections == 2 and slack.connected)
    finally:
        await socket.close()

    assert len(slack.calls_to("apps.connections.open")) == 2


async def test_bolt_app_answers_an_event_over_socket_mode(slack: FakeSlack) -> None:
    app = AsyncApp(client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url))

    @app.event("app_mention")
    async def answer(event: dict[str, Any], say: Any) -> None:
        await say(text="pong", thread_ts=event["ts"])

    handler = AsyncSocketModeHandler(app, slack.app_token)
    ts = slack.add_message(CHANNEL, user="U1", text="<@UBOT> ping")
    try:
        await handler.connect_async()
        await slack.wait_connected()
        envelope_id = await slack.send_event(
            slack.message_event(CHANNEL, ts, event_type="app_mention")
        )
        await slack.wait_ack(envelope_id)
        replies = await slack.wait_for(lambda: slack.bot_replies(CHANNEL, ts))
    finally:
        await handler.close_async()

    assert replies[0]["text"] == "pong"
    assert slack.envelopes[0]["retry_attempt"] == 0
