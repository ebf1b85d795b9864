"""Configuration: the one place that reads the environment and ``.env``.

Every name here is a public contract (``.env.example`` lists them all). Nothing reads the
environment at import time; the CLI calls ``load_settings()`` (the service) or
``load_storage_settings()`` (commands that need only the database) and passes values down as
explicit keyword arguments. pydantic-settings reads and types every variable; comma-separated
lists (``ALLOWED_MODELS``, ``ADMIN_USER_IDS``) are split by ``CommaList`` because
pydantic-settings decodes list-typed variables only from JSON. ``MCP_SERVERS`` and
``MODEL_PRICES`` are JSON, but stay text decoded by their own parsers: a blank value means
"none" (``.env.example`` has them blank), which pydantic-settings' JSON decoding refuses, and
their errors name the entry at fault.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError
from bot.pricing import ModelPrice, parse_prices
from bot.tools.config import McpServerConfig, parse_mcp_servers

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "CommaList",
    "Settings",
    "StorageSettings",
    "load_settings",
    "load_storage_settings",
]

DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant in a Slack workspace. Answer clearly and concisely. "
    "Use Markdown for formatting when it helps."
)


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    return value


CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]
"""A comma-separated variable as its names, blanks and repeats dropped (``a, b,,a`` → a, b)."""


class StorageSettings(BaseSettings):
    """What the commands that only touch the database need (``migrate``, ``config``,
    ``usage``, ``prune``): no Slack or model keys. ``Settings`` adds the rest."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    database_url: str = "sqlite+aiosqlite:///./data/bot.db"
    retention_days: int = Field(default=90, ge=0)
    model_prices: str = ""
    default_model: str | None = None
    default_instructions: str = DEFAULT_INSTRUCTIONS
    allowed_models: CommaList = ()
    """``ALLOWED_MODELS``: the models admins may pick, in Slack and in the CLI alike."""
    conversation_state: Literal["auto", "chain", "transcript"] = "auto"
    """``CONVERSATION_STATE``: the default of the ``conversation_state`` channel setting."""
    mcp_servers: str = ""
    """``MCP_SERVERS``: a JSON array (see ``bot.tools.config`` and docs/tools.md); channels
    enable servers by these names."""

    @field_validator("mcp_servers")
    @classmethod
    def _mcp_servers_shape(cls, value: str) -> str:
        try:
            parse_mcp_servers(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def mcp_server_configs(self) -> tuple[McpServerConfig, ...]:
        """``MCP_SERVERS`` parsed (header values are resolved at start, not here)."""
        return parse_mcp_servers(self.mcp_servers)

    @field_validator("conversation_state", mode="before")
    @classmethod
    def _state_choice(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or "auto"
        return value

    @field_validator("model_prices")
    @classmethod
    def _prices_shape(cls, value: str) -> str:
        parse_prices(value)  # raises ValueError naming the problem
        return value

    @property
    def prices(self) -> dict[str, ModelPrice]:
        """``MODEL_PRICES`` parsed (empty: no cost estimates)."""
        return parse_prices(self.model_prices)


class Settings(StorageSettings):
    """The service's settings. Field names map to upper-case environment variables."""

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_state_secret: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    bot_mode: Literal["socket", "http"] | None = None
    host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces by design
    port: int = Field(default=3000, ge=0, le=65535)
    slack_api_url: str = "https://slack.com/api/"
    slack_command: str = "/ai"
    admin_user_ids: CommaList = ()
    slack_native_streaming: bool = True
    stream_update_interval: float = Field(default=1.0, ge=0.1, le=10)
    slack_final_deadline: float = Field(default=600.0, ge=1, le=3600)
    """Seconds an answer's final text is retried against Slack's rate limits before the rest
    goes in a new message."""
    slack_replicas: int = Field(default=1, ge=1, le=100)
    """Replicas sharing one Slack app: each schedules its calls within 1/N of every budget."""

    # Model endpoint
    openai_base_url: str = "https://api.xiexus.cn/v1"
    openai_api_key: SecretStr
    default_model: str  # required by the service (the storage commands do without)
    model_connect_timeout: float = Field(default=10.0, gt=0)
    model_idle_timeout: float = Field(default=60.0, gt=0)
    model_total_timeout: float = Field(default=600.0, gt=0)
    model_max_retries: int = Field(default=2, ge=0, le=10)
    conversation_probe: bool = True

    # What the model sees
    thread_context_chars: int = Field(default=40_000, ge=1_000, le=1_000_000)
    file_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    file_max_count: int = Field(default=5, ge=0, le=20)
    safety_identifier_salt: SecretStr | None = None

    # Tools: MCP servers are declared in StorageSettings (the CLI checks channel settings
    # against them); the loop's bounds are here.
    tool_max_rounds: int = Field(default=8, ge=1, le=50)
    """Tool rounds per turn before the model is asked to answer without tools."""
    tool_turn_timeout: float = Field(default=300.0, gt=0, le=3600)
    """Seconds all tool calls of one turn may take together (each call also has its
    server's ``timeout``)."""

    # Storage (DATABASE_URL and RETENTION_DAYS: see StorageSettings)
    thread_lock_wait: float = Field(default=300.0, gt=0)

    # Shutdown: seconds turns in flight may take to finish after SIGTERM
    shutdown_grace: float = Field(default=30.0, ge=0, le=3600)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    log_message_content: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("bot_mode", "log_format", mode="before")
    @classmethod
    def _lower_choice(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_client_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("slack_client_secret", "slack_state_secret")
    @classmethod
    def _blank_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("slack_api_url", "openai_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Only http(s): a file:// or other scheme would send a secret somewhere unexpected.
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_trailing_slash(cls, value: str) -> str:
        # slack_sdk joins the method name straight onto the base URL.
        return value if value.endswith("/") else value + "/"

    @field_validator("default_model", "openai_api_key", mode="before")
    @classmethod
    def _not_blank(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("slack_command")
    @classmethod
    def _command_shape(cls, value: str) -> str:
        if not value.startswith("/") or len(value) < 2:
            raise ValueError("must start with / (for example /ai)")
        return value

    @model_validator(mode="after")
    def _mode_requirements(self) -> Settings:
        if (self.slack_client_id is None) != (self.slack_client_secret is None):
            raise ValueError(
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET must be set together "
                "(multi-workspace install)"
            )
        if self.slack_bot_token is None and not self.oauth_enabled:
            raise ValueError(
                "SLACK_BOT_TOKEN is required: set it in the environment or in .env "
                "(or set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for a multi-workspace install)"
            )
        mode = self.effective_mode
        if mode == "socket" and self.slack_app_token is None:
            raise ValueError("SLACK_APP_TOKEN is required when BOT_MODE=socket")
        if mode == "http" and (
            self.slack_signing_secret is None or not self.slack_signing_secret.get_secret_value()
        ):
            raise ValueError("SLACK_SIGNING_SECRET is required in HTTP mode")
        return self

    @property
    def effective_mode(self) -> Literal["socket", "http"]:
        if self.bot_mode is not None:
            return self.bot_mode
        return "socket" if self.slack_app_token is not None else "http"

    @property
    def oauth_enabled(self) -> bool:
        """Multi-workspace install: the OAuth flow is served and tokens come from installations."""
        return self.slack_client_id is not None and self.slack_client_secret is not None

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(self.admin_user_ids)

    @property
    def identity_salt(self) -> str:
        """Salt for ``safety_identifier``: the setting, else derived from the bot token (stable
        while the token is, and never sent anywhere: only hashes of it are)."""
        if self.safety_identifier_salt is not None:
            return self.safety_identifier_salt.get_secret_value()
        source = self.slack_bot_token or self.slack_client_secret
        token = source.get_secret_value().encode() if source is not None else b""
        return hashlib.sha256(b"safety-identifier:" + token).hexdigest()

    def tool_secrets(self, environ: Mapping[str, str]) -> list[str]:
        """The values of the variables ``MCP_SERVERS``' ``headers_from_env`` name (read from
        ``environ``, see ``tool_environment``), so log redaction scrubs them too."""
        names = {v for c in self.mcp_server_configs for v in c.headers_from_env.values()}
        return [environ[n] for n in sorted(names) if environ.get(n)]

    def secrets(self) -> list[str]:
        """Every secret value, so log redaction can scrub them."""
        values = [self.openai_api_key]
        values += [
            s
            for s in (
                self.slack_bot_token,
                self.slack_signing_secret,
                self.slack_app_token,
                self.safety_identifier_salt,
                self.slack_client_secret,
                self.slack_state_secret,
            )
            if s is not None
        ]
        found = [v.get_secret_value() for v in values if v.get_secret_value()]
        database_password = _url_password(self.database_url)
        return found + ([database_password] if database_password else [])


def _url_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Build ``Settings`` or raise ``ConfigError`` with one plain line naming the problem."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def tool_environment(env_file: str | Path | None = ".env") -> dict[str, str]:
    """Where ``MCP_SERVERS``' ``headers_from_env`` variables are read: the process environment
    over the ``.env`` file's values, as ``Settings`` reads its own (so a key kept in ``.env``
    works). Values are handed to ``bot.tools.config.resolve_mcp_servers`` only."""
    from dotenv import dotenv_values

    values = dotenv_values(env_file) if env_file is not None and Path(env_file).exists() else {}
    return {**{k: v for k, v in values.items() if v is not None}, **os.environ}


def load_storage_settings(env_file: str | Path | None = ".env") -> StorageSettings:
    """Build ``StorageSettings`` (no Slack or model keys needed), or raise ``ConfigError``."""
    try:
        return StorageSettings(_env_file=env_file)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    # A value that is set but wrong says more than a missing one (and ``Settings`` lists the
    # storage fields it inherits first, so field order alone would not put it first).
    error = min(exc.errors(), key=lambda e: e.get("type") == "missing")
    location = error.get("loc") or ()
    if location:
        name = str(location[0]).upper()
        if error.get("type") == "missing":
            return f"{name} is required: set it in the environment or in .env"
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        return f"{name} is invalid: {message}"
    # Model-level checks name their variable themselves.
    return str(error.get("msg", "invalid configuration")).removeprefix("Value error, ")
