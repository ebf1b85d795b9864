"""Approve / Deny on a tool call's approval question. One guarantee: only the person who asked
decides, exactly once, whichever replica the click lands on and however often it is clicked.

A click is acknowledged at once (Bolt's ``ack``), then handed to ``SlackApprovals.decide``
(one conditional update from ``pending``; the winner rewrites the question's message). The
person who clicked learns privately (``chat.postEphemeral`` in the thread) when their click
changed nothing: someone else asked, or it was decided already. The asker comes from the
stored question and the clicker from Slack's signed payload, never from the button's value,
which only names the question.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import DeliveryError
from bot.i18n import t
from bot.slack.approvals import APPROVE_ACTION, DENY_ACTION
from bot.slack.failures import slack_failures
from bot.slack.language import speaking_to
from bot.slack.listeners.deps import Ack, ListenerDeps
from bot.slack.tool_texts import APPROVAL_ALREADY_DECIDED, APPROVAL_GONE, APPROVAL_NOT_YOURS
from storage.errors import StorageError
from storage.records import ApprovalDecision

__all__ = ["APPROVAL_ACTIONS", "register"]

logger = logging.getLogger(__name__)

APPROVAL_ACTIONS: Final = re.compile(
    "^(" + re.escape(APPROVE_ACTION) + "|" + re.escape(DENY_ACTION) + ")$"
)
_ID: Final = re.compile(r"^\d{1,12}$")


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    approvals = deps.approvals
    if approvals is None:
        return  # wired without approvals (unit tests of other surfaces)

    @app.action(APPROVAL_ACTIONS)
    async def on_click(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """Approve or Deny: decides the question if the asker clicked it while pending."""
        await ack()
        actions = body.get("actions") or [{}]
        action: Mapping[str, Any] = actions[0] if isinstance(actions[0], Mapping) else {}
        value = str(action.get("value") or "")
        container: Mapping[str, Any] = body.get("container") or {}
        channel_id = str(container.get("channel_id") or (body.get("channel") or {}).get("id"))
        user_id = str((body.get("user") or {}).get("id") or "")
        if not _ID.match(value) or not user_id or not channel_id:
            logger.info("an approval click without a readable question was ignored")
            return
        team_id = str((body.get("team") or {}).get("id") or deps.default_team)
        # The words are the clicker's (the asker's, when the click decides).
        async with speaking_to(deps.languages, team_id=team_id, user_id=user_id):
            message: Mapping[str, Any] = body.get("message") or {}
            try:
                outcome, record = await approvals.decide(
                    approval_id=int(value),
                    team_id=team_id,
                    user_id=user_id,
                    approve=action.get("action_id") == APPROVE_ACTION,
                    message_ts=str(container.get("message_ts") or "") or None,
                )
            except StorageError as exc:
                logger.warning("could not record an approval click (%s)", exc.code)
                return
            if outcome == ApprovalDecision.DECIDED:
                return
            if outcome == ApprovalDecision.NOT_ASKER and record is not None:
                text = t(APPROVAL_NOT_YOURS, user=f"<@{record.user_id}>")
            elif outcome == ApprovalDecision.ALREADY_DECIDED:
                text = t(APPROVAL_ALREADY_DECIDED)
            else:
                text = t(APPROVAL_GONE)
            thread_ts = (
                record.thread_ts
                if record is not None
                else str(message.get("thread_ts") or container.get("message_ts") or "") or None
            )
            try:
                with slack_failures("chat.postEphemeral"):
                    await client.chat_postEphemeral(
                        channel=channel_id, user=user_id, text=text, thread_ts=thread_ts
                    )
            except DeliveryError as exc:
                logger.info("could not answer an approval click (%s)", exc.code)
