"""Slack's assistant pane, through Bolt's own ``AsyncAssistant``. One guarantee: a pane thread
is known to every replica from its first event (its context kept in our database), and offers
the workspace's suggested prompts.

- ``assistant_thread_started``: the thread and the context it opened with (the channel the
  person is viewing) are stored; the workspace's ``suggested_prompts`` are set.
- ``assistant_thread_context_changed``: Bolt's default listener saves the new context through
  our store (``bot.slack.assistant.store``).

The person's messages in the pane are *not* handled here, deliberately. Bolt's assistant
middleware routes a DM thread message (``message.im`` with ``thread_ts``) to its
``user_message`` listeners when any is registered, and then the app's own ``message``
listeners never run; with none registered it passes the event on. We register none: a pane
message then takes the one path every DM takes, accepted (stored, claimed) by
``bot.slack.accept`` before the acknowledgement and answered by the ``messages`` surface, with
the same chain, settings, limits, streaming and exactly-once, and never twice. The assistant
middleware is registered before the accept middleware, so the edits and deletions it
acknowledges itself in DM threads are counted by the app as ignored events, as Bolt's own
filters' are (``assistant`` comes before ``messages`` in ``SURFACES``).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant

from bot.channel_settings import WORKSPACE_DEFAULTS
from bot.errors import DeliveryError
from bot.i18n import N_, t
from bot.slack.assistant.store import DatabaseThreadContextStore
from bot.slack.failures import slack_failures
from bot.slack.language import speaking_to
from bot.slack.listeners.deps import ListenerDeps

__all__ = ["PROMPTS_TITLE", "register"]

logger = logging.getLogger(__name__)

PROMPTS_TITLE: Final = N_("Try asking")


def register(app: AsyncApp, deps: ListenerDeps) -> None:
    threads = deps.pane_threads
    if threads is None:
        return  # wired without storage for pane threads (unit tests of other surfaces)
    assistant = AsyncAssistant(
        thread_context_store=DatabaseThreadContextStore(threads),
        logger=logging.getLogger("bot.slack.bolt.assistant"),
    )

    @assistant.thread_started
    async def on_thread_started(
        body: dict[str, Any],
        payload: dict[str, Any],
        set_suggested_prompts: AsyncSetSuggestedPrompts,
    ) -> None:
        """Stores the pane thread and its context; offers the workspace's prompts."""
        deps.metrics.events_received.labels(type="assistant_thread_started").inc()
        thread = payload.get("assistant_thread") or {}
        team_id = str(body.get("team_id") or deps.default_team)
        await threads.started(
            team_id=team_id,
            channel_id=str(thread.get("channel_id") or ""),
            thread_ts=str(thread.get("thread_ts") or ""),
            user_id=str(thread.get("user_id") or "") or None,
            context=thread.get("context") if isinstance(thread.get("context"), dict) else None,
        )
        effective = await deps.settings.effective(team_id=team_id, channel_id=WORKSPACE_DEFAULTS)
        user_id = str(thread.get("user_id") or "")
        # The default prompts are catalogue texts, offered in the person's language; a prompt
        # an admin typed is offered as typed.
        async with speaking_to(deps.languages, team_id=team_id, user_id=user_id):
            prompts = [t(str(p)) for p in effective.suggested_prompts or ()][:4]
            title = t(PROMPTS_TITLE)
        if not prompts:
            return
        try:
            with slack_failures("assistant.threads.setSuggestedPrompts"):
                await set_suggested_prompts(
                    prompts=[{"title": p, "message": p} for p in prompts], title=title
                )
        except DeliveryError as exc:
            logger.warning("could not set the suggested prompts: %s", exc.code)

    # Bolt's global middleware run in the order registered: this surface comes before
    # ``messages`` in SURFACES (see the module docstring).
    app.assistant(assistant)
