"""``python -m bot doctor``'s checks of the model endpoint: ``GET /models`` with the key, a
one-token call with ``DEFAULT_MODEL``, and per model whether the endpoint keeps chains, accepts
a trivial function tool and streams (stored with their time, as the service's probes are)."""

from __future__ import annotations

from bot.doctor_report import CheckFailed, CheckWarning
from bot.errors import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelTimeoutError,
    QuotaExceededError,
    ResponseIncompleteError,
)
from bot.settings import Settings

__all__ = ["ModelChecks"]


class ModelChecks:
    def __init__(self, settings: Settings) -> None:
        from bot.model.client import ResponsesClient
        from bot.model.retry import RetryPolicy

        self.settings = settings
        self.client = ResponsesClient(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            connect_timeout=settings.model_connect_timeout,
            total_timeout=60,
            retry=RetryPolicy(max_retries=0),
        )
        self.models: list[str] | None = None
        self.reachable = False

    def _common(self, exc: ModelError) -> CheckFailed | None:
        base = self.settings.openai_base_url
        if isinstance(exc, ModelAuthError):
            return CheckFailed(
                f"the model endpoint refused OPENAI_API_KEY ({exc.code})",
                f"check OPENAI_API_KEY: it must be a key that {base} accepts",
            )
        if isinstance(exc, ModelConnectionError | ModelTimeoutError):
            return CheckFailed(
                f"could not reach the model endpoint at {base} ({exc.code}: {exc})",
                "check OPENAI_BASE_URL (the base URL, usually ending in /v1: the service "
                "posts to OPENAI_BASE_URL/responses), the network or proxy, and "
                "MODEL_CONNECT_TIMEOUT",
            )
        return None

    async def models_list(self) -> str:
        try:
            self.models = await self.client.list_models()
        except ModelNotFoundError:
            self.reachable = True
            raise CheckWarning(
                "the endpoint has no model list (GET /models: 404); the settings form will "
                "ask for model names as free text"
            ) from None
        except ModelError as exc:
            common = self._common(exc)
            if common is not None:
                raise common from None
            self.reachable = True
            raise CheckWarning(
                f"GET /models failed ({exc.code}); the settings form will ask for model "
                "names as free text"
            ) from None
        self.reachable = True
        return f"the model endpoint answers with the key ({len(self.models)} models listed)"

    async def default_model(self) -> str:
        from bot.model.types import ResponseRequest

        model = self.settings.default_model
        listed = self.models is None or not self.models or model in self.models
        request = ResponseRequest(
            model=model,
            input="Reply with the single word OK.",
            max_output_tokens=16,
            truncation=None,
            store=False,
        )
        try:
            result = await self.client.create(request)
        except ResponseIncompleteError as exc:
            if exc.reason != "max_output_tokens":
                raise self._refused(model, exc) from None
            # It answered; 16 tokens were too few to finish (a reasoning model): fine here.
            return f"DEFAULT_MODEL={model} answers (a one-token test call)"
        except ModelError as exc:
            if not listed or isinstance(exc, ModelNotFoundError):
                raise self._unknown(model, exc) from None
            raise self._refused(model, exc) from None
        note = "" if listed else " (it is not in the endpoint's model list, but it answers)"
        tokens = result.usage.output_tokens
        return f"DEFAULT_MODEL={model} answers ({tokens} output tokens){note}"

    async def capabilities(self, model: str) -> str:
        """Chains kept / ignored / unknown, tools accepted, streaming works: one line."""
        from bot.model.probe import check_chains, check_streaming, check_tools

        chains = await check_chains(self.client, model)
        tools = await check_tools(self.client, model)
        streaming = await check_streaming(self.client, model)
        await self._remember(model, chains.chains, chains.detail, tools, streaming)
        parts = [
            {
                "kept": f"chains kept ({chains.detail})",
                "ignored": f"chains ignored ({chains.detail})",
                "unknown": f"chains unknown ({chains.detail})",
            }[chains.chains],
            {True: "tools accepted", False: "tools refused", None: "tools unknown"}[tools],
            "streaming works" if streaming else "streaming does not work",
        ]
        line = "; ".join(parts)
        if not streaming:
            raise CheckFailed(
                line,
                'every answer is streamed: check that the endpoint supports "stream": true for '
                f"{model} (a relay may need streaming turned on for it)",
            )
        if chains.chains == "ignored":
            state = self.settings.conversation_state
            effect = {
                "auto": "the service sends each thread's earlier messages itself for this "
                "model (transcript mode)",
                "transcript": "CONVERSATION_STATE=transcript already sends them itself",
                "chain": "CONVERSATION_STATE=chain: follow-ups will lose their context; set "
                "it to auto or transcript",
            }[state]
            raise CheckWarning(f"{line}: {effect}")
        if chains.chains == "unknown":
            raise CheckWarning(line)
        return line

    async def _remember(
        self, model: str, chains: str, detail: str, tools: bool | None, streaming: bool
    ) -> None:
        """Store what was found, for the service (best effort: the database check already
        said whether the database works)."""
        from bot.conversation import endpoint_key
        from storage.conversation_state import ConversationStateStore
        from storage.engine import create_engine, create_session_factory
        from storage.repositories import Store

        engine = create_engine(self.settings.database_url)
        try:
            state = ConversationStateStore(Store(create_session_factory(engine)))
            endpoint = endpoint_key(self.settings.openai_base_url)
            known = await state.capability(endpoint=endpoint, model=model)
            if chains == "unknown" and known is not None:
                chains, detail = known.chains, known.detail or detail  # a failed check teaches
            await state.record_capability(
                endpoint=endpoint,
                model=model,
                chains=chains,
                source="doctor",
                tools=tools,
                streaming=streaming,
                detail=detail,
            )
        except Exception as exc:  # reporting must not fail on storing
            print(f"     (not stored: {type(exc).__name__})", flush=True)
        finally:
            await engine.dispose()

    def _unknown(self, model: str, exc: ModelError) -> CheckFailed:
        offered = ""
        if self.models:
            shown = ", ".join(self.models[:20]) + (" …" if len(self.models) > 20 else "")
            offered = f": it offers {shown}"
        return CheckFailed(
            f"the endpoint does not know DEFAULT_MODEL={model} ({exc.code})",
            f"set DEFAULT_MODEL to a model the endpoint offers{offered}",
        )

    def _refused(self, model: str, exc: ModelError) -> CheckFailed:
        common = self._common(exc)
        if common is not None:
            return common
        if isinstance(exc, QuotaExceededError):
            fix = "the key's account has no quota left: add credit or use another key"
        elif isinstance(exc, ModelRateLimitError):
            fix = "the endpoint is rate limiting this key: wait a minute and run doctor again"
        elif isinstance(exc, ModelHTTPError) and exc.status_code >= 500:
            fix = "the endpoint is failing on its side: try again later or ask its operator"
        else:
            fix = (
                "check that DEFAULT_MODEL speaks the Responses API at OPENAI_BASE_URL "
                "and that the key may use it"
            )
        return CheckFailed(
            f"a one-token test call with DEFAULT_MODEL={model} failed ({exc.code}: "
            f"{str(exc)[:200]})",
            fix,
        )
