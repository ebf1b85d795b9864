"""MCP server declarations: parsed from ``MCP_SERVERS``, validated, then resolved once at start.

Two steps, on purpose:

- ``parse_mcp_servers(text)`` checks the JSON's shape (names, URLs, limits) and runs where the
  settings are validated, so a typo stops the service with one line naming it.
- ``resolve_mcp_servers(configs, environ)`` reads each ``headers_from_env`` variable from the
  mapping it is given (the CLI passes the environment; nothing here reads ``os.environ``) and
  fails with a ``ConfigError`` naming the first missing variable. Header values exist only on
  the resolved ``McpServer``, as ``SecretStr``; neither ``repr`` nor ``str`` shows them, so a
  value cannot reach a log line or the database through these objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.errors import ConfigError

__all__ = [
    "DEFAULT_TOOL_TIMEOUT",
    "McpServer",
    "McpServerConfig",
    "parse_mcp_servers",
    "resolve_mcp_servers",
]

DEFAULT_TOOL_TIMEOUT = 30.0
MAX_TOOL_TIMEOUT = 600.0

# Slug-like: lower-case letters and digits, single - or _ between them. No "__" inside, so the
# "server__tool" function names built from it (see ``bot.tools.naming``) read unambiguously.
_SERVER_NAME = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
_SERVER_NAME_MAX = 32
# RFC 9110 token characters: what an HTTP header name may contain.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The MCP transport sets these itself; an operator's value would break the protocol.
_RESERVED_HEADERS = frozenset(
    {
        "accept",
        "connection",
        "content-length",
        "content-type",
        "host",
        "last-event-id",
        "mcp-method",
        "mcp-protocol-version",
        "mcp-session-id",
        "transfer-encoding",
    }
)

ToolName = Annotated[str, Field(min_length=1, max_length=128)]


class McpServerConfig(BaseModel):
    """One entry of ``MCP_SERVERS``: where an MCP server is and what the bot may do with it.

    Holds no secret: ``headers_from_env`` names environment variables, not their values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Unique, slug-like; the prefix of the function names the model sees."""
    url: str
    """The server's streamable-HTTP endpoint (``http://`` or ``https://``, no credentials)."""
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    """HTTP header name -> the environment variable holding its value."""
    allowed_tools: tuple[ToolName, ...] | None = None
    """Tools offered to the model; ``None`` (omitted) = every tool the server lists."""
    require_approval: bool | tuple[ToolName, ...] = False
    """``true`` = every call needs the asker's approval; a list = only those tools."""
    timeout: float = Field(default=DEFAULT_TOOL_TIMEOUT, gt=0, le=MAX_TOOL_TIMEOUT)
    """Seconds one tool call may take, connecting included."""

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if len(value) > _SERVER_NAME_MAX or not _SERVER_NAME.match(value):
            raise ValueError(
                f"name {value!r} must be 1-{_SERVER_NAME_MAX} lower-case letters, digits and "
                "single - or _ between them (for example orders or crm-eu)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL")
        # A credential in the URL would end up wherever URLs are shown; headers_from_env keeps
        # it in the environment instead.
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not contain credentials: use headers_from_env")
        return value

    @field_validator("headers_from_env")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for header, variable in value.items():
            if not _HEADER_NAME.match(header):
                raise ValueError(f"headers_from_env: {header!r} is not a valid HTTP header name")
            if header.lower() in _RESERVED_HEADERS:
                raise ValueError(f"headers_from_env: {header} is set by the MCP transport itself")
            if header.lower() in seen:
                raise ValueError(f"headers_from_env: {header} is given twice")
            seen.add(header.lower())
            if not isinstance(variable, str) or not _ENV_NAME.match(variable):
                raise ValueError(
                    f"headers_from_env: {header} must name an environment variable "
                    "(letters, digits and _), not hold a value"
                )
        return value

    @field_validator("allowed_tools", "require_approval")
    @classmethod
    def _unique(cls, value: Any) -> Any:
        if isinstance(value, tuple) and len(set(value)) != len(value):
            raise ValueError("lists a tool twice")
        return value

    @model_validator(mode="after")
    def _approval_within_allowed(self) -> McpServerConfig:
        if isinstance(self.require_approval, tuple) and self.allowed_tools is not None:
            outside = [t for t in self.require_approval if t not in self.allowed_tools]
            if outside:
                raise ValueError(
                    f"require_approval names {', '.join(outside)}, which allowed_tools leaves out"
                )
        return self

    def allows(self, tool: str) -> bool:
        """Whether the model may be offered (and may call) ``tool``."""
        return self.allowed_tools is None or tool in self.allowed_tools

    def needs_approval(self, tool: str) -> bool:
        if isinstance(self.require_approval, bool):
            return self.require_approval
        return tool in self.require_approval


@dataclass(frozen=True, slots=True)
class McpServer:
    """A declaration with its header values read from the environment (at start, once)."""

    config: McpServerConfig
    headers: Mapping[str, SecretStr] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def header_values(self) -> dict[str, str]:
        """The real header values, for the HTTP client only."""
        return {name: value.get_secret_value() for name, value in self.headers.items()}

    def secrets(self) -> list[str]:
        """The header values, so log redaction can scrub them."""
        return [v.get_secret_value() for v in self.headers.values() if v.get_secret_value()]

    def __repr__(self) -> str:
        # Header names only: the values are secrets.
        return f"McpServer(name={self.name!r}, headers={sorted(self.headers)!r})"

    __str__ = __repr__


def parse_mcp_servers(text: str) -> tuple[McpServerConfig, ...]:
    """Parse ``MCP_SERVERS`` (a JSON array of objects; blank = none).

    Raises ``ConfigError`` with one line naming the entry and the problem.
    """
    if not text.strip():
        return ()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, list):
        raise ConfigError("must be a JSON array of server objects")
    configs: list[McpServerConfig] = []
    for index, entry in enumerate(data, start=1):
        label = f"server {index}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" ({entry['name']})"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label} must be a JSON object")
        try:
            config = McpServerConfig.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(f"{label}: {_first_problem(exc)}") from None
        if any(c.name == config.name for c in configs):
            raise ConfigError(f"{label}: the name {config.name} is used twice")
        configs.append(config)
    return tuple(configs)


def resolve_mcp_servers(
    configs: Sequence[McpServerConfig], environ: Mapping[str, str]
) -> tuple[McpServer, ...]:
    """Read each server's header values from ``environ``.

    Raises ``ConfigError`` naming the server, the header and the missing (or empty) variable;
    the message never contains a value.
    """
    servers: list[McpServer] = []
    for config in configs:
        headers: dict[str, SecretStr] = {}
        for header, variable in config.headers_from_env.items():
            # Surrounding whitespace (a trailing newline from a secrets file) is not the value.
            value = environ.get(variable, "").strip()
            if not value:
                raise ConfigError(
                    f"MCP server {config.name}: header {header} is taken from the environment "
                    f"variable {variable}, which is not set"
                )
            if "\n" in value or "\r" in value:
                raise ConfigError(
                    f"MCP server {config.name}: the environment variable {variable} "
                    f"(header {header}) contains a line break"
                )
            headers[header] = SecretStr(value)
        servers.append(McpServer(config=config, headers=headers))
    return tuple(servers)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    kind = error.get("type")
    if kind == "missing":
        return f"{location} is required"
    if kind == "extra_forbidden":
        return f"unknown key {location!r}"
    if not location or message.startswith(location.split(".")[0]):
        return message
    return f"{location}: {message}"
