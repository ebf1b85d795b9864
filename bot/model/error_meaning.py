"""What a model failure means, read from every field an endpoint or relay may have kept.

The one place that decides :class:`~bot.errors.ErrorMeaning`, for HTTP error answers
(``bot.model.http_errors``) and for failures inside a 200 stream or JSON body
(``bot.model.accumulator``) alike, so a context overflow or a lost chain gets the same handling
however it arrived.

Why the message text is read at all: relays keep the upstream's meaning in different places.

- OpenAI and Azure: ``{"error": {"message", "type", "param", "code"}}`` with a specific ``code``
  (``previous_response_not_found``, ``context_length_exceeded``, ``model_not_found``,
  ``insufficient_quota``, ``content_filter``); Azure also sends ``"code": "429"`` for its token
  rate limit and ``DeploymentNotFound`` for an unknown deployment.
- LiteLLM's proxy: ``"code": "400"`` (the HTTP status as a string) and the upstream error only
  inside ``message`` (``litellm.BadRequestError: OpenAIException - …``,
  ``litellm.ContextWindowExceededError: …``, ``Invalid model name passed in model=…``).
- one-api / new-api relays: ``"code": "bad_response_status_code"`` with the upstream's status,
  or their own codes (``model_not_found`` with "No available channel for model …" as a 503,
  ``insufficient_user_quota`` / ``pre_consume_token_quota_failed`` as 403).

A code that says nothing (a number, ``bad_response_status_code``, ``upstream_error``) is not
trusted over the message; a specific code is. The result is conservative: when nothing matches
the meaning is ``UNKNOWN`` and callers treat the failure as what its status says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.errors import ErrorMeaning

__all__ = ["ErrorFacts", "canonical_code", "classify", "is_vague_code", "refused_tool"]


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """The fields of one error, as sent (``status`` is None for a failure inside a stream)."""

    status: int | None = None
    code: str | None = None
    type: str | None = None
    param: str | None = None
    message: str | None = None


# Codes that wrap a failure without naming it: the meaning must come from elsewhere.
_VAGUE_CODES = frozenset(
    {
        "bad_response_status_code",
        "bad_response",
        "upstream_error",
        "api_error",
        "openai_error",
        "new_api_error",
        "one_api_error",
        "invalid_request_error",
        "invalid_request",
        "bad_request",
        "error",
        "none",
        "null",
        "response_failed",
        "response.failed",
    }
)

_LOST_CHAIN_CODES = frozenset({"previous_response_not_found"})
_CONTEXT_CODES = frozenset(
    {"context_length_exceeded", "contextwindowexceedederror", "string_above_max_length"}
)
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "insufficient_user_quota",
        "pre_consume_token_quota_failed",
        "billing_hard_limit_reached",
        "insufficientquota",
        "quota_exceeded",
    }
)
_RATE_CODES = frozenset(
    {
        "rate_limit_exceeded",
        "rate_limited",
        "ratelimiterror",
        "rate_limit_error",
        "too_many_requests",
        "request_concurrency_limited",
        "requests",
        "tokens",
    }
)
_UNKNOWN_MODEL_CODES = frozenset(
    {"model_not_found", "deploymentnotfound", "deployment_not_found", "model_not_exist"}
)
_AUTH_CODES = frozenset(
    {"invalid_api_key", "authentication_error", "unauthorized", "invalid_token", "permissiondenied"}
)
_FILTER_CODES = frozenset(
    {"content_filter", "content_policy_violation", "responsibleaipolicyviolation"}
)
_SETTING_CODES = frozenset(
    {
        "unsupported_parameter",
        "unsupported_value",
        "integer_below_min_value",
        "integer_above_max_value",
        "decimal_below_min_value",
        "decimal_above_max_value",
    }
)
# Request fields that come from a channel's settings: a refusal naming one is a settings problem.
_SETTING_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_output_tokens",
        "reasoning",
        "reasoning.effort",
        "reasoning.summary",
        "truncation",
        "instructions",
    }
)
_SERVER_TYPES = frozenset({"server_error", "internal_error", "internalservererror"})

# A hosted tool the endpoint or model does not offer: "Tool 'web_search' is not supported with
# this model", "Hosted tool 'code_interpreter' is not supported", "Invalid value: 'file_search'".
_TOOL_NAME = re.compile(r"\b(web_search(?:_preview)?|file_search|code_interpreter)\b")
_TOOL_REFUSED = re.compile(
    r"not supported|unsupported|not (?:available|enabled|allowed)|invalid (?:value|tool)"
    r"|unknown (?:tool|parameter)|does not support",
    re.IGNORECASE,
)


def refused_tool(message: str | None) -> str | None:
    """The hosted tool a refusal names (``web_search``…), or None."""
    found = _TOOL_NAME.search(message or "")
    if found is not None:
        return found.group(1).removesuffix("_preview")
    return None


# "Previous response with id 'resp_…' not found." (OpenAI), and what relays make of it.
_LOST_CHAIN_TEXT = re.compile(
    r"previous[ _-]?response[^\n]{0,160}?(?:not[ _-]?found|does not exist|could not be found"
    r"|no longer (?:exists|available)|expired|unknown)"
    r"|previous_response_not_found",
    re.IGNORECASE,
)
_CONTEXT_TEXT = re.compile(
    r"context_length_exceeded|context ?window ?exceeded|maximum context length"
    r"|exceeds? (?:the )?(?:model'?s? )?context (?:window|length)|context length (?:of|is)"
    r"|prompt is too long|input is too long for|too many (?:input )?tokens in (?:the )?prompt",
    re.IGNORECASE,
)
_QUOTA_TEXT = re.compile(
    r"insufficient_quota|insufficient_user_quota|exceeded your current quota"
    r"|quota (?:has been |is )?(?:exhausted|used up)|insufficient (?:quota|balance|credits?)"
    r"|credit balance is too low|billing hard limit|额度不足|预扣费额度失败|余额不足",
    re.IGNORECASE,
)
_RATE_TEXT = re.compile(
    r"rate[ _-]?limit|too many requests|\bTPM\b|\bRPM\b|concurrency limit|请求数限制|负载已饱和",
    re.IGNORECASE,
)
_UNKNOWN_MODEL_TEXT = re.compile(
    r"invalid model name passed in model=|no available channel for model"
    r"|model[^\n]{0,80}?(?:does not exist|not found|is not supported by any)"
    r"|the api deployment for this resource does not exist|unknown model|no such model",
    re.IGNORECASE,
)
_FILTER_TEXT = re.compile(r"content management policy|content[ _]policy|content[ _]filter", re.I)
_SETTING_TEXT = re.compile(
    r"unsupported (?:parameter|value)[^\n]{0,40}?'?(?:temperature|top_p|max_output_tokens"
    r"|reasoning(?:\.effort|\.summary)?|truncation)",
    re.IGNORECASE,
)


def _norm(value: str | None) -> str:
    return (value or "").strip().lower()


def is_vague_code(code: str | None) -> bool:
    """Whether ``code`` is missing or only wraps the failure (a status number, a relay's
    ``bad_response_status_code``), so it says nothing about what went wrong."""
    value = _norm(code)
    return not value or value.isdigit() or value in _VAGUE_CODES


def classify(facts: ErrorFacts) -> ErrorMeaning:
    """The meaning of one error; see the module docstring for the shapes it reads."""
    code, kind, param = _norm(facts.code), _norm(facts.type), _norm(facts.param)
    text = " ".join(part for part in (facts.message, facts.code, facts.type) if part)
    status = facts.status
    # Most specific first: a lost chain reads like "not found", a context overflow like a bad
    # request, a quota like a rate limit.
    if (
        code in _LOST_CHAIN_CODES
        or param == "previous_response_id"
        or _LOST_CHAIN_TEXT.search(text)
    ):
        return ErrorMeaning.LOST_CHAIN
    if code in _CONTEXT_CODES or kind in _CONTEXT_CODES or _CONTEXT_TEXT.search(text):
        return ErrorMeaning.CONTEXT_LENGTH
    if status == 402 or code in _QUOTA_CODES or kind in _QUOTA_CODES or _QUOTA_TEXT.search(text):
        return ErrorMeaning.QUOTA
    if code in _AUTH_CODES or kind in _AUTH_CODES or status in (401, 403) or code in ("401", "403"):
        return ErrorMeaning.AUTH
    if code in _FILTER_CODES or kind in _FILTER_CODES or _FILTER_TEXT.search(text):
        return ErrorMeaning.CONTENT_FILTER
    if status == 429 or code == "429" or code in _RATE_CODES or kind in _RATE_CODES:
        return ErrorMeaning.RATE_LIMIT
    if code in _UNKNOWN_MODEL_CODES or _UNKNOWN_MODEL_TEXT.search(text):
        return ErrorMeaning.UNKNOWN_MODEL
    if status == 404 or (param == "model" and (status is None or 400 <= status < 500)):
        # OpenAI answers an unknown model with 400 + param "model"; others with 404.
        return ErrorMeaning.UNKNOWN_MODEL
    if _RATE_TEXT.search(text):
        return ErrorMeaning.RATE_LIMIT
    client_error = status is None or 400 <= status < 500
    named = param.startswith("tools") or (
        refused_tool(facts.message) is not None and _TOOL_REFUSED.search(text) is not None
    )
    if client_error and named:
        return ErrorMeaning.UNSUPPORTED_TOOL
    if code in _SETTING_CODES or param in _SETTING_PARAMS or _SETTING_TEXT.search(text):
        return ErrorMeaning.BAD_SETTING
    if (status is not None and status >= 500) or kind in _SERVER_TYPES or code in _SERVER_TYPES:
        return ErrorMeaning.SERVER
    return ErrorMeaning.UNKNOWN


_CANONICAL = {
    ErrorMeaning.LOST_CHAIN: "previous_response_not_found",
    ErrorMeaning.CONTEXT_LENGTH: "context_length_exceeded",
    ErrorMeaning.UNKNOWN_MODEL: "model_not_found",
    ErrorMeaning.RATE_LIMIT: "rate_limit_exceeded",
    ErrorMeaning.QUOTA: "insufficient_quota",
    ErrorMeaning.AUTH: "unauthorized",
    ErrorMeaning.CONTENT_FILTER: "content_filter",
    ErrorMeaning.BAD_SETTING: "unsupported_parameter",
    ErrorMeaning.SERVER: "server_error",
}


def canonical_code(code: str | None, meaning: ErrorMeaning) -> str | None:
    """The code to store and count: the endpoint's own when it names the failure, else the
    usual OpenAI code for ``meaning`` (``"400"`` from LiteLLM says nothing a dashboard can use),
    else whatever the endpoint sent."""
    if not is_vague_code(code):
        return code
    return _CANONICAL.get(meaning, code)
