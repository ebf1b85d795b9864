"""One answer's Slack calls: each waits for its slot in the workspace's rate budget, and what
can go wrong arrives as what the sink does about it.

- ``TooLate``: the call's deadline passed while it waited for its slot (429s included); an
  update simply shows more next time, a final text goes on in a new message;
- ``Expired``: the message can no longer be changed (its stream expired);
- ``TurnStopped``: the user stopped the stream;
- ``DeliveryError``: Slack refused it for good (its code says why).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import TurnStopped
from bot.errors import DeliveryError, SlackRateLimitedError, SlackTimeoutError
from bot.slack.budget import Priority, RateBudget
from bot.slack.client import ScheduledWebClient, scheduled_call, send_now
from bot.slack.workspaces import WorkspaceClients

__all__ = ["Dropped", "Expired", "ReplyCalls", "TooLate"]

T = TypeVar("T")


class Expired(Exception):
    """The message can no longer be changed (its stream expired, or see ``TooLate``)."""


class TooLate(Expired):
    """The call's deadline passed while it waited for its slot (429s included)."""


class Dropped(Exception):
    """The call was given up before its slot came (see ``ReplyCalls.unless``)."""


class ReplyCalls:
    def __init__(self, *, workspaces: WorkspaceClients, team_id: str) -> None:
        self._workspaces = workspaces
        self._team_id = team_id
        self.client: AsyncWebClient | None = None
        self.sending = False
        """A call's slot came and its payload was built: it is no longer given up."""

    async def resolve(self) -> None:
        """The team's client; ``NotInstalledError`` when the workspace removed the app."""
        if self.client is None:
            self.client = await self._workspaces.client(self._team_id)

    def _client(self) -> AsyncWebClient:
        assert self.client is not None, "resolved first"
        return self.client

    async def call(
        self,
        method: str,
        build: Callable[[], dict[str, Any]],
        priority: Priority,
        deadline: float | None,
        *,
        channel: str | None = None,
    ) -> Any:
        """``method`` with the arguments ``build()`` returns once the slot is ours."""

        def built() -> dict[str, Any]:
            self.sending = True
            return build()

        self.sending = False
        try:
            return await scheduled_call(
                self._client(), method, built, priority=priority, deadline=deadline, channel=channel
            )
        except (SlackRateLimitedError, SlackTimeoutError) as exc:
            raise TooLate from exc  # the deadline passed waiting for a slot or out 429s
        except DeliveryError as exc:
            if exc.code == "message_not_in_streaming_state":
                raise Expired from exc
            if exc.code == "stopped_by_user":
                raise TurnStopped from exc
            raise
        finally:
            self.sending = False

    async def now(self, method: str, arguments: dict[str, Any]) -> Any:
        """``method`` at once: the caller took its slot (``DeliveryError`` when it fails)."""
        # Sent, so no longer given up (``unless``): a stream started but forgotten would stay
        # open in Slack and its text be posted again.
        self.sending = True
        try:
            return await send_now(self._client(), method, arguments)
        finally:
            self.sending = False

    async def unless(self, event: asyncio.Event, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``call``, but give it up (``Dropped``) if ``event`` is set while it still
        waits for its slot: what it would send is out of date."""
        self.sending = False
        task: asyncio.Task[T] = asyncio.create_task(call())
        waiting = asyncio.create_task(event.wait())
        try:
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if not task.done() and not self.sending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Dropped
        return await task

    def budget(self) -> RateBudget | None:
        client = self.client
        return client.budget if isinstance(client, ScheduledWebClient) else None

    def stream_closed(self) -> None:
        """A native stream ended (or was given up): its stop slot is free again."""
        budget = self.budget()
        if budget is not None:
            budget.stream_closed()
