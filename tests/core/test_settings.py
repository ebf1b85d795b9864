"""Settings: the contract's names, defaults, and one plain line per problem."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_settings

REQUIRED = {
    "SLACK_BOT_TOKEN": "xoxb-123",
    "SLACK_SIGNING_SECRET": "secret",
    "OPENAI_API_KEY": "sk-abc",
    "DEFAULT_MODEL": "gpt-4o-mini",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "SLACK_APP_TOKEN",
        "BOT_MODE",
        "PORT",
        "HOST",
        "SLACK_API_URL",
        "OPENAI_BASE_URL",
        "DATABASE_URL",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "ADMIN_USER_IDS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults_are_the_contracts(env: pytest.MonkeyPatch) -> None:
    s = load_settings(env_file=None)
    assert s.effective_mode == "http"
    assert (s.host, s.port) == ("0.0.0.0", 3000)
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.openai_base_url == "https://api.xiexus.cn/v1"
    assert s.database_url == "sqlite+aiosqlite:///./data/bot.db"
    assert s.slack_command == "/ai"
    assert (s.log_level, s.log_format) == ("INFO", "json")
    assert s.admin_ids == frozenset()


def test_an_app_token_switches_the_default_mode_to_socket(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLACK_APP_TOKEN", "xapp-1-abc")
    env.delenv("SLACK_SIGNING_SECRET")
    assert load_settings(env_file=None).effective_mode == "socket"
    env.setenv("BOT_MODE", "http")
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is required in HTTP mode"):
        load_settings(env_file=None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OPENAI_API_KEY", None, "OPENAI_API_KEY is required"),
        ("DEFAULT_MODEL", None, "DEFAULT_MODEL is required"),
        ("SLACK_BOT_TOKEN", "xoxp-user", "SLACK_BOT_TOKEN is invalid: must be a bot token"),
        ("PORT", "99999", "PORT is invalid"),
        ("BOT_MODE", "carrier-pigeon", "BOT_MODE is invalid"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT is invalid"),
        ("OPENAI_BASE_URL", "file:///etc/passwd", "OPENAI_BASE_URL is invalid: must be an http"),
        ("SLACK_API_URL", "ftp://x", "SLACK_API_URL is invalid"),
        ("BOT_MODE", "socket", "SLACK_APP_TOKEN is required when BOT_MODE=socket"),
    ],
)
def test_each_problem_is_one_line_naming_the_setting(
    env: pytest.MonkeyPatch, name: str, value: str | None, message: str
) -> None:
    if value is None:
        env.delenv(name)
    else:
        env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_secrets_never_show_in_the_settings_repr(env: pytest.MonkeyPatch) -> None:
    text = repr(load_settings(env_file=None))
    assert "xoxb-123" not in text
    assert "sk-abc" not in text


def test_dotenv_is_read(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.delenv("DEFAULT_MODEL")
    dotenv = tmp_path / ".env"
    dotenv.write_text("DEFAULT_MODEL=from-dotenv\nSLACK_API_URL=http://127.0.0.1:9/api\n")
    s = load_settings(env_file=dotenv)
    assert s.default_model == "from-dotenv"
    assert s.slack_api_url == "http://127.0.0.1:9/api/"


def _reads_the_environment(source: str) -> bool:
    """Whether code (not text) touches ``os.environ``/``os.getenv`` or a settings loader."""
    for node in ast.walk(ast.parse(source)):
        os_attribute = (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "environb", "getenv"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        loader_import = isinstance(node, ast.ImportFrom) and (
            node.module in {"pydantic_settings", "dotenv"}
            or (node.module == "os" and {a.name for a in node.names} & {"environ", "getenv"})
        )
        if os_attribute or loader_import:
            return True
    return False


def test_only_bot_settings_reads_the_environment() -> None:
    # Configuration enters once: every other module gets explicit arguments. (MCP servers'
    # headers_from_env are resolved from a mapping the caller passes: bot/tools/config.py
    # reads no os.environ itself.)
    repo = Path(__file__).resolve().parents[2]
    found = sorted(
        str(path.relative_to(repo))
        for folder in ("bot", "storage")
        for path in (repo / folder).rglob("*.py")
        if _reads_the_environment(path.read_text())
    )
    assert found == ["bot/settings.py"]


def test_comma_lists_are_split_and_typed(env: pytest.MonkeyPatch) -> None:
    env.setenv("ADMIN_USER_IDS", " U1, U2,,U1 ")
    env.setenv("ALLOWED_MODELS", "gpt-a,gpt-b")
    s = load_settings(env_file=None)
    assert s.admin_user_ids == ("U1", "U2")
    assert s.admin_ids == frozenset({"U1", "U2"})
    assert s.allowed_models == ("gpt-a", "gpt-b")
