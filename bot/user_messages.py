"""The one table of what a user is told when a turn fails.

Sentences are short, plain, say what happened and what to do, and never include exception
text from a library (which could carry a URL, a request body or a secret). Each is a text of
the catalogue (``bot.i18n``), marked with ``N_`` here and shown in the reader's language.
"""

from __future__ import annotations

from bot.errors import (
    ContextError,
    ErrorMeaning,
    ModelBadRequestError,
    ModelConnectionError,
    ModelError,
    ModelServerError,
    ModelStreamError,
    ModelTimeoutError,
    ResponseFailedError,
    ResponseIncompleteError,
    StreamProtocolError,
)
from bot.i18n import N_, t
from bot.model.error_meaning import refused_tool

__all__ = ["INTERNAL_ERROR", "context_message", "tool_refused_message", "user_message"]

INTERNAL_ERROR = N_(
    ":warning: Something went wrong on my side while answering. "
    "Please send your message again; if it keeps happening, tell your Slack admin."
)

_INCOMPLETE_REASONS = {
    "max_output_tokens": N_(
        "The answer reached the channel's length limit (max_output_tokens) and was cut short. "
        "Ask me to continue, or ask an admin to raise the limit."
    ),
    "content_filter": N_("The model service stopped this answer with its content filter."),
}

# What the failure means decides first, however it arrived (an HTTP error, a relay's rewritten
# code, a ``response.failed`` inside a 200 stream): see ``bot.model.error_meaning``.
_BY_MEANING: dict[ErrorMeaning, str] = {
    ErrorMeaning.QUOTA: N_(
        "The model service says this workspace's quota is used up. "
        "An admin needs to check the model account's billing; I can't answer until then."
    ),
    ErrorMeaning.RATE_LIMIT: N_(
        "The model service is rate-limiting me right now. Please wait a minute and send your "
        "message again."
    ),
    ErrorMeaning.CONTEXT_LENGTH: N_(
        "This conversation has grown too long for the model. Please start a new thread "
        "(mention me in the channel) to continue, or shorten your message."
    ),
    ErrorMeaning.UNKNOWN_MODEL: N_(
        "The model configured for this channel was not found at the model service. "
        "An admin can pick another one with the settings command."
    ),
    ErrorMeaning.AUTH: N_(
        "The model service refused my credentials. An admin needs to check the bot's API key."
    ),
    ErrorMeaning.CONTENT_FILTER: N_(
        "The model service's content filter refused this request. Please rephrase it."
    ),
    ErrorMeaning.LOST_CHAIN: N_(
        "The model service has lost this conversation and I couldn't re-send it. "
        "Please start a new thread (mention me in the channel) to continue."
    ),
}

# Then the type, most specific first: the first isinstance match wins.
_TABLE: list[tuple[type[ModelError], str]] = [
    (
        ModelBadRequestError,
        N_(
            "The model service refused this request. An admin can check the channel's "
            "settings (model, temperature, token limits)."
        ),
    ),
    (
        ModelServerError,
        N_("The model service had an internal error. Please try again in a moment."),
    ),
    (
        ModelTimeoutError,
        N_("The model service took too long to answer. Please try again in a moment."),
    ),
    (
        ModelConnectionError,
        N_(
            "I couldn't reach the model service. Please try again in a moment; if it keeps "
            "happening, tell your Slack admin."
        ),
    ),
    (
        ResponseFailedError,
        N_("The model service failed while writing this answer. Please try again."),
    ),
    (
        StreamProtocolError,
        N_("The answer from the model service was cut off or garbled. Please try again."),
    ),
    (ModelStreamError, N_("The answer from the model service broke off. Please try again.")),
]
_INCOMPLETE = N_("The model service stopped before finishing this answer.")
_TOO_LARGE = N_(
    "This message (with the conversation so far) is too large for the model service. "
    "Please shorten it, or start a new thread."
)
_INTERRUPTED = N_("The connection to the model service broke off mid-answer. Please try again.")
_IDLE = N_("The model service stopped sending mid-answer. Please try again.")
_OTHER = N_(
    "The model service returned an error. Please try again; if it keeps happening, tell your "
    "Slack admin."
)


def user_message(exc: ModelError) -> str:
    """The sentence for ``exc`` in the reader's language, prefixed with a warning sign."""
    if exc.meaning is ErrorMeaning.UNSUPPORTED_TOOL:
        # The one sentence with a placeholder: the tool the endpoint refused.
        return f":warning: {tool_refused_message(refused_tool(str(exc)))}"
    return f":warning: {t(_sentence(exc))}"


def _sentence(exc: ModelError) -> str:
    if isinstance(exc, ResponseIncompleteError):
        return _INCOMPLETE_REASONS.get(exc.reason or "", _INCOMPLETE)
    if exc.code == "request_too_large":
        return _TOO_LARGE  # a 413: the size of this request, not (only) the thread's length
    if exc.code == "stream_interrupted":
        return _INTERRUPTED
    if isinstance(exc, ModelTimeoutError) and exc.kind == "idle":
        return _IDLE
    if exc.meaning in _BY_MEANING:
        return _BY_MEANING[exc.meaning]
    for error_type, text in _TABLE:
        if isinstance(exc, error_type):
            return text
    return _OTHER


_NOT_A_MEMBER = N_("I'm not a member of this channel. Invite me (`/invite`) and ask again.")
_TOOL_REFUSED = N_(
    "The model service refused one of the tools enabled in this channel. An admin can "
    "check `hosted_tools` and `mcp_servers` with the settings command."
)
_TOOL_REFUSED_NAMED = N_(
    "The model service refused the `{tool}` tool enabled in this channel: this model or "
    "endpoint does not support it. An admin can turn it off (`hosted_tools`) or pick "
    "another model with the settings command."
)


def tool_refused_message(tool: str | None) -> str:
    """The sentence for a request refused because of a tool enabled in the channel."""
    if tool is None:
        return t(_TOOL_REFUSED)
    return t(_TOOL_REFUSED_NAMED, tool=tool)


_CONTEXT_REASONS = {
    "not_in_channel": _NOT_A_MEMBER,
    "channel_not_found": _NOT_A_MEMBER,
    "missing_scope": N_(
        "The app lacks a Slack permission it needs to read threads. A Slack admin needs to "
        "reinstall or update the app."
    ),
    "not_installed": N_("The app is no longer installed in this workspace."),
}
_CONTEXT_OTHER = N_("Slack did not let me read it just now. Please try again in a minute.")


def context_message(exc: ContextError) -> str:
    """The sentence for a turn whose model input could not be built."""
    reason = t(_CONTEXT_REASONS.get(exc.code, _CONTEXT_OTHER))
    return ":warning: " + t(
        "I couldn't read this thread, so I can't answer. {reason}", reason=reason
    )
