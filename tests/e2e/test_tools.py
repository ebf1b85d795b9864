"""Tools, end to end: signed Slack events into the running service; the fake Responses server
asks for function calls; the SDK's own MCP server (on 127.0.0.1) runs them; a real SQLite file
keeps the turns and their tool calls.

Each story asserts what the model was sent (outputs chained to the response that asked), what
the MCP server ran, what the thread shows, the chain head, and what accounting recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.slack.approvals import APPROVE_ACTION, DENY_ACTION
from bot.slack.reply import sink as reply_sink
from storage.models import ToolCall
from tests.conftest import StartBot
from tests.e2e.harness import BotUnderTest, shown, slash_command
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.responses_server import tool_outputs


@pytest.fixture
async def fake_mcp() -> AsyncIterator[FakeMcpServer]:
    async with FakeMcpServer(slow_delay=5.0) as server:
        yield server


async def start_with_tools(
    start_bot: StartBot,
    fake_mcp: FakeMcpServer,
    *,
    server: dict[str, Any] | None = None,
    channel: str = "C1",
    **overrides: Any,
) -> BotUnderTest:
    entry = {"name": "orders", "url": fake_mcp.url, **(server or {})}
    bot = await start_bot(mcp_servers=json.dumps([entry]), **overrides)
    await bot.service.store.update_channel_settings(
        team_id="T1", channel_id=channel, values={"mcp_servers": ["orders"]}, updated_by=None
    )
    return bot


async def tool_rows(bot: BotUnderTest) -> list[tuple[str, str, str, int]]:
    async with bot.service.store.session_factory() as session:
        rows = (await session.execute(select(ToolCall).order_by(ToolCall.id))).scalars().all()
    return [(r.server, r.tool, r.status, r.output_chars) for r in rows]


def function_outputs(bot: BotUnderTest, n: int) -> list[str]:
    return list(tool_outputs(bot.model_bodies()[n]).values())


async def test_one_tool_call_is_run_and_the_answer_follows_it(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp)
    bot.model.function_calls(("orders__lookup_order", {"order_id": "A1"}))
    bot.model.script_reply("Order A1 shipped on 4 March.")
    ts, _ = await bot.mention("where is order A1?")

    replies = await bot.wait_replies("C1", ts, 1)
    assert shown(replies[-1]) == "Order A1 shipped on 4 March."
    first, second = bot.model_bodies()
    assert [t["name"] for t in first["tools"] if t["type"] == "function"] == [
        "orders__lookup_order",
        "orders__slow_report",
        "orders__flaky_inventory",
        "orders__export_orders",
        "orders__refund_order",
        "orders__inventory_search_eea24c58",
    ]
    # The output goes back chained to the response that asked for the call.
    assert second["previous_response_id"] == bot.model.response_ids[0]
    assert function_outputs(bot, 1) == ["Order A1: shipped on 2025-03-04, 2 items."]
    assert [(c.tool, c.arguments) for c in fake_mcp.calls] == [("lookup_order", {"order_id": "A1"})]
    # The head is the turn's last response; the tokens of both rounds count.
    (turn,) = await bot.turns("C1", ts)
    assert turn.response_id == bot.model.response_ids[1]
    assert turn.status == "completed"
    assert turn.input_tokens > 20
    assert await tool_rows(bot) == [("orders", "lookup_order", "ok", 41)]
    status, metrics = await bot.get("/metrics")
    assert status == 200
    assert (
        'slackbot_tool_calls_total{server="orders",status="ok",tool="lookup_order"} 1.0' in metrics
    )
    assert 'slackbot_tool_call_seconds_count{server="orders"} 1.0' in metrics
    _, _, usage = await slash_command(bot, "usage", user="U1")
    assert "*Tool calls, 30 days*: 1 (0 failed)" in usage
    assert "`orders/lookup_order`: 1 (0 failed)" in usage

    # A follow-up chains on the turn's last response, never the intermediate one.
    await bot.reply("thanks", thread_ts=ts)
    await bot.wait_replies("C1", ts, 2)
    assert bot.model_bodies()[2]["previous_response_id"] == bot.model.response_ids[1]


async def test_parallel_calls_run_at_the_same_time(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    fake_mcp.slow_delay = 0.3
    bot = await start_with_tools(start_bot, fake_mcp)
    bot.model.function_calls(
        ("orders__slow_report", {"topic": "north"}),
        ("orders__slow_report", {"topic": "south"}),
        ("orders__lookup_order", {"order_id": "B7"}),
    )
    bot.model.script_reply("Both regions reported.")
    ts, _ = await bot.mention("reports please")
    await bot.wait_replies("C1", ts, 1)

    slow = fake_mcp.calls_to("slow_report")
    assert len(slow) == 2
    finished = [c.finished for c in slow if c.finished is not None]
    assert max(c.started for c in slow) < min(finished)  # they overlapped
    outputs = function_outputs(bot, 1)
    assert len(outputs) == 3
    assert outputs[2] == "Order B7: shipped on 2025-03-04, 2 items."


async def test_the_round_limit_ends_the_loop_with_an_answer(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp, tool_max_rounds=2)
    bot.model.always_call("orders__lookup_order", {"order_id": "L1"})
    ts, _ = await bot.mention("loop forever")
    replies = await bot.wait_replies("C1", ts, 1)

    bodies = bot.model_bodies()
    assert len(bodies) == 4
    assert len(fake_mcp.calls) == 2  # the third call was answered "not run"
    assert "limit of tool rounds" in function_outputs(bot, 3)[0]
    assert bodies[3]["tool_choice"] == "none"
    assert shown(replies[-1]).startswith("answer 4")
    statuses = [row[2] for row in await tool_rows(bot)]
    assert statuses == ["ok", "ok", "rejected"]


async def test_a_failing_tool_is_an_output_for_the_model_not_a_crash(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp)
    bot.model.function_calls(("orders__flaky_inventory", {"sku": "S-1"}))
    bot.model.script_reply("The inventory system is down right now.")
    ts, _ = await bot.mention("is S-1 in stock?")
    replies = await bot.wait_replies("C1", ts, 1)
    assert shown(replies[-1]) == "The inventory system is down right now."
    (output,) = function_outputs(bot, 1)
    assert output.startswith("The tool reported an error:")
    assert (await tool_rows(bot))[0][2] == "tool_error"


async def test_a_slow_tool_times_out_and_the_model_is_told(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp, server={"timeout": 0.5})
    bot.model.function_calls(("orders__slow_report", {"topic": "x"}))
    ts, _ = await bot.mention("slow report")
    await bot.wait_replies("C1", ts, 1)
    (output,) = function_outputs(bot, 1)
    assert "did not answer within 0.5 seconds" in output
    assert (await tool_rows(bot))[0][2] == "timeout"


async def test_a_slack_retry_during_a_tool_call_never_runs_it_again(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    fake_mcp.slow_delay = 1.0
    bot = await start_with_tools(start_bot, fake_mcp)
    bot.model.function_calls(("orders__slow_report", {"topic": "q3"}))
    bot.model.script_reply("Q3 is done.")
    ts, event_id = await bot.mention("q3 report")
    await fake_mcp.wait_for_calls(1)
    # Slack did not see our 200 in time and sends the same event again, mid tool call.
    event = {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@{bot.bot_user_id}> q3 report",
        "ts": ts,
        "channel": "C1",
        "event_ts": ts,
    }
    await bot.send_event(event, event_id=event_id, retry_num=1)
    replies = await bot.wait_replies("C1", ts, 1)
    assert shown(replies[-1]) == "Q3 is done."
    assert len(fake_mcp.calls_to("slow_report")) == 1
    assert len(bot.model_bodies()) == 2
    assert len(await bot.turns("C1", ts)) == 1


async def test_transcript_mode_sends_the_calls_and_outputs_itself(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp, conversation_state="transcript")
    bot.model.function_calls(("orders__lookup_order", {"order_id": "T1"}))
    bot.model.script_reply("T1 shipped.")
    ts, _ = await bot.mention("T1?")
    await bot.wait_replies("C1", ts, 1)
    second = bot.model_bodies()[1]
    assert "previous_response_id" not in second
    kinds = [item.get("type", "message") for item in second["input"]]
    assert kinds == ["message", "function_call", "function_call_output"]
    assert second["input"][1]["call_id"] == second["input"][2]["call_id"]


def _question(bot: BotUnderTest, ts: str) -> dict[str, Any] | None:
    """The thread's approval question while it still has its buttons."""
    for message in bot.slack.bot_replies("C1", ts):
        if any(b.get("type") == "actions" for b in message.get("blocks") or []):
            return message
    return None


