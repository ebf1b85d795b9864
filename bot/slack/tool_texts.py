"""Every sentence people see about tools: the steps of an answer and the approval question.

Kept in one module, in plain English, so the translation catalogue can take them in one go.
Each constant is marked for the catalogue (``N_``) and translated where it is shown
(``bot.i18n.t``); texts with a count are functions over ``tn``. Placeholders are brace fields;
``{user}`` is a Slack mention (``<@U…>``), the rest is already escaped for mrkdwn by the caller.
"""

from __future__ import annotations

from typing import Final

from bot.i18n import N_, tn

__all__ = [
    "APPROVAL_ALREADY_DECIDED",
    "APPROVAL_APPROVED",
    "APPROVAL_APPROVE_BUTTON",
    "APPROVAL_DENIED",
    "APPROVAL_DENY_BUTTON",
    "APPROVAL_EXPIRED",
    "APPROVAL_FALLBACK",
    "APPROVAL_GONE",
    "APPROVAL_NOT_YOURS",
    "APPROVAL_QUESTION",
    "APPROVAL_WITHDRAWN",
    "STEPS_FALLBACK",
    "duration_minutes",
    "duration_seconds",
    "steps_earlier",
]

# --- steps (bot.slack.reply.steps) ---------------------------------------------------------
STEPS_FALLBACK: Final = N_("Working on it…")
"""A message's plain-text fallback while it shows only steps, no answer text yet."""
"""The first line of a message's step lines when the oldest ones no longer fit."""

# --- approvals (bot.slack.approvals) -------------------------------------------------------
APPROVAL_QUESTION: Final = N_("{user}, may I run this? *{title}*")
APPROVAL_FALLBACK: Final = N_("{user}, may I run this? {title}")
"""The question's plain-text fallback (notifications)."""
APPROVAL_APPROVE_BUTTON: Final = N_("Approve")
APPROVAL_DENY_BUTTON: Final = N_("Deny")
APPROVAL_APPROVED: Final = N_("*{title}*: approved by {user}.")
APPROVAL_DENIED: Final = N_("*{title}*: denied by {user}, so the call was not run.")
APPROVAL_EXPIRED: Final = N_("*{title}*: no answer within {duration}, so the call was not run.")
APPROVAL_WITHDRAWN: Final = N_("*{title}*: no longer needed (the answer was stopped).")
APPROVAL_NOT_YOURS: Final = N_("Only {user}, who asked, can approve or deny this.")
APPROVAL_ALREADY_DECIDED: Final = N_("This was already decided.")
APPROVAL_GONE: Final = N_("I no longer have this question on record.")


def steps_earlier(count: int) -> str:
    """The first line of a message's step lines when the oldest ones no longer fit."""
    return tn("…and {count} earlier step", "…and {count} earlier steps", count)


def duration_minutes(count: int) -> str:
    return tn("{count} minute", "{count} minutes", count)


def duration_seconds(count: int) -> str:
    return tn("{count} second", "{count} seconds", count)
