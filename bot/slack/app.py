"""The Bolt app: built here, with every surface's listeners registered from
``bot.slack.listeners`` (one module per surface).

Bolt's own guards stay on: request signatures (HTTP mode) and its filter of the bot's own
events; ``bot.slack.events`` filters bots again, as a second line. Bolt acknowledges events
before their listeners run, so Slack gets its answer in well under 3 s however long the
model takes.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationService, SettingsSource, TurnOutcome
from bot.metrics import Metrics
from bot.model_catalogue import ModelCatalogue
from bot.slack.accept import SEEN, EventIntake, message_event_type
from bot.slack.admins import AdminPolicy
from bot.slack.approvals import SlackApprovals
from bot.slack.commands import SettingsCommands
from bot.slack.language import PersonLanguages
from bot.slack.listeners import ListenerDeps, register_all
from bot.slack.listeners.deps import SettingsStore
from bot.slack.membership import ChannelMembership
from bot.slack.workspaces import WorkspaceClients
from bot.turn_tracker import TurnTracker
from storage.assistant_threads import AssistantThreads
from storage.feedback import FeedbackStore

__all__ = ["build_slack_app"]


class _CountingApp(AsyncApp):
    """One guarantee: every message event Slack delivers is counted as received, and as
    handled (``ignored``) when one of Bolt's own filters (the bot's own events) drops it
    before any listener runs; the listeners count the rest. So ``slackbot_events_received``
    and ``slackbot_turns`` add up whatever Bolt filters."""

    def __init__(self, *, metrics: Metrics, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._metrics = metrics

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        kind = message_event_type(req.body)
        if kind is not None:
            self._metrics.events_received.labels(type=kind).inc()
        response = await super().async_dispatch(req)
        if kind is not None and not req.context.get(SEEN):
            self._metrics.event_handled(kind, TurnOutcome.IGNORED)
        return response


def build_slack_app(
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    workspaces: WorkspaceClients,
    conversation: ConversationService,
    metrics: Metrics,
    tracker: TurnTracker,
    settings: SettingsSource,
    commands: SettingsCommands,
    admins: AdminPolicy,
    catalogue: ModelCatalogue,
    store: SettingsStore,
    verify_requests: bool = True,
    oauth_settings: AsyncOAuthSettings | None = None,
    membership: ChannelMembership | None = None,
    intake: EventIntake | None = None,
    pane_threads: AssistantThreads | None = None,
    feedback: FeedbackStore | None = None,
    approvals: SlackApprovals | None = None,
    languages: PersonLanguages | None = None,
) -> AsyncApp:
    """Build the Bolt app. ``verify_requests`` is only ``False`` in Socket Mode, where Slack
    sends no signature (the WebSocket itself is authenticated by the app token).

    With ``oauth_settings`` (multi-workspace install) ``client`` carries no token: Bolt finds
    each request's workspace token in the installation store, serves the install flow, and
    the OAuth ``oauth.v2.access`` call goes through ``client`` (so to ``SLACK_API_URL``).
    ``intake`` (made here when not given) accepts message events before their
    acknowledgement; the service also resumes adopted messages through it. ``pane_threads``
    and ``feedback`` turn on the assistant pane and the feedback buttons' listeners,
    ``approvals`` the Approve / Deny buttons' of tool calls."""
    app = _CountingApp(
        metrics=metrics,
        client=client,
        oauth_settings=oauth_settings,
        signing_secret=signing_secret,
        request_verification_enabled=verify_requests,
        ignoring_self_events_enabled=True,
        logger=logging.getLogger("bot.slack.bolt"),
    )
    deps = ListenerDeps(
        workspaces=workspaces,
        intake=intake
        or EventIntake(
            conversation=conversation, workspaces=workspaces, metrics=metrics, tracker=tracker
        ),
        metrics=metrics,
        settings=settings,
        commands=commands,
        editor=commands.editor,
        admins=admins,
        catalogue=catalogue,
        store=store,
        membership=membership or ChannelMembership(workspaces=workspaces),
        installations=oauth_settings.installation_store if oauth_settings else None,
        pane_threads=pane_threads,
        feedback=feedback,
        approvals=approvals,
        languages=languages,
    )
    register_all(app, deps)
    return app
