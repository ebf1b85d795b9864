"""What the turn itself tells a thread: the sentences of the core, in one place.

The sentences for a failed model call or an unreadable input live in ``bot.user_messages``;
these are the ones the turn's own rules produce (the database refused, a busy thread, a
shutdown, a stop, a re-sent conversation, a limit reached). Each is a text of the catalogue
(``bot.i18n``): the constants are marked with ``N_`` and shown through ``t``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.i18n import N_, clock, t, tn
from storage.records import LimitReached

__all__ = [
    "BUSY_NOTE",
    "DENIED_OUTPUT",
    "OUT_OF_TIME_OUTPUT",
    "RESEND_FAILED_NOTE",
    "RESENT_NOTE",
    "ROUND_LIMIT_NOTE",
    "ROUND_LIMIT_OUTPUT",
    "SHUTDOWN_NOTE",
    "STOPPED_NOTE",
    "STORAGE_NOTE",
    "limit_notice",
]

STORAGE_NOTE = N_(
    ":warning: I couldn't save this conversation right now, so I can't answer. "
    "Please try again in a minute; if it keeps happening, tell your Slack admin."
)
BUSY_NOTE = N_(
    ":warning: This thread was busy for too long and I couldn't get to your message. "
    "Please send it again."
)
SHUTDOWN_NOTE = N_(
    ":warning: The bot is restarting and could not finish this answer. "
    "Please send your message again in a minute."
)
STOPPED_NOTE = N_("_(Stopped. The answer above is incomplete.)_")
RESENT_NOTE = N_(
    "The model service did not have this thread's earlier messages, so I sent them again."
)
RESEND_FAILED_NOTE = N_(
    ":warning: The model service answered without this thread's earlier messages, so this "
    "answer may miss what was said before. I'll send them along from now on."
)

ROUND_LIMIT_NOTE = N_(
    "_(I stopped using tools here: this answer reached its limit of tool rounds. "
    "Ask me to continue if you need more.)_"
)

# What the model reads instead of a tool's output (function_call_output): plain English for
# the model, not shown to people unless the model quotes it.
DENIED_OUTPUT = (
    "The user denied this tool call (or did not answer in time); the tool was not run. "
    "Do not call it again for this request unless the user asks."
)
ROUND_LIMIT_OUTPUT = (
    "Error: the limit of tool rounds for this answer was reached; the tool was not run. "
    "Answer now with what you have, and say what is missing."
)
OUT_OF_TIME_OUTPUT = (
    "Error: the time for tool calls in this answer ran out; the tool was not run. "
    "Answer now with what you have, and say what is missing."
)


def limit_notice(limit: LimitReached) -> str:
    """What the person is told when a budget or limit stops their question (in the reader's
    language, ``bot.i18n``)."""
    if limit.kind == "user_hourly_requests":
        return tn(
            ":hourglass: You have asked {count} question in the last hour; the limit is "
            "{limit}. You can ask again after {when}; an admin can raise the limit "
            "(`user_hourly_requests`).",
            ":hourglass: You have asked {count} questions in the last hour; the limit is "
            "{limit}. You can ask again after {when}; an admin can raise the limit "
            "(`user_hourly_requests`).",
            limit.used,
            limit=limit.limit,
            when=clock(_minute_up(limit.again_at)),
        )
    reset = clock(_next_midnight())
    if limit.held:
        used = t(
            "{used} used today, {held} held by answers in progress",
            used=limit.used,
            held=limit.held,
        )
    else:
        used = t("{used} used today", used=limit.used)
    if limit.kind == "daily_token_budget":
        return t(
            ":no_entry: This channel has used its daily budget of {limit} tokens ({used}). "
            "It resets at {reset}; an admin can raise it with the settings command "
            "(`daily_token_budget`).",
            limit=limit.limit,
            used=used,
            reset=reset,
        )
    return t(
        ":no_entry: This workspace has used its daily budget of {limit} tokens ({used}). "
        "It resets at {reset}; an admin can raise it (`set default "
        "workspace_daily_token_budget`).",
        limit=limit.limit,
        used=used,
        reset=reset,
    )


def _minute_up(moment: datetime) -> datetime:
    """Rounded up to the minute (at that minute the person may ask)."""
    moment = moment.astimezone(UTC)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return moment


def _next_midnight() -> datetime:
    """When the daily budgets reset: the next 00:00 UTC."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)