def _task_cards(bot: BotUnderTest, ts: str) -> list[dict[str, Any]]:
    return [
        task
        for message in bot.slack.bot_replies("C1", ts)
        for task in bot.slack.stream_tasks("C1", message["ts"])
    ]


async def test_a_tool_needing_approval_runs_once_the_asker_approves_in_the_thread(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp, server={"require_approval": True})
    bot.model.function_calls(("orders__refund_order", {"order_id": "A1", "amount": 5}))
    bot.model.script_reply("Refunded 5 on order A1.")
    ts, _ = await bot.mention("refund A1")

    question = await bot.slack.wait_for(lambda: _question(bot, ts), timeout=10)
    assert "<@U1>" in json.dumps(question["blocks"])
    # Someone else's click is refused privately and decides nothing.
    status, _ = await bot.interact(
        bot.slack.button_click("C1", question["ts"], user="U2", action_id=APPROVE_ACTION)
    )
    assert status == 200
    await bot.slack.wait_for(lambda: bot.slack.ephemerals or None, timeout=5)
    assert fake_mcp.calls_to("refund_order") == []

    status, _ = await bot.interact(
        bot.slack.button_click("C1", question["ts"], user="U1", action_id=APPROVE_ACTION)
    )
    assert status == 200
    await bot.slack.wait_for(
        lambda: (
            any("Refunded 5 on order A1." in shown(m) for m in bot.slack.bot_replies("C1", ts))
            or None
        ),
        timeout=10,
    )
    assert len(fake_mcp.calls_to("refund_order")) == 1
    assert not function_outputs(bot, 1)[0].startswith("The user denied")
    assert (await tool_rows(bot))[0][:3] == ("orders", "refund_order", "ok")
    decided = bot.slack.message("C1", question["ts"])
    assert decided is not None
    assert "approved by <@U1>" in json.dumps(decided["blocks"])
    # The call showed as a task card on the streamed answer, ending complete.
    cards = await bot.slack.wait_for(lambda: _task_cards(bot, ts) or None, timeout=5)
    assert [(c["status"], "refund" in c["title"]) for c in cards] == [("complete", True)]


