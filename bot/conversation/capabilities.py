"""Whether the model endpoint keeps ``previous_response_id`` chains, per model.

Known from a probe (a tiny call with a made-up ``previous_response_id``, which a conforming
server refuses), run by ``doctor``, at start-up in the background and again after a suspicious
turn; and from the per-turn continuity check (``bot.conversation.recovery``), which needs no
extra call. Either signal that the chain is ignored switches the endpoint+model to transcripts
(``bot.conversation.history``). Results are stored with their time, so every replica (and the
next start) knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from cachetools import TTLCache

from bot.model.types import ChainCheck
from storage.records import CapabilityRecord

__all__ = [
    "CapabilityStore",
    "ChainCheck",
    "ChainProbe",
    "EndpointCapabilities",
    "endpoint_key",
]

logger = logging.getLogger(__name__)

MAX_CACHED_MODELS = 256
"""Models whose capability is cached at once (a channel may name any model)."""

ChainProbe = Callable[[str], Awaitable[ChainCheck]]
"""``model -> ChainCheck``: one probe call against the endpoint (``bot.model.probe``)."""


class CapabilityStore(Protocol):
    async def capability(self, *, endpoint: str, model: str) -> CapabilityRecord | None: ...

    async def record_capability(
        self,
        *,
        endpoint: str,
        model: str,
        chains: str,
        source: str,
        tools: bool | None = None,
        streaming: bool | None = None,
        detail: str | None = None,
        checked_at: datetime | None = None,
    ) -> CapabilityRecord: ...


def endpoint_key(base_url: str) -> str:
    """The endpoint as stored: scheme, host, port and path; never credentials or a query."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))[:255]


class EndpointCapabilities:
    """Per model at one endpoint: whether chains are kept, from probes and continuity checks.

    Reads are cached for ``cache_seconds`` (another replica's switch is seen within that time).
    A probe runs at most once at a time per model, in the background; its result is stored.
    """

    def __init__(
        self,
        *,
        store: CapabilityStore,
        endpoint: str,
        probe: ChainProbe | None = None,
        cache_seconds: float = 60.0,
        on_switch: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.endpoint = endpoint_key(endpoint)
        self._probe = probe
        self._on_switch = on_switch
        # Expiry by cachetools; a model known to have no record is cached too (as None).
        self._cache: TTLCache[str, CapabilityRecord | None] = TTLCache(
            maxsize=MAX_CACHED_MODELS, ttl=cache_seconds, timer=clock
        )
        self._probing: dict[str, asyncio.Task[None]] = {}

    async def record(self, model: str) -> CapabilityRecord | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        record = await self._store.capability(endpoint=self.endpoint, model=model)
        self._cache[model] = record
        return record

    async def chains_ignored(self, model: str) -> bool:
        record = await self.record(model)
        return record is not None and record.chains == "ignored"

    async def mark_ignored(self, model: str, *, source: str, detail: str) -> bool:
        """Record that the endpoint ignores chains for ``model``; True when this switched it
        (it was not known as ignored before)."""
        before = await self.record(model)
        record = await self._store.record_capability(
            endpoint=self.endpoint, model=model, chains="ignored", source=source, detail=detail
        )
        self._cache[model] = record
        switched = before is None or before.chains != "ignored"
        if switched:
            logger.warning(
                "the model endpoint ignores previous_response_id for this model; "
                "sending transcripts from now on",
                extra={"model": model, "source": source},
            )
            if self._on_switch is not None:
                self._on_switch(source)
        return switched

    async def probe_now(self, model: str, *, source: str = "probe") -> ChainCheck | None:
        """Run the probe and store its result. A probe that finds chains kept does not undo
        an ``ignored`` seen on a real turn (only ``doctor``, ``source="doctor"``, does: the
        operator asked)."""
        if self._probe is None:
            return None
        check = await self._probe(model)
        before = await self._store.capability(endpoint=self.endpoint, model=model)
        if check.chains == "ignored":
            await self.mark_ignored(model, source=source, detail=check.detail)
            return check
        sticky = before is not None and before.chains == "ignored" and source != "doctor"
        if check.chains == "unknown" and before is not None and before.chains != "unknown":
            return check  # a failed probe teaches nothing; keep what was known
        if not sticky:
            record = await self._store.record_capability(
                endpoint=self.endpoint,
                model=model,
                chains=check.chains,
                source=source,
                detail=check.detail,
            )
            self._cache[model] = record
        return check

    def probe_soon(self, model: str, *, source: str = "probe") -> None:
        """Probe ``model`` in the background (once at a time per model); never raises."""
        if self._probe is None:
            return
        running = self._probing.get(model)
        if running is not None and not running.done():
            return
        self._probing[model] = asyncio.create_task(
            self._probe_quietly(model, source), name=f"chain-probe:{model}"
        )

    async def probe_if_stale(self, model: str, *, max_age: float) -> None:
        """At start-up: probe ``model`` in the background unless a result younger than
        ``max_age`` seconds is stored."""
        try:
            record = await self._store.capability(endpoint=self.endpoint, model=model)
        except Exception as exc:  # the start-up probe is a courtesy; the service runs on
            logger.warning("could not read the endpoint's capabilities: %s", type(exc).__name__)
            return
        if record is not None:
            age = (datetime.now(record.checked_at.tzinfo) - record.checked_at).total_seconds()
            if age < max_age:
                return
        self.probe_soon(model)

    async def _probe_quietly(self, model: str, source: str) -> None:
        try:
            check = await self.probe_now(model, source=source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe must never take anything down
            logger.warning("chain probe failed: %s", type(exc).__name__, extra={"model": model})
            return
        if check is not None:
            logger.info(
                "chain probe: %s", check.chains, extra={"model": model, "detail": check.detail}
            )

    async def wait_idle(self) -> None:
        """Wait for running probes (tests, shutdown)."""
        tasks = [task for task in self._probing.values() if not task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        for task in self._probing.values():
            task.cancel()
        for task in self._probing.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._probing.clear()
