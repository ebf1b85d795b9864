"""Approval of tool calls in Slack: the ``Approvals`` port (``bot.conversation.ports``).

``SlackApprovals.ask`` stores a pending question (``storage.tool_approvals``), posts it in the
thread addressed to the person who asked (``<@U>``, the bot-made title, Approve / Deny
buttons whose value is the question's id) and waits for the decision until ``timeout``:

- a click handled by this process wakes the wait at once (an ``asyncio.Event``);
- a click that lands on another replica is seen by polling the row (``poll_interval``);
- no decision in time closes the question as ``expired``: a denial.

Every change of a question's status is one conditional update from ``pending``
(``ToolApprovals.decide`` / ``close``), so exactly one actor wins, whatever replicas and
double clicks do; the winner, and only it, rewrites the question's message to show the
outcome without its buttons ("Approved by <@U>", "Denied by <@U>", no answer in time, or
withdrawn). A cancelled wait (the person stopped the answer, shutdown) withdraws the
question, then lets the cancellation go on. A question that cannot be stored or posted is a
denial (logged), never a crash of the turn.

Only the asker's click counts (``decide``); the listener (``bot.slack.listeners.approvals``)
tells anyone else so, privately, and nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ApprovalRequest
from bot.errors import DeliveryError
from bot.i18n import t
from bot.slack.failures import slack_failures
from bot.slack.reply.steps import shorten
from bot.slack.tool_texts import (
    APPROVAL_APPROVE_BUTTON,
    APPROVAL_APPROVED,
    APPROVAL_DENIED,
    APPROVAL_DENY_BUTTON,
    APPROVAL_EXPIRED,
    APPROVAL_FALLBACK,
    APPROVAL_QUESTION,
    APPROVAL_WITHDRAWN,
    duration_minutes,
    duration_seconds,
)
from bot.slack.workspaces import WorkspaceClients
from storage.errors import StorageError
from storage.records import ApprovalDecision, ApprovalRecord, ApprovalStatus
from storage.tool_approvals import ToolApprovals

__all__ = [
    "APPROVE_ACTION",
    "DENY_ACTION",
    "POLL_INTERVAL",
    "SlackApprovals",
    "outcome_blocks",
    "outcome_text",
    "question_blocks",
]

logger = logging.getLogger(__name__)

APPROVE_ACTION: Final = "tool_approval.approve"
DENY_ACTION: Final = "tool_approval.deny"
POLL_INTERVAL: Final = 2.0
"""Seconds between reads of a pending question (a click handled by another replica)."""
MAX_TITLE_CHARS: Final = 300
"""The title as the question shows it (a section's text holds 3,000)."""
WITHDRAW_WAIT: Final = 10.0
"""Seconds a cancelled wait may take to withdraw its question and say so."""


def question_blocks(record: ApprovalRecord) -> list[dict[str, Any]]:
    """The question: addressed to the asker, the title, Approve / Deny."""
    text = t(
        APPROVAL_QUESTION, user=f"<@{record.user_id}>", title=shorten(record.title, MAX_TITLE_CHARS)
    )
    value = str(record.id)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "block_id": "tool_approval",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": t(APPROVAL_APPROVE_BUTTON)},
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": DENY_ACTION,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": t(APPROVAL_DENY_BUTTON)},
                    "value": value,
                },
            ],
        },
    ]


def outcome_text(record: ApprovalRecord, *, timeout: float | None = None) -> str:
    """What the question's message says once it is no longer pending."""
    title = shorten(record.title, MAX_TITLE_CHARS)
    decided_by = f"<@{record.decided_by or record.user_id}>"
    if record.status == ApprovalStatus.APPROVED:
        return t(APPROVAL_APPROVED, title=title, user=decided_by)
    if record.status == ApprovalStatus.DENIED:
        return t(APPROVAL_DENIED, title=title, user=decided_by)
    if record.status == ApprovalStatus.EXPIRED:
        return t(APPROVAL_EXPIRED, title=title, duration=_duration(timeout))
    return t(APPROVAL_WITHDRAWN, title=title)