async def test_a_denied_tool_call_is_not_run_and_the_model_is_told(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp, server={"require_approval": True})
    bot.model.function_calls(("orders__refund_order", {"order_id": "A1", "amount": 5}))
    bot.model.script_reply("I did not refund it.")
    ts, _ = await bot.mention("refund A1")
    question = await bot.slack.wait_for(lambda: _question(bot, ts), timeout=10)
    await bot.interact(
        bot.slack.button_click("C1", question["ts"], user="U1", action_id=DENY_ACTION)
    )
    await bot.slack.wait_for(
        lambda: (
            any("I did not refund it." in shown(m) for m in bot.slack.bot_replies("C1", ts)) or None
        ),
        timeout=10,
    )
    assert fake_mcp.calls_to("refund_order") == []
    assert function_outputs(bot, 1)[0].startswith("The user denied this tool call")
    assert (await tool_rows(bot))[0][2] == "denied"


async def test_hosted_tools_pass_through_and_a_refusal_names_the_tool(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_bot()
    await bot.service.store.update_channel_settings(
        team_id="T1",
        channel_id="C1",
        values={"hosted_tools": ["web_search", "code_interpreter"]},
        updated_by=None,
    )
    ts, _ = await bot.mention("search something")
    await bot.wait_replies("C1", ts, 1)
    assert bot.model_bodies()[0]["tools"] == [
        {"type": "web_search"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
    ]

    bot.model.error(
        400,
        {
            "error": {
                "message": "Tool 'web_search' is not supported with test-model.",
                "type": "invalid_request_error",
                "param": "tools",
                "code": None,
            }
        },
    )
    ts2, _ = await bot.mention("search again")
    replies = await bot.wait_replies("C1", ts2, 1)
    assert "`web_search` tool" in shown(replies[-1])
    assert "hosted_tools" in shown(replies[-1])


async def test_admins_enable_only_declared_servers(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_bot(
        mcp_servers=json.dumps([{"name": "orders", "url": fake_mcp.url}]), admin_user_ids="UADMIN"
    )
    _, _, refused = await slash_command(bot, "set mcp_servers billing", user="UADMIN")
    assert "unknown 'billing'" in refused
    assert "orders" in refused
    _, _, saved = await slash_command(bot, "set mcp_servers orders", user="UADMIN")
    assert "orders" in saved
    stored = await bot.service.store.get_channel_settings(team_id="T1", channel_id="C1")
    assert stored is not None
    assert list(stored.values["mcp_servers"]) == ["orders"]


async def test_a_stop_during_a_tool_call_ends_the_turn_and_keeps_the_chain(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp)
    root, _ = await bot.mention("first")
    await bot.wait_replies("C1", root, 1)
    fake_mcp.slow_delay = 1.5
    bot.model.function_calls(("orders__slow_report", {"topic": "x"}), text="Let me check.")
    bot.model.script_reply("The report says all is well.", delta_count=10, delay_between_deltas=0.2)
    await bot.reply("report please", thread_ts=root)
    await fake_mcp.wait_for_calls(1)
    live = await bot.slack.wait_for(
        lambda: [m for m in bot.slack.bot_replies("C1", root)[1:] if shown(m)], timeout=5
    )
    # The user presses stop while the tool runs; the reply sink sees it on its next call.
    bot.slack.stop_stream_by_user("C1", live[0]["ts"])
    replies = await bot.wait_replies("C1", root, 3, timeout=15)
    assert "Stopped" in shown(replies[-1])
    turns = await bot.turns("C1", root)
    assert [(t.status, t.error_code) for t in turns] == [
        ("completed", None),
        ("stopped", "stopped_by_user"),
    ]
    # The chain stays at the last finished answer and the thread goes on from there.
    await bot.reply("next", thread_ts=root)
    await bot.wait_replies("C1", root, 4, timeout=15)
    assert bot.model_bodies()[-1]["previous_response_id"] == bot.model.response_ids[0]


async def test_without_native_streaming_each_step_is_a_context_line_above_the_answer(
    start_bot: StartBot, fake_mcp: FakeMcpServer
) -> None:
    bot = await start_with_tools(start_bot, fake_mcp, slack_native_streaming=False)
    bot.model.function_calls(
        ("orders__lookup_order", {"order_id": "A1"}),
        ("orders__flaky_inventory", {"sku": "S1"}),
    )
    bot.model.script_reply("A1 shipped; inventory is unavailable.")
    ts, _ = await bot.mention("order A1 and inventory?")
    await bot.wait_replies("C1", ts, 1)
    [answer] = bot.slack.bot_replies("C1", ts)
    assert shown(answer) == "A1 shipped; inventory is unavailable."
    [context] = [b for b in answer.get("blocks") or [] if b.get("type") == "context"]
    lines = context["elements"][0]["text"].splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(":white_check_mark:")
    assert "lookup_order" in lines[0]
    assert "A1" in lines[0]
    assert lines[1].startswith(":x:")  # the flaky tool failed: an error step
    assert "flaky_inventory" in lines[1]
    # Nothing of the tools' output is posted; only the model's answer and the step titles.
    assert "2025-03-04" not in json.dumps(answer)


async def test_a_stop_while_one_slow_call_runs_cancels_it_without_waiting_for_it(
    start_bot: StartBot, fake_mcp: FakeMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slack sends no event for a stop: the running step's card is sent again to ask.
    monkeypatch.setattr(reply_sink, "STOP_CHECK_INTERVAL", 0.2)
    fake_mcp.slow_delay = 20.0
    bot = await start_with_tools(start_bot, fake_mcp)
    bot.model.function_calls(("orders__slow_report", {"topic": "x"}), text="Let me check.")
    bot.model.script_reply("never sent")
    ts, _ = await bot.mention("report please")
    await fake_mcp.wait_for_calls(1)
    streamed = await bot.slack.wait_for(
        lambda: (
            [m for m in bot.slack.bot_replies("C1", ts) if bot.slack.stream_tasks("C1", m["ts"])]
            or None
        ),
        timeout=5,
    )
    started = time.monotonic()
    bot.slack.stop_stream_by_user("C1", streamed[0]["ts"])

    replies = await bot.slack.wait_for(
        lambda: [m for m in bot.slack.bot_replies("C1", ts) if "Stopped" in shown(m)] or None,
        timeout=10,
    )
    assert replies
    assert time.monotonic() - started < 5  # not the tool's 20 s
    (turn,) = await bot.turns("C1", ts)
    assert (turn.status, turn.error_code) == ("stopped", "stopped_by_user")
    assert (await tool_rows(bot))[0][:3] == ("orders", "slow_report", "cancelled")
    assert len(bot.model_bodies()) == 1  # the model was never asked again
