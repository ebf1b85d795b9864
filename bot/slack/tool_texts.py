"""Every sentence people see about tools: the steps of an answer and the approval question.

Kept in one module, in plain English, so the translation catalogue can take them in one go.
Placeholders are ``str.format`` fields; ``{user}`` is a Slack mention (``<@U…>``), the rest
is already escaped for mrkdwn by the caller.
"""

from __future__ import annotations

from typing import Final

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
    "DURATION_MINUTES",
    "DURATION_ONE_MINUTE",
    "DURATION_SECONDS",
    "STEPS_EARLIER",
    "STEPS_FALLBACK",
]

# --- steps (bot.slack.reply.steps) ---------------------------------------------------------
STEPS_FALLBACK: Final = "Working on it…"
"""A message's plain-text fallback while it shows only steps, no answer text yet."""
STEPS_EARLIER: Final = "…and {count} earlier steps"
"""The first line of a message's step lines when the oldest ones no longer fit."""

# --- approvals (bot.slack.approvals) -------------------------------------------------------
APPROVAL_QUESTION: Final = "{user}, may I run this? *{title}*"
APPROVAL_FALLBACK: Final = "{user}, may I run this? {title}"
"""The question's plain-text fallback (notifications)."""
APPROVAL_APPROVE_BUTTON: Final = "Approve"
APPROVAL_DENY_BUTTON: Final = "Deny"
APPROVAL_APPROVED: Final = "*{title}*: approved by {user}."
APPROVAL_DENIED: Final = "*{title}*: denied by {user}, so the call was not run."
APPROVAL_EXPIRED: Final = "*{title}*: no answer within {duration}, so the call was not run."
DURATION_MINUTES: Final = "{count} minutes"
DURATION_ONE_MINUTE: Final = "1 minute"
DURATION_SECONDS: Final = "{count} seconds"
APPROVAL_WITHDRAWN: Final = "*{title}*: no longer needed (the answer was stopped)."
APPROVAL_NOT_YOURS: Final = "Only {user}, who asked, can approve or deny this."
APPROVAL_ALREADY_DECIDED: Final = "This was already decided."
APPROVAL_GONE: Final = "I no longer have this question on record."
