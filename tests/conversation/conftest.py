"""The real ``ConversationService`` wired to the in-memory fakes of its ports (``fakes.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.conversation import ConversationService, EndpointCapabilities, IncomingMessage, TurnOutcome
from tests.conversation.fakes import (
    FakeContext,
    FakeSettings,
    FakeThreadLocks,
    MemoryStore,
    RecordingSinks,
    ScriptedModel,
)

UNIT_TEST_SECONDS = 1.0
"""A unit test of the core runs in well under this (they take milliseconds)."""


@dataclass
class Core:
    """A conversation service and its fakes."""

    store: MemoryStore = field(default_factory=MemoryStore)
    model: ScriptedModel = field(default_factory=ScriptedModel)
    sinks: RecordingSinks = field(default_factory=RecordingSinks)
    context: FakeContext = field(default_factory=FakeContext)
    settings: FakeSettings = field(default_factory=FakeSettings)
    thread_locks: FakeThreadLocks = field(default_factory=FakeThreadLocks)
    capabilities: EndpointCapabilities | None = None
    recoveries: list[str] = field(default_factory=list)
    service: ConversationService = field(init=False)

    def __post_init__(self) -> None:
        self.rebuild()

    def rebuild(self, **options: Any) -> None:
        """A new service over the same fakes (e.g. with capabilities)."""
        self.service = ConversationService(
            store=self.store,
            intake=self.store,
            model=self.model,
            sinks=self.sinks,
            context=self.context,
            settings=self.settings,
            thread_locks=self.thread_locks,
            transcripts=self.store,
            capabilities=self.capabilities,
            identity_salt="salt",
            replica_id="here",
            on_recovery=self.recoveries.append,
            **options,
        )

    def with_capabilities(self) -> EndpointCapabilities:
        self.capabilities = EndpointCapabilities(
            store=self.store, endpoint="https://relay.example/v1", probe=None
        )
        self.rebuild()
        return self.capabilities

    async def handle(self, message: IncomingMessage) -> TurnOutcome:
        return await self.service.handle(message)


@pytest.fixture
def core() -> Iterator[Core]:
    """A service over fresh fakes. A test that uses it fails when it is not fast: these rules
    must stay checkable in the fast lane, without a network, a database or a sleep."""
    started = time.perf_counter()
    yield Core()
    took = time.perf_counter() - started
    assert took < UNIT_TEST_SECONDS, f"a unit test of the core took {took:.2f} s"
