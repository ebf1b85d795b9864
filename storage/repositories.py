"""The storage facade: :class:`Store` and the records it returns.

Every public method is one short transaction. None of them is ever held open across a
network call: the conversation layer calls ``start_turn`` before the model request and
``complete_turn`` / ``fail_turn`` after it, each its own unit of work.

Records are frozen dataclasses, not ORM objects, so callers cannot trigger lazy loads or
mutate rows by accident.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import Select, delete, exists, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.engine import READ_ONLY
from storage.migrate import current_revision_sync, head_revision
from storage.models import (
    SETTING_FIELDS,
    ChannelSettings,
    EventClaim,
    HeldAnswer,
    SettingsAudit,
    Thread,
    Turn,
    TurnStatus,
    utcnow,
)

__all__ = [
    "AbandonedTurn",
    "ChannelSettingsRecord",
    "HeldAnswerRecord",
    "PruneCounts",
    "SettingsAuditRecord",
    "Store",
    "ThreadRecord",
    "TokenUsage",
    "TurnNotFoundError",
    "TurnRecord",
    "TurnStart",
    "UsageCounts",
    "UsageGrouping",
    "UsageRow",
]

UsageGrouping = Literal["channel", "user", "model"]
"""What ``Store.usage_since`` groups turns by."""

_CLOSING_STATUSES: Final = frozenset(
    {TurnStatus.FAILED, TurnStatus.INCOMPLETE, TurnStatus.STOPPED, TurnStatus.UNDELIVERED}
)

# Python types accepted per setting. bool is an int subclass, so it is refused where a
# number is expected; and a bool setting takes only real bools (not 0/1).
_SETTING_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "model": (str,),
    "instructions": (str,),
    "temperature": (int, float),
    "top_p": (int, float),
    "max_output_tokens": (int,),
    "reasoning_effort": (str,),
    "reasoning_summary": (bool,),
    "truncation": (str,),
    "require_mention": (bool,),
    "enabled": (bool,),
    "daily_token_budget": (int,),
    "workspace_daily_token_budget": (int,),
    "user_hourly_requests": (int,),
}
assert set(_SETTING_TYPES) == set(SETTING_FIELDS)


class TurnNotFoundError(LookupError):
    """No turn has the given id."""

    def __init__(self, turn_id: int) -> None:
        super().__init__(f"turn {turn_id} not found")
        self.turn_id = turn_id


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one response, already normalised by the model client."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    """A thread and the head of its response chain."""

    id: int
    team_id: str
    channel_id: str
    thread_ts: str
    head_response_id: str | None


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What ``start_turn`` created: the request continues from ``previous_response_id``."""

    turn_id: int
    thread_id: int
    previous_response_id: str | None


@dataclass(frozen=True, slots=True)
class AbandonedTurn:
    """A turn a crash left pending, now closed; enough to tell its thread in Slack."""

    turn_id: int
    team_id: str
    channel_id: str
    thread_ts: str
    user_ts: str


def _held() -> Any:
    """Turns with an answer held: left to ``list_held_answers`` (they are resumed, not lost)."""
    return exists().where(HeldAnswer.turn_id == Turn.id)


@dataclass(frozen=True, slots=True)
class HeldAnswerRecord:
    """An answer the model finished that Slack does not hold whole yet (see ``hold_answer``)."""

    turn_id: int
    team_id: str
    channel_id: str
    thread_ts: str
    user_ts: str
    user_id: str
    text: str
    delivery: str | None
    response_id: str
    usage: TokenUsage
    first_token_at: datetime | None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """Every column of a ``turns`` row."""

    id: int
    thread_id: int
    team_id: str
    channel_id: str
    user_id: str
    event_id: str | None
    user_ts: str
    reply_ts: str | None
    status: str
    error_code: str | None
    response_id: str | None
    previous_response_id: str | None
    model: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    created_at: datetime
    started_at: datetime | None
    first_token_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None

    @property
    def usage(self) -> TokenUsage:
        """The token counts as a :class:`TokenUsage`."""
        return TokenUsage(
            input_tokens=self.input_tokens,
            cached_tokens=self.cached_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class ChannelSettingsRecord:
    """A ``channel_settings`` row; a None setting means "inherit"."""

    team_id: str
    channel_id: str
    model: str | None
    instructions: str | None
    temperature: float | None
    top_p: float | None
    max_output_tokens: int | None
    reasoning_effort: str | None
    reasoning_summary: bool | None
    truncation: str | None
    require_mention: bool | None
    enabled: bool | None
    daily_token_budget: int | None
    workspace_daily_token_budget: int | None
    user_hourly_requests: int | None
    updated_at: datetime
    updated_by: str | None

    def overrides(self) -> dict[str, object]:
        """The settings this row sets (non-None), keyed by the names in ``SETTING_FIELDS``."""
        values = {name: getattr(self, name) for name in SETTING_FIELDS}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True, slots=True)
