"""In-memory fakes of the turn core's ports, for unit tests of its rules.

Each fake keeps the semantics of the adapter it stands for, so a rule that holds here holds
with the real one (``test_memory_store.py`` runs the same scenarios against the in-memory store
and the real SQLite store):

- :class:`MemoryStore`: ``storage.intake`` + ``storage.threads`` + ``storage.held_answers`` +
  ``storage.conversation_state``: event claims, accepted messages in Slack order per owner,
  admission under the hourly limit and daily token budgets with reservations, turns closed
  once, the chain head, held answers, transcripts, one-time notes, capabilities.
- :class:`ScriptedModel`: a model client replaying scripted event streams and recording every
  request; a script step may wait for a gate, so tests decide when a stream goes on.
- :class:`RecordingSinks`: reply sinks recording what the thread would see; one can refuse
  or stop on cue.
- :class:`FakeContext`, :class:`FakeSettings`, :class:`FakeThreadLocks`.

No mocks of the core's own methods: the tests drive the real ``ConversationService``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.channel_settings import SCHEMA, EffectiveSettings, resolve
from bot.conversation import IncomingMessage, PersonLocale, TurnInput, TurnStopped
from bot.errors import DeliveryError
from bot.model.types import (
    Completed,
    ModelEvent,
    ModelResult,
    ReasoningDelta,
    ResponseRequest,
    TextDelta,
    Usage,
)
from storage.errors import StorageError, ThreadLockTimeout
from storage.records import (
    Acceptance,
    AcceptResult,
    CapabilityRecord,
    LimitReached,
    QueuedMessage,
    ResponseUsage,
    ThreadRecord,
    TokenUsage,
    TranscriptRecord,
    TurnLimits,
    TurnStart,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CLOSING = frozenset({"failed", "incomplete", "stopped", "undelivered"})


# -- the store ------------------------------------------------------------------------------


@dataclass
class MemoryTurn:
    id: int
    thread_id: int
    team_id: str
    channel_id: str
    user_id: str
    user_ts: str
    event_id: str | None
    model: str
    previous_response_id: str | None
    created_at: datetime
    reserved_tokens: int
    status: str = "pending"
    error_code: str | None = None
    response_id: str | None = None
    reply_ts: str | None = None
    usage: TokenUsage = field(default_factory=lambda: TokenUsage(0, 0, 0, 0))

    @property
    def tokens(self) -> int:
        return self.usage.input_tokens + self.usage.output_tokens


@dataclass
class MemoryThread:
    id: int
    team_id: str
    channel_id: str
    thread_ts: str
    head_response_id: str | None = None


class MemoryStore:
    """The store and intake the conversation core talks to, in memory (see the module
    docstring). ``now`` is the clock the limits count with; ``refuse`` makes every call
    raise that ``StorageError`` (a database that is gone)."""

    def __init__(self) -> None:
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.refuse: StorageError | None = None
        self.claims: set[str] = set()
        self.waiting: dict[int, QueuedMessage] = {}
        self.threads: dict[tuple[str, str, str], MemoryThread] = {}
        self.turns: dict[int, MemoryTurn] = {}
        self.held: dict[int, str] = {}
        self.transcript: list[TranscriptRecord] = []
        self.transcript_threads: dict[int, int] = {}  # entry id -> thread id
        self.notes: set[tuple[int, str]] = set()
        self.capabilities: dict[tuple[str, str], CapabilityRecord] = {}
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if self.refuse is not None:
            raise self.refuse

    # -- intake (storage.intake) ----------------------------------------------------------

    async def accept(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        ts: str,
        user_id: str,
        event_id: str | None,
        claim_keys: Sequence[str],
        payload: Mapping[str, Any],
        owner: str,
        needs_thread: bool,
    ) -> AcceptResult:
        self._check()
        key = (team_id, channel_id, thread_ts)
        known = key in self.threads or any(self._in(m, key) for m in self.waiting.values())
        if needs_thread and not known:
            return AcceptResult(Acceptance.NOT_IN_THREAD)
        if any(claim in self.claims for claim in claim_keys):
            return AcceptResult(Acceptance.DUPLICATE)
        self.claims.update(claim_keys)
        queued_id = next(self._ids)
        self.waiting[queued_id] = QueuedMessage(
            id=queued_id,
            team_id=team_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            ts=ts,
            user_id=user_id,
            event_id=event_id,
            payload=dict(payload),
            owner=owner,
        )
        return AcceptResult(Acceptance.ACCEPTED, queued_id)

    async def next_in_thread(
        self, *, owner: str, team_id: str, channel_id: str, thread_ts: str
    ) -> QueuedMessage | None:
        self._check()
        key = (team_id, channel_id, thread_ts)
        mine = [m for m in self.waiting.values() if self._in(m, key) and m.owner == owner]
        return min(mine, key=lambda m: (m.ts, m.id), default=None)

    async def forget(self, *, queued_id: int) -> None:
        self._check()
        self.waiting.pop(queued_id, None)

    async def admit_turn(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        user_ts: str,
        event_id: str | None,
        model: str,
        limits: TurnLimits,
        queued_id: int | None = None,
    ) -> TurnStart | LimitReached | None:
        self._check()
        if queued_id is not None and queued_id not in self.waiting:
            return None
        now = self.now()
        refusal = self._limit_reached(team_id, channel_id, user_id, limits, now)
        if refusal is not None:
            return refusal
        thread = self._thread(team_id, channel_id, thread_ts)
        reserve = 0
        if limits.channel_daily_tokens > 0 or limits.workspace_daily_tokens > 0:
            done = [t for t in self.turns.values() if t.thread_id == thread.id]
            completed = [t for t in done if t.status == "completed"]
            history = completed[-1].tokens if completed else 0
            reserve = max(0, limits.reserve_tokens) + history
        turn = MemoryTurn(
            id=next(self._ids),
            thread_id=thread.id,
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            user_ts=user_ts,
            event_id=event_id,
            model=model,
            previous_response_id=thread.head_response_id,
            created_at=now,
            reserved_tokens=reserve,
        )
        self.turns[turn.id] = turn
        if queued_id is not None:
            del self.waiting[queued_id]
        return TurnStart(
            turn_id=turn.id, thread_id=thread.id, previous_response_id=thread.head_response_id
        )

    def _limit_reached(
        self, team_id: str, channel_id: str, user_id: str, limits: TurnLimits, now: datetime
    ) -> LimitReached | None:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = [t for t in self.turns.values() if t.team_id == team_id and t.created_at >= day]
        for kind, budget, channel in (
            ("daily_token_budget", limits.channel_daily_tokens, channel_id),
            ("workspace_daily_token_budget", limits.workspace_daily_tokens, None),
        ):
            if budget <= 0:
                continue
            counted = [t for t in today if channel is None or t.channel_id == channel]
            used = sum(t.tokens for t in counted)
            held = sum(t.reserved_tokens for t in counted)
            if used + held >= budget:
                return LimitReached(
                    kind=kind,  # type: ignore[arg-type]
                    limit=budget,
                    used=used,
                    held=held,
                    again_at=day + DAY,
                )
        per_hour = limits.user_hourly_requests
        if per_hour > 0:
            asked = sorted(
                t.created_at
                for t in self.turns.values()
                if t.team_id == team_id and t.user_id == user_id and t.created_at >= now - HOUR
            )
            if len(asked) >= per_hour:
                return LimitReached(
                    kind="user_hourly_requests",
                    limit=per_hour,
                    used=len(asked),
                    held=0,
                    again_at=asked[len(asked) - per_hour] + HOUR,
                )
        return None

    # -- threads and turns (storage.threads, storage.held_answers) -----------------------

    async def find_thread(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        self._check()
        thread = self.threads.get((team_id, channel_id, thread_ts))
        if thread is None:
            return None
        return ThreadRecord(
            id=thread.id,
            team_id=team_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            head_response_id=thread.head_response_id,
        )

    async def complete_turn(
        self,
        *,
        turn_id: int,
        response_id: str,
        reply_ts: str | None,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None:
        self._check()
        turn = self.turns[turn_id]
        turn.status, turn.error_code, turn.response_id = "completed", None, response_id
        turn.reply_ts, turn.usage, turn.reserved_tokens = reply_ts, usage, 0
        self._thread_by_id(turn.thread_id).head_response_id = response_id
        self.held.pop(turn_id, None)

    async def fail_turn(
        self,
        *,
        turn_id: int,
        status: str,
        error_code: str | None,
        response_id: str | None = None,
        reply_ts: str | None = None,
        usage: TokenUsage | None = None,
        first_token_at: datetime | None = None,
        only_if_pending: bool = False,
    ) -> bool:
        self._check()
        if status not in CLOSING:
            raise ValueError(f"fail_turn status must be one of {sorted(CLOSING)}")
        turn = self.turns[turn_id]
        if only_if_pending and turn.status != "pending":
            return False
        turn.status, turn.error_code, turn.response_id = status, error_code, response_id
        turn.reply_ts, turn.reserved_tokens = reply_ts, 0
        if usage is not None:
            turn.usage = usage
        self.held.pop(turn_id, None)
        return True

    async def restart_chain(self, *, turn_id: int, previous_response_id: str | None) -> None:
        self._check()
        self.turns[turn_id].previous_response_id = previous_response_id

    async def hold_answer(
        self,
        *,
        turn_id: int,
        text: str,
        response_id: str,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None:
        self._check()
        self.turns[turn_id].response_id = response_id
        self.turns[turn_id].usage = usage
        self.held[turn_id] = text

    # -- transcripts, notes, capabilities (storage.conversation_state) -------------------

    async def add_entries(
        self,
        *,
        thread_id: int,
        turn_id: int,
        entries: Sequence[tuple[str, str | None, str, Sequence[Mapping[str, Any]]]],
    ) -> None:
        self._check()
        for role, author_id, text, files in entries:
            if role not in ("user", "assistant"):
                raise ValueError(f"role must be user or assistant, not {role!r}")
            entry = TranscriptRecord(
                id=next(self._ids),
                turn_id=turn_id,
                role=role,
                author_id=author_id,
                text=text,
                files=tuple(dict(f) for f in files),
            )
            self.transcript.append(entry)
            self.transcript_threads[entry.id] = thread_id

    async def entries(self, *, thread_id: int, before_turn_id: int) -> list[TranscriptRecord]:
        self._check()
        return [
            e
            for e in self.transcript
            if self.transcript_threads[e.id] == thread_id and e.turn_id < before_turn_id
        ]

    async def forget_head(self, *, thread_id: int, response_id: str) -> bool:
        self._check()
        thread = self._thread_by_id(thread_id)
        if thread.head_response_id != response_id:
            return False
        thread.head_response_id = None
        return True

    async def usage_of_response(self, *, thread_id: int, response_id: str) -> ResponseUsage | None:
        self._check()
        for turn in sorted(self.turns.values(), key=lambda t: -t.id):
            if (turn.thread_id, turn.response_id, turn.status) == (
                thread_id,
                response_id,
                "completed",
            ):
                return ResponseUsage(
                    model=turn.model,
                    input_tokens=turn.usage.input_tokens,
                    cached_tokens=turn.usage.cached_tokens,
                    output_tokens=turn.usage.output_tokens,
                    reasoning_tokens=turn.usage.reasoning_tokens,
                )
        return None

    async def note_once(self, *, thread_id: int, kind: str) -> bool:
        self._check()
        if (thread_id, kind) in self.notes:
            return False
        self.notes.add((thread_id, kind))
        return True

    async def capability(self, *, endpoint: str, model: str) -> CapabilityRecord | None:
        self._check()
        return self.capabilities.get((endpoint, model))

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
    ) -> CapabilityRecord:
        self._check()
        before = self.capabilities.get((endpoint, model))
        record = CapabilityRecord(
            endpoint=endpoint,
            model=model,
            chains=chains,
            chains_source=source,
            tools=tools if tools is not None else (before.tools if before else None),
            streaming=streaming
            if streaming is not None
            else (before.streaming if before else None),
            detail=detail,
            checked_at=checked_at or self.now(),
        )
        self.capabilities[(endpoint, model)] = record
        return record

    # -- helpers for tests -----------------------------------------------------------------

    def head(self, thread_ts: str, *, team_id: str = "T1", channel_id: str = "C1") -> str | None:
        thread = self.threads.get((team_id, channel_id, thread_ts))
        return None if thread is None else thread.head_response_id

    def turn_list(self) -> list[MemoryTurn]:
        return sorted(self.turns.values(), key=lambda t: t.id)

    @staticmethod
    def _in(message: QueuedMessage, key: tuple[str, str, str]) -> bool:
        return (message.team_id, message.channel_id, message.thread_ts) == key

    def _thread(self, team_id: str, channel_id: str, thread_ts: str) -> MemoryThread:
        key = (team_id, channel_id, thread_ts)
        if key not in self.threads:
            self.threads[key] = MemoryThread(next(self._ids), team_id, channel_id, thread_ts)
        return self.threads[key]

    def _thread_by_id(self, thread_id: int) -> MemoryThread:
        return next(t for t in self.threads.values() if t.id == thread_id)


# -- the model ------------------------------------------------------------------------------


@dataclass
class Gate:
    """A script step that waits until the test opens it (``reached`` tells the test the stream
    got there)."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def open(self) -> None:
        self.opened.set()


