"""The registry against a real MCP server (the SDK's own, over streamable HTTP on 127.0.0.1):
what the model is offered, and that every call ends with an output for the model, never an
exception, within its limits."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from bot.conversation.tool_round import plan_round
from bot.tools.config import McpServerConfig, parse_mcp_servers, resolve_mcp_servers
from bot.tools.naming import function_name
from bot.tools.registry import McpToolRegistry
from tests.fakes.mcp_server import TOOL_NAMES, FakeMcpServer
from tests.tools.conftest import MakeRegistry, run_calls

MODEL_KEY = "sk-model-key-never-for-tools"
BOT_TOKEN = "xoxb-bot-token-never-for-tools"
MCP_KEY = "orders-mcp-key-1234"


def tools_list_requests(fake: FakeMcpServer) -> int:
    return sum(1 for r in fake.requests if r.headers.get("mcp-method") == "tools/list")


async def test_every_tool_is_offered_as_a_flat_function_tool(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    catalogue = await registry.list_tools()
    assert catalogue.unavailable == {}
    assert sorted(spec.tool for spec in catalogue.tools) == sorted(TOOL_NAMES)

    lookup = next(t for t in catalogue.function_tools() if t["name"] == "orders__lookup_order")
    assert lookup == {
        "type": "function",
        "name": "orders__lookup_order",
        "description": "Look up an order by its id and return its status.",
        "parameters": lookup["parameters"],
        "strict": False,
    }
    assert lookup["parameters"]["type"] == "object"
    assert lookup["parameters"]["required"] == ["order_id"]
    assert lookup["parameters"]["properties"]["order_id"]["type"] == "string"
    for tool in catalogue.function_tools():
        assert set(tool) == {"type", "name", "description", "parameters", "strict"}


async def test_a_dotted_tool_name_maps_back_to_its_server_and_tool(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    catalogue = await registry.list_tools()
    name = function_name("orders", "inventory.search")
    spec = catalogue.get(name)
    assert spec is not None
    assert (spec.server, spec.tool) == ("orders", "inventory.search")

    result = await registry.call(name, {"query": "red shoes"})
    assert result.status == "ok"
    assert result.output == "3 items match 'red shoes'."
    assert fake_mcp.calls_to("inventory.search")[0].arguments == {"query": "red shoes"}


async def test_names_are_unique_across_servers(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry(
        servers=[
            {"name": "orders", "url": fake_mcp.url},
            {"name": "billing", "url": fake_mcp.url, "allowed_tools": ["lookup_order"]},
        ]
    )
    catalogue = await registry.list_tools()
    names = [spec.function_name for spec in catalogue.tools]
    assert len(names) == len(set(names)) == len(TOOL_NAMES) + 1
    billing = catalogue.get("billing__lookup_order")
    assert billing is not None
    assert billing.server == "billing"

    only_billing = await registry.list_tools({"billing"})
    assert [spec.function_name for spec in only_billing.tools] == ["billing__lookup_order"]


async def test_allowed_tools_filters_what_is_offered_and_what_may_be_called(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry(
        servers=[{"name": "orders", "url": fake_mcp.url, "allowed_tools": ["lookup_order"]}]
    )
    catalogue = await registry.list_tools()
    assert [spec.function_name for spec in catalogue.tools] == ["orders__lookup_order"]

    result = await registry.call("orders__refund_order", {"order_id": "A1", "amount": 5})
    assert result.status == "rejected"
    assert "no tool named 'orders__refund_order'" in result.output
    assert fake_mcp.calls_to("refund_order") == []


async def test_listings_are_cached_for_the_ttl(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    now = [1000.0]
    registry = await make_registry(list_ttl=60, clock=lambda: now[0])
    await registry.list_tools()
    await registry.list_tools()
    await registry.call("orders__lookup_order", {"order_id": "A1"})
    assert tools_list_requests(fake_mcp) == 1
    now[0] += 61
    await registry.list_tools()
    assert tools_list_requests(fake_mcp) == 2


async def test_a_listing_blip_keeps_the_tools_offered_before(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    now = [1000.0]
    registry = await make_registry(list_ttl=60, clock=lambda: now[0])
    before = await registry.list_tools()
    await fake_mcp.stop()
    now[0] += 61
    during = await registry.list_tools()
    assert during.tools == before.tools
    assert set(during.unavailable) == {"orders"}


async def test_the_declared_header_reaches_the_server_and_no_other_secret_does() -> None:
    async with FakeMcpServer(required_headers={"X-Api-Key": MCP_KEY}) as fake:
        configs = parse_mcp_servers(
            f'[{{"name": "orders", "url": "{fake.url}", '
            '"headers_from_env": {"X-Api-Key": "ORDERS_MCP_KEY"}}]'
        )
        environ = {
            "ORDERS_MCP_KEY": MCP_KEY,
            "OPENAI_API_KEY": MODEL_KEY,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
        }
        async with McpToolRegistry(resolve_mcp_servers(configs, environ)) as registry:
            catalogue = await registry.list_tools()
            assert catalogue.unavailable == {}
            result = await registry.call("orders__lookup_order", {"order_id": "A7"})
            assert result.status == "ok"
            assert result.output == "Order A7: shipped on 2025-03-04, 2 items."

        assert len(fake.requests) >= 3  # discovery, tools/list, tools/call at least
        for request in fake.requests:
            assert request.headers["x-api-key"] == MCP_KEY
            for value in request.headers.values():
                assert MODEL_KEY not in value
                assert BOT_TOKEN not in value
                assert "authorization" not in request.headers


async def test_a_refused_key_is_an_output_for_the_model_not_a_crash() -> None:
    async with FakeMcpServer(required_headers={"X-Api-Key": "the-right-key"}) as fake:
        config = McpServerConfig(
            name="orders", url=fake.url, headers_from_env={"X-Api-Key": "ORDERS_MCP_KEY"}
        )
        servers = resolve_mcp_servers([config], {"ORDERS_MCP_KEY": "a-wrong-key"})
        async with McpToolRegistry(servers) as registry:
            catalogue = await registry.list_tools()
            assert catalogue.tools == ()
            assert catalogue.unavailable == {
                "orders": "the server answered HTTP 401 (check the key in headers_from_env)"
            }
            result = await registry.call("orders__lookup_order", {"order_id": "A1"})
            assert result.status == "rejected"  # never listed, so never offered
        assert fake.calls == []


@pytest.mark.slow  # waits out a real timeout
async def test_a_slow_tool_times_out_into_an_error_output(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    fake_mcp.slow_delay = 30
    registry = await make_registry(servers=[{"name": "orders", "url": fake_mcp.url, "timeout": 1}])
    await registry.list_tools()
    started = time.monotonic()
    result = await registry.call("orders__slow_report", {"topic": "Q3"})
    elapsed = time.monotonic() - started

    assert result.status == "timeout"
    assert result.output == (
        "Error: the tool did not answer within 1 seconds and the call was abandoned; "
        "whether it took effect is unknown."
    )
    assert 0.9 <= elapsed < 10
    assert len(fake_mcp.calls_to("slow_report")) == 1  # it did reach the server

    # The shared session survives an abandoned call.
    after = await registry.call("orders__lookup_order", {"order_id": "A2"})
    assert after.status == "ok"


@pytest.mark.slow  # waits out a real timeout
async def test_the_turn_budget_can_shorten_a_call_but_never_lengthen_it(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    fake_mcp.slow_delay = 30
    registry = await make_registry(servers=[{"name": "orders", "url": fake_mcp.url, "timeout": 1}])
    await registry.list_tools()
    short = await registry.call("orders__slow_report", {"topic": "a"}, timeout=0.2)
    assert short.status == "timeout"
    assert "within 0.2 seconds" in short.output
    capped = await registry.call("orders__slow_report", {"topic": "b"}, timeout=100)
    assert capped.status == "timeout"
    assert "within 1 seconds" in capped.output


async def test_a_huge_output_is_truncated_with_a_visible_marker(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    fake_mcp.huge_chars = 200_000
    registry = await make_registry(max_output_chars=10_000)
    result = await registry.call("orders__export_orders", {})
    assert result.status == "ok"
    assert result.truncated
    assert result.output_chars == 200_000
    assert len(result.output) <= 10_000
    assert result.output.startswith("order-000000 shipped\n")
    assert result.output.endswith("\n[output truncated: 10,000 of 200,000 characters shown]")

    small = await registry.call("orders__lookup_order", {"order_id": "A3"})
    assert not small.truncated
    assert "truncated" not in small.output


async def test_a_failing_tool_is_an_error_output(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    result = await registry.call("orders__flaky_inventory", {"sku": "S-1"})
    assert result.status == "tool_error"
    assert result.output.startswith("The tool reported an error: ")
    assert "inventory database is offline" in result.output
    assert len(fake_mcp.calls_to("flaky_inventory")) == 1


async def test_an_unknown_tool_is_an_error_output_and_is_never_sent(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    result = await registry.call("orders__drop_database", {})
    assert result.status == "rejected"
    assert result.output == "Error: there is no tool named 'orders__drop_database'."
    assert all(r.headers.get("mcp-method") != "tools/call" for r in fake_mcp.requests)


async def test_a_server_not_enabled_here_cannot_be_called(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    await registry.list_tools()
    result = await registry.call("orders__lookup_order", {"order_id": "A1"}, servers={"crm"})
    assert result.status == "rejected"
    assert fake_mcp.calls == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_an_output_and_the_other_servers_still_work(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    down = f"http://127.0.0.1:{closed_port()}/mcp"
    registry = await make_registry(
        servers=[
            {"name": "orders", "url": fake_mcp.url, "allowed_tools": ["lookup_order"]},
            {"name": "crm", "url": down},
        ]
    )
    catalogue = await registry.list_tools()
    assert [spec.function_name for spec in catalogue.tools] == ["orders__lookup_order"]
    assert catalogue.unavailable == {"crm": "could not connect to the server"}

    ok = await registry.call("orders__lookup_order", {"order_id": "A1"})
    assert ok.status == "ok"


async def test_a_server_that_goes_down_gives_an_output_and_is_reconnected_later(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    assert (await registry.call("orders__lookup_order", {"order_id": "A1"})).status == "ok"

    await fake_mcp.stop()
    down = await registry.call("orders__lookup_order", {"order_id": "A2"})
    assert down.status == "unavailable"
    assert down.output == (
        "Error: the tool could not be run: MCP server orders: "
        "the connection to the server was lost."
    )

    await fake_mcp.start()  # same port, a fresh server (no sessions from before)
    again = await registry.call("orders__lookup_order", {"order_id": "A3"})
    assert again.status == "ok", again.output


@pytest.mark.slow  # a server restarted mid-test
async def test_a_stateful_server_that_forgot_the_session_gets_the_call_again_on_a_new_one(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    # The initialize handshake (the protocol most servers speak today) keeps a session id; a
    # restarted server answers 404 for it without running the call, so it is safe to resend.
    registry = await make_registry(protocol="legacy")
    assert (await registry.call("orders__lookup_order", {"order_id": "A1"})).status == "ok"
    assert any(r.headers.get("mcp-session-id") for r in fake_mcp.requests)
    await fake_mcp.stop()
    await fake_mcp.start()

    again = await registry.call("orders__lookup_order", {"order_id": "A2"})
    assert again.status == "ok", again.output
    assert [c.arguments["order_id"] for c in fake_mcp.calls_to("lookup_order")] == ["A1", "A2"]


async def test_a_tool_that_needs_approval_is_not_run_without_it(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry(
        servers=[{"name": "orders", "url": fake_mcp.url, "require_approval": ["refund_order"]}]
    )
    catalogue = await registry.list_tools()
    refund = catalogue.get("orders__refund_order")
    lookup = catalogue.get("orders__lookup_order")
    assert refund is not None
    assert refund.requires_approval
    assert lookup is not None
    assert not lookup.requires_approval

    refused = await registry.call("orders__refund_order", {"order_id": "A1", "amount": 5})
    assert refused.status == "rejected"
    assert "needs the approval of the person who asked" in refused.output
    assert fake_mcp.calls_to("refund_order") == []

    approved = await registry.call(
        "orders__refund_order", {"order_id": "A1", "amount": 5}, approved=True
    )
    assert approved.status == "ok"
    assert approved.output == "Refunded 5.00 on order A1."


async def test_parallel_calls_run_at_the_same_time(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    fake_mcp.slow_delay = 0.5
    registry = await make_registry()
    output = [
        {
            "type": "function_call",
            "call_id": f"call_{i}",
            "name": "orders__slow_report",
            "arguments": f'{{"topic": "t{i}"}}',
        }
        for i in range(3)
    ]
    tool_round = plan_round(output)
    results = await run_calls(registry, tool_round)

    assert [results[f"call_{i}"].status for i in range(3)] == ["ok", "ok", "ok"]
    calls = fake_mcp.calls_to("slow_report")
    assert len(calls) == 3
    finished = [c.finished for c in calls]
    assert all(f is not None for f in finished)
    # Every call had started before any of them finished: they overlapped on the server.
    assert max(c.started for c in calls) < min(f for f in finished if f is not None)


async def test_a_stop_cancels_the_running_call_and_the_registry_stays_usable(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    fake_mcp.slow_delay = 30
    registry = await make_registry()
    await registry.list_tools()
    task = asyncio.create_task(registry.call("orders__slow_report", {"topic": "x"}))
    await fake_mcp.wait_for_calls(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await registry.call("orders__lookup_order", {"order_id": "A9"})
    assert after.status == "ok"


async def test_aclose_ends_every_connection(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    await registry.call("orders__lookup_order", {"order_id": "A1"})
    assert any(t.get_name() == "mcp-orders" for t in asyncio.all_tasks())
    await registry.aclose()
    assert not any(t.get_name() == "mcp-orders" for t in asyncio.all_tasks())
    closed = await registry.call("orders__lookup_order", {"order_id": "A2"})
    assert closed.status == "unavailable"
    assert "shutting down" in closed.output


async def test_arguments_and_outputs_are_logged_only_when_asked(
    fake_mcp: FakeMcpServer, make_registry: MakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.tools")
    quiet = await make_registry()
    await quiet.call("orders__lookup_order", {"order_id": "PRIVATE-ORDER-1"})
    (record,) = [r for r in caplog.records if r.getMessage() == "tool call"]
    assert record.__dict__["mcp_server"] == "orders"
    assert record.__dict__["status"] == "ok"
    assert record.__dict__["output_chars"] > 0
    logged = repr(record.__dict__)
    assert "PRIVATE-ORDER-1" not in logged
    assert "shipped" not in logged

    caplog.clear()
    chatty = await make_registry(log_content=True)
    await chatty.call("orders__lookup_order", {"order_id": "PRIVATE-ORDER-2"})
    (record,) = [r for r in caplog.records if r.getMessage() == "tool call"]
    assert record.__dict__["tool_arguments"] == {"order_id": "PRIVATE-ORDER-2"}
    assert "shipped" in record.__dict__["tool_output"]
