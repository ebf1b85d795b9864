"""Bolt's ``AsyncAssistantThreadContextStore`` over our database.

Bolt's default store keeps a pane thread's context in the metadata of the bot's first reply
(read back with ``conversations.replies``, which is rate limited to 1 a minute for apps
outside the Marketplace, and needs a reply to exist); ours keeps it in
``storage.assistant_threads``, so it is there before any reply and for every replica.
"""

from __future__ import annotations

from typing import Protocol

from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.async_store import (
    AsyncAssistantThreadContextStore,
)

from storage.records import AssistantThreadRecord

__all__ = ["DatabaseThreadContextStore", "PaneThreads"]


class PaneThreads(Protocol):
    """What the store needs of ``storage.assistant_threads.AssistantThreads``."""

    async def save_context(
        self, *, channel_id: str, thread_ts: str, context: dict[str, str]
    ) -> None: ...

    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadRecord | None: ...


class DatabaseThreadContextStore(AsyncAssistantThreadContextStore):
    def __init__(self, threads: PaneThreads) -> None:
        self._threads = threads

    async def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        await self._threads.save_context(
            channel_id=channel_id, thread_ts=thread_ts, context=context
        )

    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        found = await self._threads.find(channel_id=channel_id, thread_ts=thread_ts)
        if found is None or found.viewing is None or found.context is None:
            return None
        return AssistantThreadContext(dict(found.context))