Step = ModelEvent | Exception | Gate


def answer(
    text: str,
    response_id: str,
    *,
    input_tokens: int = 10,
    output_tokens: int = 5,
    chunks: int = 2,
    reasoning: bool = False,
) -> list[Step]:
    """A stream that answers ``text`` in ``chunks`` deltas and completes as ``response_id``."""
    size = max(1, -(-len(text) // chunks))
    steps: list[Step] = [ReasoningDelta("thinking")] if reasoning else []
    steps += [TextDelta(text[i : i + size]) for i in range(0, len(text), size)]
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    steps.append(Completed(ModelResult(response_id=response_id, text=text, usage=usage)))
    return steps


class ScriptedModel:
    """A ``ModelClient`` replaying one script per call, in order; every request recorded.
    Without a script left, a call answers ``answer <n>`` as ``resp_<n>``."""

    def __init__(self, *scripts: list[Step]) -> None:
        self.scripts = list(scripts)
        self.requests: list[ResponseRequest] = []
        self.closed = 0  # streams closed (finished or abandoned)
        self.running = 0  # streams open right now
        self.most_running = 0  # the most streams ever open at once

    def then(self, *scripts: list[Step]) -> ScriptedModel:
        self.scripts.extend(scripts)
        return self

    def stream(self, request: ResponseRequest) -> AsyncGenerator[ModelEvent, None]:
        self.requests.append(request)
        n = len(self.requests)
        script = self.scripts.pop(0) if self.scripts else answer(f"answer {n}", f"resp_{n}")
        return self._play(script)

    async def _play(self, script: list[Step]) -> AsyncGenerator[ModelEvent, None]:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            for step in script:
                if isinstance(step, Gate):
                    step.reached.set()
                    await step.opened.wait()
                elif isinstance(step, Exception):
                    raise step
                else:
                    yield step
                    await asyncio.sleep(0)  # other tasks run between events, as on a network
        finally:
            self.running -= 1
            self.closed += 1


# -- the reply ------------------------------------------------------------------------------


@dataclass
class RecordingSink:
    """One turn's reply as the thread would see it. ``stop_after`` deltas: the user presses
    stop (``TurnStopped``); ``refuse_finish``: Slack refuses the final message."""

    message: IncomingMessage
    events: list[tuple[str, ...]] = field(default_factory=list)
    stop_after: int | None = None
    refuse_finish: bool = False
    refuse_start: DeliveryError | None = None

    async def started(self) -> None:
        self.events.append(("started",))
        if self.refuse_start is not None:
            raise self.refuse_start

    async def reasoning(self) -> None:
        self.events.append(("reasoning",))

    async def delta(self, text: str) -> None:
        self.events.append(("delta", text))
        if self.stop_after is not None and len(self.deltas) >= self.stop_after:
            raise TurnStopped()

    async def finish(self, text: str) -> str | None:
        self.events.append(("finish", text))
        if self.refuse_finish:
            raise DeliveryError("Slack refused the message", code="msg_too_long")
        return f"reply-{self.message.ts}"

    async def fail(self, notice: str, partial_text: str) -> str | None:
        self.events.append(("fail", notice, partial_text))
        return f"reply-{self.message.ts}"

    @property
    def deltas(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "delta"]

    @property
    def final(self) -> str | None:
        """The finished answer, or None."""
        return next((e[1] for e in self.events if e[0] == "finish"), None)

    @property
    def failure(self) -> tuple[str, str] | None:
        """(notice, partial text) of a failure, or None."""
        return next(((e[1], e[2]) for e in self.events if e[0] == "fail"), None)


class RecordingSinks:
    """Opens a :class:`RecordingSink` per reply; ``configure`` sets up the next ones."""

    def __init__(self) -> None:
        self.opened: list[RecordingSink] = []
        self._next: list[dict[str, Any]] = []
        self.factory: Callable[..., RecordingSink] = RecordingSink
        """The sink class (a subclass that shows steps, for the tool loop's tests)."""

    def configure(self, **options: Any) -> None:
        """Options (``stop_after``, ``refuse_finish``, ``refuse_start``) of the next sink."""
        self._next.append(options)

    def open(self, message: IncomingMessage) -> RecordingSink:
        sink = self.factory(message, **(self._next.pop(0) if self._next else {}))
        self.opened.append(sink)
        return sink

    def for_ts(self, ts: str) -> list[RecordingSink]:
        return [s for s in self.opened if s.message.ts == ts]


# -- context, settings, locks -------------------------------------------------------------


class FakeContext:
    """The Slack side of the input: the message as a user item; ``thread`` holds a thread's
    earlier messages as Slack would return them (role, text) when the bot joins mid-way."""

    def __init__(self) -> None:
        self.thread: dict[str, list[tuple[str, str]]] = {}
        self.earlier_reads = 0
        self.replayed: list[list[TranscriptRecord]] = []

    async def current(self, message: IncomingMessage) -> TurnInput:
        return TurnInput(items=[_item("user", message.text)], notices=[])

    async def earlier(self, message: IncomingMessage) -> TurnInput:
        self.earlier_reads += 1
        lines = self.thread.get(message.thread_ts, [])
        return TurnInput(items=[_item(role, text) for role, text in lines], notices=[])

    async def replay(
        self, message: IncomingMessage, entries: Sequence[TranscriptRecord]
    ) -> TurnInput:
        self.replayed.append(list(entries))
        return TurnInput(items=[_item(e.role, e.text) for e in entries], notices=[])


def _item(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": text}


class FakeSettings:
    """Effective settings through the real resolver: environment defaults < ``channel``."""

    def __init__(self, **channel: Any) -> None:
        self.defaults = SCHEMA.defaults(
            {
                "default_model": "m1",
                "default_instructions": "Be brief.",
                "conversation_state": "auto",
            }
        )
        self.channel: dict[str, Any] = dict(channel)

    async def effective(self, *, team_id: str, channel_id: str) -> EffectiveSettings:
        return resolve([("default", self.defaults), ("channel", self.channel)])


class FakeLocales:
    """People's locales and time zones as the edge would read them; ``broken``: the lookup
    raises (the core must still answer)."""

    def __init__(self, **locales: str) -> None:
        self.locales = dict(locales)
        self.asked: list[str] = []
        self.broken = False

    async def locale(self, *, team_id: str, user_id: str) -> PersonLocale:
        self.asked.append(user_id)
        if self.broken:
            raise RuntimeError("lookup failed")
        return PersonLocale(locale=self.locales.get(user_id), timezone="Asia/Tokyo")


class FakeThreadLocks:
    """Thread locks across processes: one holder per thread; ``timeout`` makes every wait
    end in ``ThreadLockTimeout`` (another replica holds the thread)."""

    def __init__(self) -> None:
        self.held: list[tuple[str, str, str]] = []
        self.timeout = False
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, *, team_id: str, channel_id: str, thread_ts: str) -> AsyncIterator[None]:
        key = (team_id, channel_id, thread_ts)
        if self.timeout:
            raise ThreadLockTimeout(f"thread {thread_ts} stayed locked")
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self.held.append(key)
            yield


def message(
    ts: str,
    text: str = "hello",
    *,
    thread_ts: str | None = None,
    event_id: str | None = None,
    user_id: str = "U1",
    mentions_bot: bool = True,
    **more: Any,
) -> IncomingMessage:
    """A message in channel C1 of workspace T1; a new conversation unless ``thread_ts``."""
    return IncomingMessage(
        team_id="T1",
        channel_id="C1",
        thread_ts=thread_ts or ts,
        ts=ts,
        user_id=user_id,
        text=text,
        event_id=event_id if event_id is not None else f"Ev{ts}",
        mentions_bot=mentions_bot,
        starts_thread=thread_ts is None,
        **more,
    )
