"""Feedback buttons on finished answers: the blocks, and reading a click back.

Each finished answer ends with Slack's feedback buttons: a ``context_actions`` block holding a
``feedback_buttons`` element (built with slack_sdk's Block Kit models, which check Slack's
limits). A surface that refuses that block (``invalid_blocks``: an older client, a proxy that
validates against an older schema) gets the fallback instead: an ``actions`` block with two
plain buttons. Both carry the same values, so one listener reads either.

A button's value names the vote and the answer: ``good:<ts>`` / ``bad:<ts>``, where ``ts`` is
the Slack ts of the message the answer replied to (a turn is stored by its channel and that
ts). Slack signs the click and the value comes from our own message, so it cannot be forged
into someone else's channel: the channel comes from the click's payload, not the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextActionsBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
)

from bot.i18n import t
from storage.records import FeedbackValue

__all__ = [
    "BAD_ACTION",
    "FEEDBACK_ACTION",
    "FEEDBACK_ACTIONS",
    "GOOD_ACTION",
    "Click",
    "answer_endings",
    "read_click",
]

FEEDBACK_ACTION: Final = "answer_feedback"
"""``action_id`` of the ``feedback_buttons`` element."""
GOOD_ACTION: Final = "answer_feedback_good"
BAD_ACTION: Final = "answer_feedback_bad"
"""``action_id`` of the fallback's two plain buttons."""
FEEDBACK_ACTIONS: Final = re.compile(r"^answer_feedback(_good|_bad)?$")
"""Matches every feedback button (Bolt listens with it)."""

_VALUE = re.compile(r"^(good|bad):(\d{1,12}\.\d{1,8})$")


def _value(kind: str, user_ts: str) -> str:
    return f"{kind}:{user_ts}"


def feedback_buttons(user_ts: str) -> list[dict[str, Any]]:
    """The ``context_actions`` block with 👍 / 👎 for the answer to ``user_ts``."""
    element = FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION,
        positive_button=FeedbackButtonObject(
            text="👍",
            accessibility_label=t("This answer was helpful"),
            value=_value("good", user_ts),
        ),
        negative_button=FeedbackButtonObject(
            text="👎",
            accessibility_label=t("This answer was not helpful"),
            value=_value("bad", user_ts),
        ),
    )
    return [ContextActionsBlock(elements=[element]).to_dict()]


def plain_buttons(user_ts: str) -> list[dict[str, Any]]:
    """The fallback: an ``actions`` block with two plain buttons, same values."""
    return [
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="👍 " + t("Helpful"), action_id=GOOD_ACTION, value=_value("good", user_ts)
                ),
                ButtonElement(
                    text="👎 " + t("Not helpful"),
                    action_id=BAD_ACTION,
                    value=_value("bad", user_ts),
                ),
            ]
        ).to_dict()
    ]


def answer_endings(user_ts: str) -> tuple[list[dict[str, Any]], ...]:
    """The blocks that end a finished answer, best first: the sink tries each in turn while
    Slack refuses their blocks, and sends the answer without them as a last resort. Built
    at once, in the language of the person answered (``bot.i18n``)."""
    return (feedback_buttons(user_ts), plain_buttons(user_ts))


@dataclass(frozen=True, slots=True)
class Click:
    """A feedback click: who, where, which answer (by the ts it replied to), which way."""

    team_id: str
    channel_id: str
    user_id: str
    user_ts: str
    value: FeedbackValue
    trigger_id: str

    @property
    def good(self) -> bool:
        return self.value == "good"


def read_click(body: Mapping[str, Any], *, default_team: str) -> Click | None:
    """The click in a ``block_actions`` payload, or None when it is not a well-formed one."""
    actions: Sequence[Any] = body.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], Mapping) else {}
    match = _VALUE.match(str(action.get("value") or ""))
    container = body.get("container") or {}
    channel = body.get("channel") or {}
    channel_id = str(container.get("channel_id") or channel.get("id") or "")
    user_id = str((body.get("user") or {}).get("id") or "")
    if match is None or not channel_id or not user_id:
        return None
    return Click(
        team_id=str((body.get("team") or {}).get("id") or default_team),
        channel_id=channel_id,
        user_id=user_id,
        user_ts=match.group(2),
        value="good" if match.group(1) == "good" else "bad",
        trigger_id=str(body.get("trigger_id") or ""),
    )
