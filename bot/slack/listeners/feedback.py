"""Feedback on answers: the 👍/👎 buttons every finished answer ends with. One guarantee: each
person has one vote per answer, stored before they are told it was, and a second click changes
it.

A click is acknowledged first (Bolt's ``ack``), then stored (``storage.feedback``), counted
(``slackbot_feedback_total``) and confirmed to the person alone (``chat.postEphemeral``). A 👎
confirmation offers an optional short comment: its button opens a small form (its own
``trigger_id``, so the form never races the click's three seconds); the comment is kept with
the vote.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

from slack_bolt.async_app import AsyncApp
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    InputBlock,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import DeliveryError
from bot.i18n import N_, t
from bot.slack.failures import slack_failures
from bot.slack.feedback import FEEDBACK_ACTIONS, Click, read_click
from bot.slack.language import speaking_to
from bot.slack.listeners.deps import Ack, ListenerDeps
from storage.feedback import MAX_COMMENT_CHARS

__all__ = ["COMMENT_ACTION", "COMMENT_CALLBACK", "register"]

logger = logging.getLogger(__name__)

COMMENT_ACTION: Final = "answer_feedback_comment"
COMMENT_CALLBACK: Final = "answer_feedback_comment"
_COMMENT_BLOCK = "comment"
_COMMENT_INPUT = "text"

# Catalogue texts (bot.i18n), in the language of the person who clicked.
THANKS_GOOD = N_("Thanks for the 👍: noted. You can change your vote at any time.")
THANKS_BAD = N_("Thanks for the 👎: noted. You can change your vote at any time.")
GONE = N_("I no longer have that answer on record, so I couldn't note your vote.")


async def _tell(client: AsyncWebClient, click: Click, text: str, *, comment: bool) -> None:
    """An ephemeral note to the person who clicked (with the comment button after a 👎)."""
    text = t(text)
    blocks: list[dict[str, Any]] = [SectionBlock(text=text).to_dict()]
    if comment:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=t("Add a comment"),
                        action_id=COMMENT_ACTION,
                        value=json.dumps(
                            {"channel": click.channel_id, "ts": click.user_ts},
                            separators=(",", ":"),
                        ),
                    )
                ]
            ).to_dict()
        )
    try:
        with slack_failures("chat.postEphemeral"):
            await client.chat_postEphemeral(
                channel=click.channel_id, user=click.user_id, text=text, blocks=blocks
            )
    except DeliveryError as exc:
        logger.info("could not confirm a feedback click: %s", exc.code)


def _comment_form(*, team_id: str, channel_id: str, user_ts: str) -> dict[str, Any]:
    return View(
        type="modal",
        callback_id=COMMENT_CALLBACK,
        title=t("What went wrong?"),
        submit=t("Send"),
        close=t("Skip"),
        private_metadata=json.dumps({"team": team_id, "channel": channel_id, "ts": user_ts}),
        blocks=[
            InputBlock(
                block_id=_COMMENT_BLOCK,
                label=t("Tell us briefly (optional)"),
                optional=True,
                element=PlainTextInputElement(
                    action_id=_COMMENT_INPUT, multiline=True, max_length=MAX_COMMENT_CHARS
                ),
            )
        ],
    ).to_dict()


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    votes = deps.feedback
    if votes is None:
        return  # wired without the feedback store (unit tests of other surfaces)

    @app.action(FEEDBACK_ACTIONS)
    async def on_feedback(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A 👍 or 👎 on an answer: stored per answer and person, then confirmed to them."""
        await ack()
        click = read_click(body, default_team=deps.default_team)
        if click is None:
            logger.info("a feedback click without a readable answer was ignored")
            return
        vote = await votes.vote(
            team_id=click.team_id,
            channel_id=click.channel_id,
            user_ts=click.user_ts,
            user_id=click.user_id,
            value=click.value,
        )
        if vote is not None and vote.previous != vote.value:
            deps.metrics.feedback.labels(model=vote.model, value=vote.value).inc()
        async with speaking_to(deps.languages, team_id=click.team_id, user_id=click.user_id):
            if vote is None:
                await _tell(client, click, GONE, comment=False)
                return
            await _tell(
                client, click, THANKS_GOOD if click.good else THANKS_BAD, comment=not click.good
            )

    @app.action(COMMENT_ACTION)
    async def on_comment_button(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The 👎 confirmation's button: opens the comment form."""
        await ack()
        actions = body.get("actions") or [{}]
        try:
            target = json.loads(str(actions[0].get("value") or ""))
            channel_id, user_ts = str(target["channel"]), str(target["ts"])
        except (ValueError, KeyError, TypeError):
            return
        team_id = str((body.get("team") or {}).get("id") or deps.default_team)
        user_id = str((body.get("user") or {}).get("id") or "")
        async with speaking_to(deps.languages, team_id=team_id, user_id=user_id, within=1.0):
            form = _comment_form(team_id=team_id, channel_id=channel_id, user_ts=user_ts)
        try:
            with slack_failures("views.open"):
                await client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=form)
        except DeliveryError as exc:
            logger.info("could not open the feedback comment form: %s", exc.code)

    @app.view(COMMENT_CALLBACK)
    async def on_comment(ack: Ack, body: dict[str, Any]) -> None:
        """The comment form's submission: kept with the person's own vote (from the signed
        payload's user, whatever the form carries)."""
        await ack()
        view: Mapping[str, Any] = body.get("view") or {}
        try:
            target = json.loads(view.get("private_metadata") or "{}")
            team_id, channel_id, user_ts = (
                str(target["team"]),
                str(target["channel"]),
                str(target["ts"]),
            )
        except (ValueError, KeyError, TypeError):
            return
        values = ((view.get("state") or {}).get("values") or {}).get(_COMMENT_BLOCK) or {}
        text = str((values.get(_COMMENT_INPUT) or {}).get("value") or "")
        if not text.strip():
            return
        await votes.comment(
            team_id=team_id,
            channel_id=channel_id,
            user_ts=user_ts,
            user_id=str((body.get("user") or {}).get("id") or ""),
            text=text,
        )
