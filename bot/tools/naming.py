"""Function names the model sees for MCP tools: ``<server>__<tool>``, within the provider's rules.

The Responses API accepts function names matching ``^[a-zA-Z0-9_-]{1,64}$``; MCP tool names may
be up to 128 characters and contain dots (``orders.lookup``). A name that already fits is used
as is (``orders__lookup_order``), so operators and logs read it easily. One that does not is
cleaned and shortened, then given a suffix derived from the server and the original tool name,
so the same tool always gets the same name: a function call in an earlier round or turn still
resolves after the listing is fetched again, and two tools that clean up alike stay distinct.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_FUNCTION_NAME", "function_name", "is_valid_function_name"]

MAX_FUNCTION_NAME = 64
_VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")
_SEPARATOR = "__"
_SUFFIX_LEN = 8


def is_valid_function_name(name: str) -> bool:
    return bool(_VALID.match(name))


def function_name(server: str, tool: str) -> str:
    """The model-facing name of ``tool`` on ``server`` (a slug, see ``McpServerConfig``)."""
    plain = f"{server}{_SEPARATOR}{tool}"
    if is_valid_function_name(plain):
        return plain
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:_SUFFIX_LEN]
    cleaned = _INVALID_CHARS.sub("_", tool).strip("_") or "tool"
    room = MAX_FUNCTION_NAME - len(server) - len(_SEPARATOR) - 1 - _SUFFIX_LEN
    return f"{server}{_SEPARATOR}{cleaned[:room]}_{digest}"