class SettingsAuditRecord:
    """One recorded change of one setting; a None value means "inherit"."""

    id: int
    team_id: str
    channel_id: str
    """The channel, or ``""`` for the workspace defaults."""
    field: str
    old_value: object
    """The value before the change, with its Python type (None: it was inheriting)."""
    new_value: object
    """The value after the change (None: it now inherits)."""
    changed_by: str | None
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """Tokens and turns summed over some turns (input includes cached, output reasoning)."""

    turns: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (what daily budgets count)."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(
            turns=self.turns + other.turns,
            input_tokens=self.input_tokens + other.input_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of ``Store.usage_since``: a channel, user or model of one workspace."""

    team_id: str
    key: str
    """The channel id, user id or model name the row groups by."""
    counts: UsageCounts
    by_model: Mapping[str, UsageCounts]
    """The same counts split by model (for cost estimates; one entry when grouped by model)."""


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """Rows ``Store.prune_history`` deleted, per table."""

    turns: int = 0
    threads: int = 0
    event_claims: int = 0
    settings_audit: int = 0

    @property
    def total(self) -> int:
        return self.turns + self.threads + self.event_claims + self.settings_audit


_TURN_FIELDS: Final = tuple(field.name for field in dataclasses.fields(TurnRecord))


def _turn_record(turn: Turn) -> TurnRecord:
    return TurnRecord(**{name: getattr(turn, name) for name in _TURN_FIELDS})


_SETTINGS_RECORD_FIELDS: Final = tuple(
    field.name for field in dataclasses.fields(ChannelSettingsRecord)
)
# The record lists the settings in SETTING_FIELDS order, between the keys and the metadata.
assert _SETTINGS_RECORD_FIELDS[2:-2] == SETTING_FIELDS


def _settings_record(row: ChannelSettings) -> ChannelSettingsRecord:
    return ChannelSettingsRecord(**{name: getattr(row, name) for name in _SETTINGS_RECORD_FIELDS})


def _encode_setting(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def _decode_setting(encoded: str | None) -> object:
    return None if encoded is None else json.loads(encoded)


def _audit_record(row: SettingsAudit) -> SettingsAuditRecord:
    return SettingsAuditRecord(
        id=row.id,
        team_id=row.team_id,
        channel_id=row.channel_id,
        field=row.field,
        old_value=_decode_setting(row.old_value),
        new_value=_decode_setting(row.new_value),
        changed_by=row.changed_by,
        changed_at=row.changed_at,
    )


def _duration_ms(started_at: datetime | None, finished_at: datetime) -> int | None:
    if started_at is None:
        return None
    return max(0, round((finished_at - started_at).total_seconds() * 1000))


def _usage_values(usage: TokenUsage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "cached_tokens": usage.cached_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
    }


def _check_setting_names(names: Sequence[str] | Mapping[str, object]) -> None:
    unknown = sorted(set(names) - set(SETTING_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown channel setting(s) {', '.join(unknown)}; known: {', '.join(SETTING_FIELDS)}"
        )


def _clean_setting_values(values: Mapping[str, object]) -> dict[str, object]:
    _check_setting_names(values)
    cleaned: dict[str, object] = {}
    for name, value in values.items():
        if value is not None:
            allowed = _SETTING_TYPES[name]
            if isinstance(value, bool) != (bool in allowed) or not isinstance(value, allowed):
                expected = " or ".join(kind.__name__ for kind in allowed)
                raise TypeError(f"{name} must be {expected} or None, not {type(value).__name__}")
            if float in allowed and isinstance(value, int | float):
                value = float(value)  # store 1 as 1.0 so reads return one type
        cleaned[name] = value
    return cleaned


class Store:
    """All persistence the bot needs, one short transaction per method.

    Build it with ``Store(create_session_factory(engine))``. Methods take keyword arguments
    only, so the Slack keys (team, channel, thread ts) can never be passed in the wrong order.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        bind = session_factory.kw.get("bind")
        # SQLite has one writer at a time. Within this process, writers queue on an asyncio
        # lock (first come, first served) instead of on SQLite's busy handler, which sleeps
        # and retries and, with hundreds of concurrent turns, can starve one past its busy
        # timeout ("database is locked"). Other processes (the CLI) still meet busy_timeout.
        self._write_lock: asyncio.Lock | None = (
            asyncio.Lock() if bind is not None and bind.dialect.name == "sqlite" else None
        )

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        """The factory the store was built with (for tests and one-off maintenance)."""
        return self._session_factory

    # -- units of work --------------------------------------------------------------------

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction that commits on success and rolls back on error."""
        if self._write_lock is None:
            async with self._session_factory() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._session_factory() as session, session.begin():
            yield session

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only (SQLite starts it DEFERRED, so it never waits on writers)."""
        async with self._session_factory() as session:
            await session.connection(execution_options=READ_ONLY)
            yield session

    # -- health ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self._reading() as session:
            await session.execute(text("SELECT 1"))

    async def schema_is_current(self) -> bool:
        """Whether the database has been migrated to the newest revision in the checkout."""
        async with self._reading() as session:
            connection = await session.connection()
            current = await connection.run_sync(current_revision_sync)
        return current == head_revision()

    # -- event dedupe ---------------------------------------------------------------------

    async def claim_event(self, *, keys: Sequence[str]) -> bool:
        """Claim an incoming Slack event under all of ``keys`` at once.

        True: the caller owns the event and must handle it. False: some key was already
        claimed (a Slack retry, or the same message as both ``app_mention`` and ``message``)
        and nothing was written. Atomic across processes: it relies on the primary key, so
        of any number of concurrent claims sharing a key exactly one wins.
        """
        # Sorted and de-duplicated: every claimant inserts shared keys in the same order,
        # so two PostgreSQL transactions cannot deadlock waiting on each other's rows.
        unique_keys = sorted(set(keys))
        if not unique_keys:
            raise ValueError("claim_event needs at least one key")
        now = utcnow()
        try:
            async with self._writing() as session:
                await session.execute(
                    insert(EventClaim), [{"key": key, "claimed_at": now} for key in unique_keys]
                )
        except IntegrityError:
            # The transaction was rolled back: no key of this claim was stored.
            return False
        return True

    async def prune_event_claims(self, *, older_than: datetime) -> int:
        """Delete claims made before ``older_than`` (aware datetime); returns how many."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be a timezone-aware datetime")
        async with self._writing() as session:
            result = await session.execute(
                delete(EventClaim).where(EventClaim.claimed_at < older_than)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- threads and turns ----------------------------------------------------------------

    async def find_thread(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        """The thread with these Slack keys, or None if the bot never answered in it."""
        async with self._reading() as session:
            row = await session.scalar(
                select(Thread).where(
                    Thread.team_id == team_id,
                    Thread.channel_id == channel_id,
                    Thread.thread_ts == thread_ts,
                )
            )
        if row is None:
            return None
        return ThreadRecord(
            id=row.id,
            team_id=row.team_id,
            channel_id=row.channel_id,
            thread_ts=row.thread_ts,
            head_response_id=row.head_response_id,
        )

    async def start_turn(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        user_ts: str,
        event_id: str | None,
        model: str,
    ) -> TurnStart:
        """Record a pending turn, creating the thread row on its first turn.

        The turn continues from the thread's current chain head, returned as
        ``previous_response_id`` for the request.
        """
        now = utcnow()
        async with self._writing() as session:
            thread_id, head = await _get_or_create_thread(
                session, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts
            )
            turn_id = await session.scalar(
                insert(Turn)
                .values(
                    thread_id=thread_id,
                    team_id=team_id,
                    channel_id=channel_id,
                    user_id=user_id,
                    event_id=event_id,
                    user_ts=user_ts,
                    status=TurnStatus.PENDING.value,
                    previous_response_id=head,
                    model=model,
                    created_at=now,
                    started_at=now,
                )
                .returning(Turn.id)
            )
        assert turn_id is not None
        return TurnStart(turn_id=turn_id, thread_id=thread_id, previous_response_id=head)

    async def restart_chain(self, *, turn_id: int, previous_response_id: str | None) -> None:
        """Record that the turn is being re-sent continuing from ``previous_response_id``.

        Used when the endpoint lost the chain and the turn is rebuilt from the Slack thread
        (usually with None: a fresh chain).
        """
        async with self._writing() as session:
            result = await session.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(previous_response_id=previous_response_id)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise TurnNotFoundError(turn_id)

    async def complete_turn(
        self,
        *,
        turn_id: int,
        response_id: str,
        reply_ts: str | None,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None:
        """Close the turn as completed and advance its thread's chain head to ``response_id``.

        Both changes commit together, so the head only ever points at a response whose turn
        is recorded as completed.
        """
        async with self._writing() as session:
            found = (
                await session.execute(
                    select(Turn.thread_id, Turn.started_at).where(Turn.id == turn_id)
                )
            ).one_or_none()
            if found is None:
                raise TurnNotFoundError(turn_id)
            thread_id, started_at = found
            now = utcnow()
            await session.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(
                    status=TurnStatus.COMPLETED.value,
                    error_code=None,
                    response_id=response_id,
                    reply_ts=reply_ts,
                    first_token_at=first_token_at,
                    finished_at=now,
                    duration_ms=_duration_ms(started_at, now),
                    **_usage_values(usage),
                )
            )
            await session.execute(
                update(Thread)
                .where(Thread.id == thread_id)
                .values(head_response_id=response_id, updated_at=now)
            )
            await session.execute(delete(HeldAnswer).where(HeldAnswer.turn_id == turn_id))

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
        """Close the turn without a usable answer; the thread's chain head stays put.

        ``status`` is one of failed, incomplete, stopped or undelivered (a ``TurnStatus``).
        With ``only_if_pending`` a turn that has closed meanwhile keeps its outcome; returns
        whether this call closed it.
        """
        if status not in _CLOSING_STATUSES:
            allowed = ", ".join(sorted(_CLOSING_STATUSES))
            raise ValueError(f"fail_turn status must be one of {allowed}, not {status!r}")
        async with self._writing() as session:
            started_at = await session.scalar(select(Turn.started_at).where(Turn.id == turn_id))
            now = utcnow()
            values: dict[str, Any] = {
                "status": str(status),
                "error_code": error_code,
                "response_id": response_id,
                "reply_ts": reply_ts,
                "first_token_at": first_token_at,
                "finished_at": now,
                "duration_ms": _duration_ms(started_at, now),
            }
            if usage is not None:
                values.update(_usage_values(usage))
            statement = update(Turn).where(Turn.id == turn_id)
            if only_if_pending:
                statement = statement.where(Turn.status == TurnStatus.PENDING.value)
            result = await session.execute(statement.values(values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                if only_if_pending and started_at is not None:
                    return False
                raise TurnNotFoundError(turn_id)
            await session.execute(delete(HeldAnswer).where(HeldAnswer.turn_id == turn_id))
            return True

    async def hold_answer(
        self,
        *,
        turn_id: int,
        text: str,
        response_id: str,
        usage: TokenUsage,
        first_token_at: datetime | None = None,
    ) -> None:
        """Keep a finished answer with its pending turn until Slack holds it whole
        (``complete_turn`` or ``fail_turn`` lets it go); a restart delivers what is held."""
        async with self._writing() as session:
            await session.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(
                    response_id=response_id, first_token_at=first_token_at, **_usage_values(usage)
                )
            )
            await session.execute(delete(HeldAnswer).where(HeldAnswer.turn_id == turn_id))
            await session.execute(insert(HeldAnswer).values(turn_id=turn_id, text=text))

    async def record_delivery(
        self, *, team_id: str, channel_id: str, user_ts: str, state: str
    ) -> None:
        """Note how far the held answer to the message ``user_ts`` got into Slack."""
        async with self._writing() as session:
            turn_ids = select(Turn.id).where(
                Turn.team_id == team_id,
                Turn.channel_id == channel_id,
                Turn.user_ts == user_ts,
                Turn.status == TurnStatus.PENDING.value,
            )
            await session.execute(
                update(HeldAnswer).where(HeldAnswer.turn_id.in_(turn_ids)).values(delivery=state)
            )

    async def list_held_answers(self) -> list[HeldAnswerRecord]:
        """Answers held for turns still pending, oldest first."""
        async with self._reading() as session:
            rows = (
                await session.execute(
                    select(HeldAnswer, Turn, Thread.thread_ts)
                    .join(Turn, Turn.id == HeldAnswer.turn_id)
                    .join(Thread, Thread.id == Turn.thread_id)
                    .where(Turn.status == TurnStatus.PENDING.value)
                    .order_by(Turn.id)
                )
            ).all()
        return [
            HeldAnswerRecord(
                turn_id=turn.id,
                team_id=turn.team_id,
                channel_id=turn.channel_id,
                thread_ts=thread_ts,
                user_ts=turn.user_ts,
                user_id=turn.user_id,
                text=held.text,
                delivery=held.delivery,
                response_id=turn.response_id or "",
                usage=TokenUsage(
                    input_tokens=turn.input_tokens,
                    cached_tokens=turn.cached_tokens,
                    output_tokens=turn.output_tokens,
                    reasoning_tokens=turn.reasoning_tokens,
                ),
                first_token_at=turn.first_token_at,
            )
            for held, turn, thread_ts in rows
        ]

    async def is_held(self, *, turn_id: int) -> bool:
        """Whether the turn is still pending with an answer held."""
        async with self._reading() as session:
            found = await session.scalar(
                select(HeldAnswer.turn_id)
                .join(Turn, Turn.id == HeldAnswer.turn_id)
                .where(HeldAnswer.turn_id == turn_id, Turn.status == TurnStatus.PENDING.value)
            )
        return found is not None

    async def list_pending_turns(self) -> list[AbandonedTurn]:
        """Every turn still pending, oldest first (with several replicas some of them are
        running right now: see ``storage.thread_locks``)."""
        async with self._session_factory() as session:
            rows = (
                await session.execute(
                    select(Turn.id, Turn.team_id, Turn.channel_id, Thread.thread_ts, Turn.user_ts)
                    .join(Thread, Thread.id == Turn.thread_id)
                    .where(Turn.status == TurnStatus.PENDING.value, ~_held())
                    .order_by(Turn.id)
                )
            ).all()
        return [
            AbandonedTurn(
                turn_id=row.id,
                team_id=row.team_id,
                channel_id=row.channel_id,
                thread_ts=row.thread_ts,
                user_ts=row.user_ts,
            )
            for row in rows
        ]

    async def close_abandoned_turns(
        self, *, error_code: str = "interrupted"
    ) -> list[AbandonedTurn]:
        """Close every turn still pending (left by a crash) as failed with ``error_code``.

        Call it once at start-up, before taking events; returns the closed turns so the
        service can tell each thread that its answer was lost.
        """
        async with self._writing() as session:
            rows = (
                await session.execute(
                    select(Turn.id, Turn.team_id, Turn.channel_id, Thread.thread_ts, Turn.user_ts)
                    .join(Thread, Thread.id == Turn.thread_id)
                    .where(Turn.status == TurnStatus.PENDING.value, ~_held())
                    .order_by(Turn.id)
                )
            ).all()
            abandoned = [
                AbandonedTurn(
                    turn_id=row.id,
                    team_id=row.team_id,
                    channel_id=row.channel_id,
                    thread_ts=row.thread_ts,
                    user_ts=row.user_ts,
                )
                for row in rows
            ]
            if abandoned:
                await session.execute(
                    update(Turn)
                    .where(
                        Turn.id.in_([turn.turn_id for turn in abandoned]),
                        # Re-checked so a turn that finished meanwhile keeps its real outcome.
                        Turn.status == TurnStatus.PENDING.value,
                    )
                    .values(
                        status=TurnStatus.FAILED.value,
                        error_code=error_code,
                        finished_at=utcnow(),
                    )
                )
        return abandoned

    async def get_turn(self, *, turn_id: int) -> TurnRecord:
        """The turn with this id (raises :class:`TurnNotFoundError`)."""
        async with self._reading() as session:
            turn = await session.get(Turn, turn_id)
        if turn is None:
            raise TurnNotFoundError(turn_id)
        return _turn_record(turn)

    async def list_turns(
        self, *, team_id: str, channel_id: str, thread_ts: str
    ) -> list[TurnRecord]:
        """A thread's turns, oldest first (empty if the thread is unknown)."""
        async with self._reading() as session:
            turns = await session.scalars(
                select(Turn)
                .join(Thread, Thread.id == Turn.thread_id)
                .where(
                    Thread.team_id == team_id,
                    Thread.channel_id == channel_id,
                    Thread.thread_ts == thread_ts,
                )
                .order_by(Turn.id)
            )
            return [_turn_record(turn) for turn in turns]

    # -- channel settings -----------------------------------------------------------------

    async def get_channel_settings(
        self, *, team_id: str, channel_id: str
    ) -> ChannelSettingsRecord | None:
        """The overrides for a channel (``channel_id=""``: the workspace defaults), if any."""
        async with self._reading() as session:
            row = await session.scalar(_settings_query(team_id=team_id, channel_id=channel_id))
        return None if row is None else _settings_record(row)

    async def update_channel_settings(
        self,
        *,
        team_id: str,
        channel_id: str,
        values: Mapping[str, object],
        updated_by: str | None,
    ) -> ChannelSettingsRecord:
        """Set the given settings (None: back to inherit), keeping the others; returns the row.

        Raises ValueError for an unknown name and TypeError for a wrongly typed value, before
        anything is written; all given settings are saved together or not at all. Each
        setting whose value actually changes gets a ``settings_audit`` row (changed by
        ``updated_by``), committed with the change.
        """
        cleaned = _clean_setting_values(values)
        async with self._writing() as session:
            row = await _get_or_create_settings(session, team_id=team_id, channel_id=channel_id)
            now = utcnow()
            _change_settings(session, row, cleaned, changed_by=updated_by, changed_at=now)
            row.updated_by = updated_by
            # Set explicitly: onupdate would not fire when no setting actually changed.
            row.updated_at = now
            await session.flush()
            return _settings_record(row)

    async def reset_channel_settings(
        self,
        *,
        team_id: str,
        channel_id: str,
        fields: Sequence[str] | None = None,
        updated_by: str | None = None,
    ) -> ChannelSettingsRecord | None:
        """Put ``fields`` (None: all of them) back to inherit; returns the row, if there is one.

        Raises ValueError for an unknown name before anything is written. Each setting that
        was set gets a ``settings_audit`` row (changed by ``updated_by``), committed with the
        change.
        """
        if isinstance(fields, str):
            # A lone name would otherwise be read as a sequence of one-letter names.
            raise TypeError("fields must be a sequence of setting names, not a string")
        names = SETTING_FIELDS if fields is None else tuple(fields)
        _check_setting_names(names)
        async with self._writing() as session:
            row = await session.scalar(
                _settings_query(team_id=team_id, channel_id=channel_id).with_for_update()
            )
            if row is None:
                return None
            now = utcnow()
            _change_settings(
                session,
                row,
                dict.fromkeys(names),
                changed_by=updated_by,
                changed_at=now,
            )
            row.updated_by = updated_by
            row.updated_at = now
            await session.flush()
            return _settings_record(row)

    async def list_channel_settings(self, *, team_id: str) -> list[ChannelSettingsRecord]:
        """Every settings row of a workspace (its defaults row ``""`` first), by channel id."""
        async with self._reading() as session:
            rows = await session.scalars(
                select(ChannelSettings)
                .where(ChannelSettings.team_id == team_id)
                .order_by(ChannelSettings.channel_id)
            )
            return [_settings_record(row) for row in rows]

    async def list_settings_audit(
        self, *, team_id: str, channel_id: str | None = None, limit: int = 50
    ) -> list[SettingsAuditRecord]:
        """The newest ``limit`` setting changes of a workspace, newest first.

        ``channel_id`` narrows them to one channel (``""``: the workspace defaults); None
        keeps every layer of the workspace.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        query = select(SettingsAudit).where(SettingsAudit.team_id == team_id)
        if channel_id is not None:
            query = query.where(SettingsAudit.channel_id == channel_id)
        # id breaks ties between the fields of one change, which share changed_at.
        query = query.order_by(SettingsAudit.changed_at.desc(), SettingsAudit.id.desc())
        async with self._reading() as session:
            rows = await session.scalars(query.limit(limit))
            return [_audit_record(row) for row in rows]

    # -- usage ----------------------------------------------------------------------------

    async def tokens_used_since(
        self, *, team_id: str, channel_id: str | None, since: datetime
    ) -> int:
        """Input plus output tokens of a channel's (``channel_id=None``: the whole workspace's)
        turns created at or after ``since``.

        Counts turns of every status (a failed or stopped turn may still have been billed).
        """
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        query = select(func.coalesce(func.sum(Turn.input_tokens + Turn.output_tokens), 0)).where(
            Turn.team_id == team_id,
            Turn.created_at >= since,
        )
        if channel_id is not None:
            query = query.where(Turn.channel_id == channel_id)
        async with self._reading() as session:
            total = await session.scalar(query)
        return int(total or 0)

    async def turns_by_user_since(self, *, team_id: str, user_id: str, since: datetime) -> int:
        """How many turns (questions) one person started in the workspace since ``since``."""
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        query = select(func.count(Turn.id)).where(
            Turn.team_id == team_id, Turn.user_id == user_id, Turn.created_at >= since
        )
        async with self._reading() as session:
            total = await session.scalar(query)
        return int(total or 0)

    async def usage_since(
        self,
        *,
        since: datetime,
        by: UsageGrouping,
        team_id: str | None = None,
        channel_id: str | None = None,
    ) -> list[UsageRow]:
        """Tokens and turn counts of the turns created at or after ``since``, grouped ``by``
        channel, user or model, per workspace; most tokens (input plus output) first.

        ``team_id`` None covers every workspace; ``channel_id`` (which needs ``team_id``)
        narrows to one channel. Counts turns of every status, like ``tokens_used_since``.
        """
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be a timezone-aware datetime")
        if channel_id is not None and team_id is None:
            raise ValueError("channel_id needs team_id")
        columns = {"channel": Turn.channel_id, "user": Turn.user_id, "model": Turn.model}
        if by not in columns:
            raise ValueError(f"by must be one of {', '.join(columns)}, not {by!r}")
        key = columns[by]
        query = select(
            Turn.team_id,
            key.label("key"),
            Turn.model,
            func.count(Turn.id),
            func.coalesce(func.sum(Turn.input_tokens), 0),
            func.coalesce(func.sum(Turn.cached_tokens), 0),
            func.coalesce(func.sum(Turn.output_tokens), 0),
            func.coalesce(func.sum(Turn.reasoning_tokens), 0),
        ).where(Turn.created_at >= since)
        if team_id is not None:
            query = query.where(Turn.team_id == team_id)
        if channel_id is not None:
            query = query.where(Turn.channel_id == channel_id)
        # Grouped by model too, so callers can price each model's share.
        query = query.group_by(Turn.team_id, key, Turn.model)
        async with self._reading() as session:
            parts = (await session.execute(query)).all()
        groups: dict[tuple[str, str], dict[str, UsageCounts]] = {}
        for team, group_key, model, turns, input_t, cached_t, output_t, reasoning_t in parts:
            counts = UsageCounts(
                turns=int(turns),
                input_tokens=int(input_t),
                cached_tokens=int(cached_t),
                output_tokens=int(output_t),
                reasoning_tokens=int(reasoning_t),
            )
            models = groups.setdefault((team, group_key), {})
            models[model] = models.get(model, UsageCounts()) + counts
        rows = [
            UsageRow(
                team_id=team,
                key=group_key,
                counts=sum(models.values(), UsageCounts()),
                by_model=dict(sorted(models.items())),
            )
            for (team, group_key), models in groups.items()
        ]
        rows.sort(key=lambda row: (-row.counts.total_tokens, row.team_id, row.key))
        return rows

    async def top_users(
        self, *, team_id: str, since: datetime, channel_id: str | None = None, limit: int = 5
    ) -> list[UsageRow]:
        """The ``limit`` users of a workspace (or of one channel) with the most tokens since
        ``since``, most first."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        rows = await self.usage_since(
            since=since, by="user", team_id=team_id, channel_id=channel_id
        )
        return rows[:limit]

    # -- retention ------------------------------------------------------------------------

    async def prune_history(self, *, older_than: datetime) -> PruneCounts:
        """Delete what is older than ``older_than`` (aware datetime); returns the counts.

        Turns created before it; then threads left without turns whose ``updated_at`` is
        before it; event claims and settings-audit rows from before it. One short
        transaction per table, so the service keeps running meanwhile. Channel settings
        themselves are never pruned.
        """
        if older_than.tzinfo is None or older_than.utcoffset() is None:
            raise ValueError("older_than must be a timezone-aware datetime")
        async with self._writing() as session:
            turns = await session.execute(delete(Turn).where(Turn.created_at < older_than))
        async with self._writing() as session:
            has_turns = exists().where(Turn.thread_id == Thread.id)
            threads = await session.execute(
                delete(Thread).where(Thread.updated_at < older_than, ~has_turns)
            )
        claims = await self.prune_event_claims(older_than=older_than)
        async with self._writing() as session:
            audit = await session.execute(
                delete(SettingsAudit).where(SettingsAudit.changed_at < older_than)
            )
        return PruneCounts(
            turns=int(turns.rowcount),  # type: ignore[attr-defined]
            threads=int(threads.rowcount),  # type: ignore[attr-defined]
            event_claims=claims,
            settings_audit=int(audit.rowcount),  # type: ignore[attr-defined]
        )


