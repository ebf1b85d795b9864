"""Function names: valid for the Responses API, stable, and one per (server, tool)."""

from __future__ import annotations

import re
import string

from hypothesis import given
from hypothesis import strategies as st

from bot.tools.naming import function_name, is_valid_function_name

PROVIDER_RULE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

slugs = st.from_regex(r"[a-z0-9]{1,10}(?:[-_][a-z0-9]{1,10}){0,2}", fullmatch=True).filter(
    lambda s: len(s) <= 32
)
# MCP tool names: 1-128 of letters, digits, _ - . (and servers send worse, so any text too).
mcp_names = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=128)
any_names = st.text(min_size=1, max_size=200)


def test_a_fitting_name_is_kept_readable() -> None:
    assert function_name("orders", "lookup_order") == "orders__lookup_order"
    assert function_name("crm-eu", "find-contact") == "crm-eu__find-contact"


def test_a_dotted_name_is_cleaned_and_stays_distinct_from_its_lookalike() -> None:
    dotted = function_name("orders", "inventory.search")
    plain = function_name("orders", "inventory_search")
    assert PROVIDER_RULE.match(dotted)
    assert dotted.startswith("orders__inventory_search_")
    assert plain == "orders__inventory_search"
    assert dotted != plain


def test_a_long_name_is_shortened_to_64() -> None:
    name = function_name("x" * 32, "t" * 128)
    assert len(name) == 64
    assert PROVIDER_RULE.match(name)
    assert name != function_name("x" * 32, "t" * 127)


@given(slugs, any_names)
def test_every_name_fits_the_provider_rule_and_is_stable(server: str, tool: str) -> None:
    name = function_name(server, tool)
    assert is_valid_function_name(name)
    assert PROVIDER_RULE.match(name)
    assert name == function_name(server, tool)
    assert name.startswith(f"{server}__")


@given(slugs, slugs, mcp_names, mcp_names)
def test_different_tools_get_different_names(s1: str, s2: str, t1: str, t2: str) -> None:
    if (s1, t1) != (s2, t2):
        assert function_name(s1, t1) != function_name(s2, t2)