def outcome_blocks(text: str) -> list[dict[str, Any]]:
    """The question's message once decided: the outcome, no buttons."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds >= 90:
        minutes = round((seconds or 300.0) / 60)
        return duration_minutes(minutes)
    if seconds >= 60:
        return duration_minutes(1)
    return duration_seconds(max(1, round(seconds)))


class SlackApprovals:
    """The ``Approvals`` port over Slack and ``storage.tool_approvals``; see the module
    docstring. One per process: the listener reports clicks to it (``decide``)."""

    def __init__(
        self,
        *,
        workspaces: WorkspaceClients,
        store: ToolApprovals,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._workspaces = workspaces
        self._store = store
        self._poll_interval = poll_interval
        self._waiting: dict[int, asyncio.Event] = {}
        self._posted: dict[int, str] = {}
        """Questions asked here → their message ts, known before the row notes it."""
        self._posting: dict[int, asyncio.Task[str]] = {}
        """Questions being posted: a cancelled wait lets the post finish to learn its ts."""

    async def ask(self, request: ApprovalRequest, *, timeout: float) -> bool:
        message = request.message
        try:
            record = await self._store.create(
                team_id=message.team_id,
                channel_id=message.channel_id,
                thread_ts=message.thread_ts,
                user_id=message.user_id,
                turn_id=request.turn_id,
                call_id=request.call_id,
                server=request.server,
                tool=request.tool,
                title=request.title,
            )
        except StorageError as exc:
            logger.warning("could not store an approval question (%s): denied", exc.code)
            return False
        woken = asyncio.Event()
        self._waiting[record.id] = woken
        try:
            return await self._ask(record, woken, timeout=timeout)
        except asyncio.CancelledError:
            await self._withdraw(record)
            raise
        finally:
            self._waiting.pop(record.id, None)
            self._posted.pop(record.id, None)
            self._posting.pop(record.id, None)

    async def _ask(self, record: ApprovalRecord, woken: asyncio.Event, *, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The post is not cancelled with the wait: a withdrawal needs its ts to say so.
        posting = asyncio.create_task(self._post(record))
        self._posting[record.id] = posting
        try:
            ts = await asyncio.shield(posting)
            await self._store.set_message(approval_id=record.id, message_ts=ts)
        except (DeliveryError, StorageError) as exc:
            logger.warning("could not ask for approval (%s): denied", exc.code)
            await self._close(record, ApprovalStatus.WITHDRAWN, timeout=None)
            return False
        while (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self._poll_interval, remaining)):
                    await woken.wait()
            try:
                current = await self._store.get(record.id)
            except StorageError as exc:
                logger.info("could not read an approval question (%s)", exc.code)
                continue
            if current is None:
                return False  # pruned with its turn
            if current.status != ApprovalStatus.PENDING:
                return current.status == ApprovalStatus.APPROVED
        decided = await self._close(record, ApprovalStatus.EXPIRED, timeout=timeout)
        return decided is not None and decided.status == ApprovalStatus.APPROVED

    async def _post(self, record: ApprovalRecord) -> str:
        """Post the question in the thread; its ts."""
        client = await self._workspaces.client(record.team_id)
        with slack_failures("chat.postMessage"):
            response = await client.chat_postMessage(
                channel=record.channel_id,
                thread_ts=record.thread_ts,
                text=t(
                    APPROVAL_FALLBACK, user=f"<@{record.user_id}>", title=shorten(record.title, 200)
                ),
                blocks=question_blocks(record),
                unfurl_links=False,
                unfurl_media=False,
            )
        ts = str(response["ts"])
        self._posted[record.id] = ts
        return ts

    async def _withdraw(self, record: ApprovalRecord) -> None:
        # Shielded and bounded: the cancellation goes on once the question says it is over.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(WITHDRAW_WAIT):
                posting = self._posting.get(record.id)
                if posting is not None:
                    # A question being posted as the wait ends: learn its ts first.
                    await asyncio.wait({posting})
                    if not posting.cancelled():
                        posting.exception()  # retrieved: a failed post is simply not shown
                await asyncio.shield(self._close(record, ApprovalStatus.WITHDRAWN, timeout=None))

    async def _close(
        self, record: ApprovalRecord, status: ApprovalStatus, *, timeout: float | None
    ) -> ApprovalRecord | None:
        """Close the question unless a click decided it first; the question as it stands."""
        try:
            won, current = await self._store.close(approval_id=record.id, status=status)
        except StorageError as exc:
            logger.warning("could not close an approval question (%s)", exc.code)
            return None
        if won and current is not None:
            await self._show(current, timeout=timeout, message_ts=self._posted.get(record.id))
        return current

    async def decide(
        self,
        *,
        approval_id: int,
        team_id: str,
        user_id: str,
        approve: bool,
        message_ts: str | None = None,
    ) -> tuple[ApprovalDecision, ApprovalRecord | None]:
        """A click on Approve / Deny (from the listener, whichever replica asked). Decides the
        question only when ``user_id`` asked it and it is still pending; then the question's
        message shows the outcome and a wait in this process wakes at once."""
        outcome, record = await self._store.decide(
            approval_id=approval_id, team_id=team_id, user_id=user_id, approve=approve
        )
        if outcome == ApprovalDecision.DECIDED and record is not None:
            woken = self._waiting.get(record.id)
            if woken is not None:
                woken.set()
            await self._show(record, message_ts=message_ts)
        return outcome, record

    async def _show(
        self,
        record: ApprovalRecord,
        *,
        timeout: float | None = None,
        message_ts: str | None = None,
    ) -> None:
        """The question's message shows its outcome, without buttons."""
        ts = record.message_ts or message_ts
        if ts is None:
            return  # never posted
        text = outcome_text(record, timeout=timeout)
        try:
            client: AsyncWebClient = await self._workspaces.client(record.team_id)
            with slack_failures("chat.update"):
                await client.chat_update(
                    channel=record.channel_id, ts=ts, text=text, blocks=outcome_blocks(text)
                )
        except DeliveryError as exc:
            logger.info("could not show an approval's outcome (%s)", exc.code)
