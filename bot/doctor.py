"""``python -m bot doctor``: checks what usually goes wrong and says how to fix it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_sdk.errors import SlackApiError

from bot.errors import ConfigError, ModelAuthError, ModelError
from bot.settings import Settings, load_settings

__all__ = ["run_doctor"]

Check = Callable[[Settings], Awaitable[str]]


async def _database(settings: Settings) -> str:
    from storage.engine import create_engine, create_session_factory
    from storage.repositories import Store

    engine = create_engine(settings.database_url)
    try:
        store = Store(create_session_factory(engine))
        await store.ping()
        if not await store.schema_is_current():
            raise RuntimeError("migrations are not applied: run `python -m bot migrate`")
    finally:
        await engine.dispose()
    return "database answers and is migrated"


async def _slack(settings: Settings) -> str:
    from bot.service import make_slack_client
    from bot.slack.identity import fetch_identity

    try:
        identity = await fetch_identity(make_slack_client(settings))
    except SlackApiError as exc:
        raise RuntimeError(
            f"Slack refused the bot token ({exc.response.get('error')}): copy the Bot User "
            "OAuth Token (xoxb-…) from the app's OAuth & Permissions page"
        ) from None
    return f"Slack token works (bot user {identity.user_id} in workspace {identity.team_id})"


async def _model(settings: Settings) -> str:
    from bot.model.client import ResponsesClient

    async with ResponsesClient(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        connect_timeout=settings.model_connect_timeout,
        total_timeout=30,
    ) as client:
        try:
            models = await client.list_models()
        except ModelAuthError:
            raise RuntimeError("the model endpoint refused OPENAI_API_KEY: check the key") from None
        except ModelError as exc:
            raise RuntimeError(
                f"the model endpoint at {settings.openai_base_url} did not answer ({exc.code}): "
                "check OPENAI_BASE_URL"
            ) from None
    if models and settings.default_model not in models:
        return (
            f"model endpoint answers, but DEFAULT_MODEL={settings.default_model} is not in its "
            f"model list ({len(models)} models)"
        )
    return f"model endpoint answers ({len(models)} models listed)"


async def run_doctor() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"FAIL configuration: {exc}")
        return 1
    print("ok   configuration loads")
    failed = False
    checks: list[tuple[str, Check]] = [
        ("database", _database),
        ("slack", _slack),
        ("model", _model),
    ]
    for name, check in checks:
        try:
            print(f"ok   {name}: {await check(settings)}")
        except Exception as exc:
            failed = True
            print(f"FAIL {name}: {exc}")
    return 1 if failed else 0
