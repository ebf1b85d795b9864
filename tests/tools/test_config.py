"""MCP_SERVERS: the contract's shape parses; every mistake stops start-up with one line that
names the server and the problem; header values come from the environment and never show."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.logs import RedactingFilter
from bot.settings import load_settings
from bot.tools.config import McpServerConfig, parse_mcp_servers, resolve_mcp_servers

# The example of CONTRACT.md's environment table, verbatim.
CONTRACT_EXAMPLE = (
    '[{"name": "orders", "url": "https://orders.example.com/mcp", "headers_from_env": '
    '{"X-Api-Key": "ORDERS_MCP_KEY"}, "allowed_tools": ["lookup_order"], '
    '"require_approval": false, "timeout": 30}]'
)
SECRET = "orders-secret-value-123"


def servers(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


def test_the_contract_example_parses() -> None:
    (config,) = parse_mcp_servers(CONTRACT_EXAMPLE)
    assert config.name == "orders"
    assert config.url == "https://orders.example.com/mcp"
    assert config.headers_from_env == {"X-Api-Key": "ORDERS_MCP_KEY"}
    assert config.allowed_tools == ("lookup_order",)
    assert config.require_approval is False
    assert config.timeout == 30


def test_defaults_every_tool_no_approval_thirty_seconds() -> None:
    (config,) = parse_mcp_servers(servers({"name": "crm-eu", "url": "http://127.0.0.1:9/mcp"}))
    assert config.allowed_tools is None
    assert config.allows("anything")
    assert not config.needs_approval("anything")
    assert config.timeout == 30
    assert config.headers_from_env == {}


def test_blank_means_no_servers() -> None:
    assert parse_mcp_servers("") == ()
    assert parse_mcp_servers("  \n") == ()
    assert parse_mcp_servers("[]") == ()


def test_approval_for_every_tool_or_for_listed_tools() -> None:
    every, some = parse_mcp_servers(
        servers(
            {"name": "a", "url": "https://a.example/mcp", "require_approval": True},
            {"name": "b", "url": "https://b.example/mcp", "require_approval": ["refund_order"]},
        )
    )
    assert every.needs_approval("lookup_order")
    assert every.needs_approval("refund_order")
    assert some.needs_approval("refund_order")
    assert not some.needs_approval("lookup_order")


BASE = {"name": "orders", "url": "https://orders.example.com/mcp"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"not valid JSON"),
        ('{"name": "orders"}', r"must be a JSON array"),
        ('["orders"]', r"server 1 must be a JSON object"),
        (servers({"url": "https://x.example/mcp"}), r"server 1: name is required"),
        (servers({"name": "orders"}), r"server 1 \(orders\): url is required"),
        (servers({**BASE, "name": "Orders"}), r"name 'Orders' must be 1-32 lower-case"),
        (servers({**BASE, "name": "a__b"}), r"name 'a__b' must be"),
        (servers({**BASE, "name": "x" * 33}), r"must be 1-32"),
        (servers({**BASE, "url": "ftp://orders.example.com/mcp"}), r"http:// or https://"),
        (servers({**BASE, "url": "orders.example.com/mcp"}), r"http:// or https://"),
        (servers({**BASE, "url": "https://u:pw@orders.example.com/mcp"}), r"not contain cred"),
        (servers(BASE, {**BASE, "url": "https://b.example/mcp"}), r"server 2 \(orders\): the name"),
        (servers({**BASE, "allowed_tool": ["x"]}), r"server 1 \(orders\): unknown key 'allowed_to"),
        (servers({**BASE, "timeout": 0}), r"timeout: .*greater than 0"),
        (servers({**BASE, "timeout": 601}), r"timeout: .*less than or equal to 600"),
        (servers({**BASE, "timeout": "soon"}), r"timeout"),
        (servers({**BASE, "headers_from_env": {"X Key": "K"}}), r"'X Key' is not a valid HTTP"),
        (servers({**BASE, "headers_from_env": {"Host": "K"}}), r"Host is set by the MCP trans"),
        (
            servers({**BASE, "headers_from_env": {"X-Api-Key": "sk-live-123"}}),
            r"X-Api-Key must name an environment variable",
        ),
        (
            servers({**BASE, "headers_from_env": {"X-Key": "A", "x-key": "B"}}),
            r"x-key is given twice",
        ),
        (servers({**BASE, "allowed_tools": ["a", "a"]}), r"allowed_tools: lists a tool twice"),
        (servers({**BASE, "allowed_tools": [""]}), r"allowed_tools"),
        (
            servers({**BASE, "allowed_tools": ["lookup"], "require_approval": ["refund"]}),
            r"require_approval names refund, which allowed_tools leaves out",
        ),
        (servers({**BASE, "require_approval": "refund"}), r"require_approval"),
    ],
)
def test_each_mistake_gets_one_line_naming_it(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_mcp_servers(text)
    assert "\n" not in str(caught.value)


def test_a_bad_mcp_servers_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-123",
        "SLACK_SIGNING_SECRET": "secret",
        "OPENAI_API_KEY": "sk-abc",
        "DEFAULT_MODEL": "gpt-4o-mini",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    monkeypatch.delenv("MCP_SERVERS", raising=False)
    assert load_settings(env_file=None).mcp_server_configs == ()

    monkeypatch.setenv("MCP_SERVERS", CONTRACT_EXAMPLE)
    (config,) = load_settings(env_file=None).mcp_server_configs
    assert config.name == "orders"

    monkeypatch.setenv("MCP_SERVERS", servers({**BASE, "url": "file:///etc/passwd"}))
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == (
        "MCP_SERVERS is invalid: server 1 (orders): url must be an http:// or https:// URL"
    )


def test_headers_are_read_from_the_named_variables() -> None:
    configs = parse_mcp_servers(CONTRACT_EXAMPLE)
    (server,) = resolve_mcp_servers(configs, {"ORDERS_MCP_KEY": f"  {SECRET}\n"})
    assert server.header_values() == {"X-Api-Key": SECRET}
    assert server.secrets() == [SECRET]


@pytest.mark.parametrize("environ", [{}, {"ORDERS_MCP_KEY": ""}, {"ORDERS_MCP_KEY": "   "}])
def test_a_missing_variable_is_named(environ: dict[str, str]) -> None:
    configs = parse_mcp_servers(CONTRACT_EXAMPLE)
    with pytest.raises(ConfigError) as caught:
        resolve_mcp_servers(configs, environ)
    assert str(caught.value) == (
        "MCP server orders: header X-Api-Key is taken from the environment variable "
        "ORDERS_MCP_KEY, which is not set"
    )


def test_a_value_with_a_line_break_is_refused_without_showing_it() -> None:
    configs = parse_mcp_servers(CONTRACT_EXAMPLE)
    with pytest.raises(ConfigError, match=r"ORDERS_MCP_KEY .* contains a line break") as caught:
        resolve_mcp_servers(configs, {"ORDERS_MCP_KEY": f"{SECRET}\nX-Evil: 1"})
    assert SECRET not in str(caught.value)


def test_header_values_never_show_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    (server,) = resolve_mcp_servers(parse_mcp_servers(CONTRACT_EXAMPLE), {"ORDERS_MCP_KEY": SECRET})
    for text in (repr(server), str(server), repr(server.config), repr(server.headers)):
        assert SECRET not in text
    assert "X-Api-Key" in repr(server)
    # The values are handed to log redaction; a line that quotes one is scrubbed.
    scrub = RedactingFilter(server.secrets())
    record = logging.makeLogRecord({"msg": f"header was {SECRET}"})
    scrub.filter(record)
    assert SECRET not in record.getMessage()


def test_config_is_immutable() -> None:
    (config,) = parse_mcp_servers(CONTRACT_EXAMPLE)
    with pytest.raises(Exception, match="frozen"):
        config.timeout = 1  # type: ignore[misc]
    assert isinstance(config, McpServerConfig)


def test_a_one_line_json_value_in_dotenv_is_read_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("MCP_SERVERS", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(
        "SLACK_BOT_TOKEN=xoxb-1\nSLACK_SIGNING_SECRET=s\nOPENAI_API_KEY=sk-1\n"
        f"DEFAULT_MODEL=m\nMCP_SERVERS={CONTRACT_EXAMPLE}\n"
    )
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY", "DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    (config,) = load_settings(env_file=env_file).mcp_server_configs
    assert config.allowed_tools == ("lookup_order",)


def test_the_setting_is_documented_where_operators_look() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert "\nMCP_SERVERS=\n" in (repo / ".env.example").read_text()
    assert "| `MCP_SERVERS` | empty |" in (repo / "README.md").read_text()
    assert (repo / "docs" / "tools.md").is_file()