def _settings_query(*, team_id: str, channel_id: str) -> Select[ChannelSettings]:
    return select(ChannelSettings).where(
        ChannelSettings.team_id == team_id, ChannelSettings.channel_id == channel_id
    )


def _change_settings(
    session: AsyncSession,
    row: ChannelSettings,
    values: Mapping[str, object],
    *,
    changed_by: str | None,
    changed_at: datetime,
) -> None:
    """Set ``values`` on ``row`` and add an audit row for each value that actually changes."""
    for name, new in values.items():
        old = getattr(row, name)
        # Unchanged values leave no audit trail (the type check keeps e.g. 1 == 1.0 honest).
        if old == new and type(old) is type(new):
            continue
        setattr(row, name, new)
        session.add(
            SettingsAudit(
                team_id=row.team_id,
                channel_id=row.channel_id,
                field=name,
                old_value=_encode_setting(old),
                new_value=_encode_setting(new),
                changed_by=changed_by,
                changed_at=changed_at,
            )
        )


async def _get_or_create_thread(
    session: AsyncSession, *, team_id: str, channel_id: str, thread_ts: str
) -> tuple[int, str | None]:
    """(id, head_response_id) of the thread, inserting it if needed; race-safe."""
    query = select(Thread.id, Thread.head_response_id).where(
        Thread.team_id == team_id,
        Thread.channel_id == channel_id,
        Thread.thread_ts == thread_ts,
    )
    found = (await session.execute(query)).one_or_none()
    if found is not None:
        existing_id, head = found
        return existing_id, head
    now = utcnow()
    try:
        # A savepoint, so losing the race to another process only undoes this insert. On
        # PostgreSQL the insert waits for the other transaction and then hits the unique
        # constraint; the re-select below (READ COMMITTED) sees the winner's row. On SQLite
        # BEGIN IMMEDIATE already serialises writers, so the race cannot happen there.
        async with session.begin_nested():
            thread_id = await session.scalar(
                insert(Thread)
                .values(
                    team_id=team_id,
                    channel_id=channel_id,
                    thread_ts=thread_ts,
                    created_at=now,
                    updated_at=now,
                )
                .returning(Thread.id)
            )
    except IntegrityError:
        winner_id, head = (await session.execute(query)).one()
        return winner_id, head
    assert thread_id is not None
    return thread_id, None


async def _get_or_create_settings(
    session: AsyncSession, *, team_id: str, channel_id: str
) -> ChannelSettings:
    """The settings row for the channel, inserting an all-inherit one if needed; race-safe.

    The row is locked (PostgreSQL ``FOR UPDATE``; SQLite's BEGIN IMMEDIATE already serialises
    writers) so the old values audited are the ones this transaction replaces.
    """
    query = _settings_query(team_id=team_id, channel_id=channel_id).with_for_update()
    row: ChannelSettings | None = await session.scalar(query)
    if row is not None:
        return row
    try:
        async with session.begin_nested():  # see _get_or_create_thread
            row = ChannelSettings(team_id=team_id, channel_id=channel_id, updated_at=utcnow())
            session.add(row)
    except IntegrityError:
        row = await session.scalar(query)
        assert row is not None
    return row
