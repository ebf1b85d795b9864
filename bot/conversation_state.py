"""How a thread's conversation reaches the model, whatever the endpoint does with chains.

Pure logic and small ports, no Slack, HTTP or SQLAlchemy types (``bot.conversation`` uses it;
the service wires the adapters):

- **Modes.** ``chain`` sends ``previous_response_id``; ``transcript`` sends the thread's earlier
  messages itself (from the service's own transcript, newest kept first within the budget);
  ``auto`` chains until the endpoint is found to ignore chains for that model, then sends
  transcripts. Set by ``CONVERSATION_STATE`` and per channel (``conversation_state``).
- **Knowing whether an endpoint keeps chains** (:class:`EndpointCapabilities`): a probe (a tiny
  call with a made-up ``previous_response_id``, which a conforming server refuses), run by
  ``doctor``, at start-up in the background and again after a suspicious turn; and a per-turn
  continuity check (:func:`continuity_broken`) that needs no extra call. Either signal that the
  chain is ignored switches the endpoint+model to transcripts. Results are stored with their
  time, so every replica (and the next start) knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from bot.model.types import Usage
from storage.conversation_state import CapabilityRecord, ResponseUsage, TranscriptRecord

__all__ = [
    "CONVERSATION_STATES",
    "CapabilityStore",
    "ChainCheck",
    "ChainProbe",
    "EndpointCapabilities",
    "Mode",
    "continuity_broken",
    "endpoint_key",
    "select_transcript",
]

logger = logging.getLogger(__name__)

Mode = Literal["auto", "chain", "transcript"]
CONVERSATION_STATES: tuple[Mode, ...] = ("auto", "chain", "transcript")
Chains = Literal["kept", "ignored", "unknown"]

# A file in a re-sent message costs the model about as much as a page of text.
FILE_CHARS = 1_000

# Continuity: a chained turn's input normally holds the previous turn's input and visible
# output. Below these margins it clearly did not get its history.
_MIN_MISSING_TOKENS = 32
_MIN_MISSING_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What a probe found: ``chains`` and a short plain-words ``detail`` for operators."""

    chains: Chains
    detail: str


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


def continuity_broken(previous: ResponseUsage | None, usage: Usage, *, model: str) -> bool:
    """Whether a chained turn clearly did not get its history.

    A conforming endpoint bills a chained turn for the whole conversation: at least the
    previous turn's input plus its output (reasoning tokens excepted: reasoning items are not
    carried into later turns). An input clearly smaller than that means the endpoint answered
    without the chain. Not judged when a figure is unknown (zero) or the model changed (another
    tokenizer). Some relays count cached tokens apart from ``input_tokens`` (Anthropic-style);
    cached tokens larger than the input can only mean that, so they are added back.
    """
    if previous is None or previous.model != model:
        return False
    if previous.input_tokens <= 0 or usage.input_tokens <= 0:
        return False
    expected = previous.input_tokens + max(previous.output_tokens - previous.reasoning_tokens, 0)
    seen = usage.input_tokens
    if usage.cached_tokens > usage.input_tokens:
        seen += usage.cached_tokens
    missing = expected - seen
    return missing >= max(_MIN_MISSING_TOKENS, _MIN_MISSING_SHARE * expected)


def entry_size(entry: TranscriptRecord) -> int:
    return len(entry.text) + FILE_CHARS * len(entry.files)


def select_transcript(entries: Sequence[TranscriptRecord], budget: int) -> list[TranscriptRecord]:
    """The newest entries that fit in ``budget`` characters, oldest first; the newest one is
    always kept, and the kept part never starts with an answer whose question was dropped."""
    kept: list[TranscriptRecord] = []
    used = 0
    for entry in reversed(entries):
        size = entry_size(entry)
        if kept and used + size > budget:
            break
        kept.append(entry)
        used += size
    kept.reverse()
    while len(kept) > 1 and kept[0].role == "assistant":
        kept.pop(0)
    return kept


def item_text(item: Mapping[str, Any]) -> str:
    """The text of a Responses input item (string content or its text parts)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text"))
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


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
        self._cache_seconds = cache_seconds
        self._on_switch = on_switch
        self._clock = clock
        self._cache: dict[str, tuple[float, CapabilityRecord | None]] = {}
        self._probing: dict[str, asyncio.Task[None]] = {}

    async def record(self, model: str) -> CapabilityRecord | None:
        cached = self._cache.get(model)
        if cached is not None and self._clock() - cached[0] < self._cache_seconds:
            return cached[1]
        record = await self._store.capability(endpoint=self.endpoint, model=model)
        self._cache[model] = (self._clock(), record)
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
        self._cache[model] = (self._clock(), record)
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
            self._cache[model] = (self._clock(), record)
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
