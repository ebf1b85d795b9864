"""One guarantee: a message event is stored before Slack gets its answer.

Bolt acknowledges an Events API request before its listener runs, so a listener that stored
the message could be killed between Slack's 200 and the store, and Slack would never resend
it. ``accept`` runs as a global Bolt middleware instead, inside the dispatch and so before the
acknowledgement (HTTP and Socket Mode alike): it turns the event into an ``IncomingMessage``
and lets the conversation accept it (claim and store, one short transaction). The listener,
which runs after the acknowledgement, answers the ticket: in its thread's order, however long
that takes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from bot.conversation import ConversationService, IncomingMessage, Ticket, TurnOutcome
from bot.metrics import Metrics
from bot.slack.events import from_app_mention, from_message
from bot.slack.workspaces import WorkspaceClients, WorkspaceNotInstalled
from bot.turn_tracker import TurnTracker
from storage.intake import QueuedMessage

__all__ = ["SEEN", "TICKET", "AfterAnswer", "EventIntake", "message_event_type"]

logger = logging.getLogger(__name__)

TICKET = "accepted_message_ticket"
"""The key of the request context that carries the ticket from the middleware to the listener."""
SEEN = "message_event_seen"
"""Context key set once ``accept`` has looked at a message event: the event passed Bolt's own
filters, so its listener runs and counts how it ended."""

_CONVERTERS: Mapping[str, Callable[..., IncomingMessage | None]] = {
    "app_mention": from_app_mention,
    "message": from_message,
}


AfterAnswer = Callable[[IncomingMessage, TurnOutcome], Awaitable[None]]
"""Called after a message was answered, whatever the outcome (the pane's title)."""


def message_event_type(body: Mapping[str, Any]) -> str | None:
    """``app_mention`` or ``message`` for an Events API message event, else ``None``."""
    event = body.get("event")
    if body.get("type") != "event_callback" or not isinstance(event, dict):
        return None
    kind = str(event.get("type"))
    return kind if kind in _CONVERTERS else None


class EventIntake:
    def __init__(
        self,
        *,
        conversation: ConversationService,
        workspaces: WorkspaceClients,
        metrics: Metrics,
        tracker: TurnTracker,
        after_answer: AfterAnswer | None = None,
    ) -> None:
        self._conversation = conversation
        self._after_answer = after_answer
        self._workspaces = workspaces
        self._metrics = metrics
        self._tracker = tracker
        self._default_team = workspaces.default_team_id or ""

    async def accept(self, body: Mapping[str, Any], context: MutableMapping[str, Any]) -> None:
        """For a message event: accept it and put its ticket in ``context[TICKET]``."""
        kind = message_event_type(body)
        if kind is None:
            return
        context[SEEN] = True
        event = body["event"]
        convert = _CONVERTERS[kind]
        team_id = str(body.get("team_id") or self._default_team)
        try:
            identity = await self._workspaces.identity(team_id)
        except WorkspaceNotInstalled:
            logger.warning("event from a workspace with no installation", extra={"team": team_id})
            return
        message = convert(
            event, team_id=team_id, bot_user_id=identity.user_id, event_id=body.get("event_id")
        )
        if message is not None:
            context[TICKET] = await self._conversation.accept(message)

    async def answer(self, event_type: str, ticket: Ticket | None) -> None:
        """Answer an accepted message (after Slack had its acknowledgement)."""
        if ticket is None:  # not a human message for the bot, or no installation
            self._metrics.event_handled(event_type, TurnOutcome.IGNORED)
            return
        started = time.monotonic()
        async with self._tracker.track():
            with self._metrics.turns_in_flight.track_inprogress():
                outcome = await self._conversation.answer(ticket)
        self._metrics.event_handled(event_type, outcome)
        if outcome not in (TurnOutcome.IGNORED, TurnOutcome.DUPLICATE):
            self._metrics.turn_seconds.observe(time.monotonic() - started)
        await self._answered(ticket.message, outcome)

    async def resume(self, queued: QueuedMessage) -> TurnOutcome:
        """Answer a message adopted at start-up like an event's: tracked (shutdown waits for
        it, or cancels it past the grace period) and counted."""
        started = time.monotonic()
        async with self._tracker.track():
            with self._metrics.turns_in_flight.track_inprogress():
                outcome = await self._conversation.resume(queued)
        self._metrics.event_handled("resumed", outcome)
        if outcome not in (TurnOutcome.IGNORED, TurnOutcome.DUPLICATE):
            self._metrics.turn_seconds.observe(time.monotonic() - started)
        return outcome

    async def _answered(self, message: IncomingMessage, outcome: TurnOutcome) -> None:
        if self._after_answer is None:
            return
        try:
            await self._after_answer(message, outcome)
        except Exception:  # a courtesy after the answer: it never fails the answer's task
            logger.warning("after-answer hook failed", exc_info=True)
