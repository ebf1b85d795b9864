"""Messages accepted from Slack until they become turns, and the admission of a turn under the
person's and the channel's limits, each one atomic step.

Accepting stores the message (and claims its event) before Slack gets its answer, so a
message waiting behind a running turn of its thread survives a crash or a shutdown: it is
deleted only in the transaction that starts its turn, or once it was refused or ignored. Each
row names its ``owner``, the process that will answer it; another process adopts rows only
from owners that are gone (``adopt_orphans``).

Admission checks the hourly question limit and the daily token budgets and records the turn in
one transaction. Concurrent admissions that share a limit are serialised: SQLite has one
writer at a time (the store's write queue and ``BEGIN IMMEDIATE``); PostgreSQL takes a
transaction-scoped advisory lock per limit (person, channel, workspace), so of eight parallel
questions against a limit of two exactly two are admitted.

Token budgets cannot know a turn's cost before the model answers, so a running turn holds a
reservation (``turns.reserved_tokens``): the thread's size so far (its last answer's input
plus output, which the chain bills again as input) plus the caller's estimate for the new
message and its answer. A turn is admitted while used + held < budget (the same rule a lone
turn meets when nothing is in flight), and the reservation is replaced by the real usage when
the turn closes (``Store.complete_turn`` / ``fail_turn``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.advisory import HOLD_FOR_TRANSACTION
from storage.claims import claim_rows
from storage.errors import StorageError
from storage.models import AcceptedMessage, EventClaim, Thread, Turn, TurnStatus, utcnow
from storage.records import (
    Acceptance,
    AcceptResult,
    LimitKind,
    LimitReached,
    QueuedMessage,
    TurnLimits,
    TurnStart,
)
from storage.repositories import Store
from storage.threads import get_or_create_thread, insert_pending_turn

__all__ = [
    "AcceptResult",
    "Acceptance",
    "Intake",
    "LimitKind",
    "LimitReached",
    "QueuedMessage",
    "TurnLimits",
]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _queued(row: AcceptedMessage) -> QueuedMessage:
    return QueuedMessage(
        id=row.id,
        team_id=row.team_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        ts=row.ts,
        user_id=row.user_id,
        event_id=row.event_id,
        payload=json.loads(row.payload),
        owner=row.owner,
    )


def _in_thread(team_id: str, channel_id: str, thread_ts: str) -> Any:
    return (
        (AcceptedMessage.team_id == team_id)
        & (AcceptedMessage.channel_id == channel_id)
        & (AcceptedMessage.thread_ts == thread_ts)
    )


class Intake:
    """See the module docstring. Shares ``store``'s units of work (and SQLite write queue)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- accepting -------------------------------------------------------------------------

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
        """Claim the message's event under ``claim_keys`` and store it, together or not at all.

        ``needs_thread``: the message is not addressed to the bot, so it is taken only in a
        thread the bot is part of, or one where a message is already waiting (the bot's first
        turn there may not have started yet). Other messages store nothing.
        """
        if needs_thread:
            async with self._store.reading() as session:
                known = await session.scalar(
                    select(
                        or_(
                            exists().where(
                                Thread.team_id == team_id,
                                Thread.channel_id == channel_id,
                                Thread.thread_ts == thread_ts,
                            ),
                            exists().where(_in_thread(team_id, channel_id, thread_ts)),
                        )
                    )
                )
            if not known:
                return AcceptResult(Acceptance.NOT_IN_THREAD)
        now = utcnow()
        claims = claim_rows(claim_keys, now=now)
        try:
            async with self._store.writing() as session:
                await session.execute(insert(EventClaim), claims)
                queued_id = await session.scalar(
                    insert(AcceptedMessage)
                    .values(
                        team_id=team_id,
                        channel_id=channel_id,
                        thread_ts=thread_ts,
                        ts=ts,
                        user_id=user_id,
                        event_id=event_id,
                        payload=json.dumps(payload, ensure_ascii=False),
                        owner=owner,
                        accepted_at=now,
                    )
                    .returning(AcceptedMessage.id)
                )
        except StorageError as exc:
            if exc.code != "integrity":
                raise
            return AcceptResult(Acceptance.DUPLICATE)  # a key was claimed: nothing stored
        assert queued_id is not None
        return AcceptResult(Acceptance.ACCEPTED, queued_id)

    async def next_in_thread(
        self, *, owner: str, team_id: str, channel_id: str, thread_ts: str
    ) -> QueuedMessage | None:
        """The oldest (by Slack ts) message of the thread that ``owner`` is to answer."""
        async with self._store.reading() as session:
            row = await session.scalar(
                select(AcceptedMessage)
                .where(
                    _in_thread(team_id, channel_id, thread_ts),
                    AcceptedMessage.owner == owner,
                )
                .order_by(AcceptedMessage.ts, AcceptedMessage.id)
                .limit(1)
            )
        return None if row is None else _queued(row)

    async def forget(self, *, queued_id: int) -> None:
        """Delete a message that was answered otherwise (refused, ignored, told to retry)."""
        async with self._store.writing() as session:
            await session.execute(delete(AcceptedMessage).where(AcceptedMessage.id == queued_id))

    async def waiting(self) -> list[QueuedMessage]:
        """Every message still waiting, oldest first (for operators and tests)."""
        async with self._store.reading() as session:
            rows = await session.scalars(
                select(AcceptedMessage).order_by(AcceptedMessage.ts, AcceptedMessage.id)
            )
            return [_queued(row) for row in rows]

    async def adopt_orphans(
        self, *, owner: str, is_alive: Callable[[str], Awaitable[bool]]
    ) -> list[QueuedMessage]:
        """Make ``owner`` the owner of every message whose owner is gone; returns them, in
        Slack order. A message of a live owner is never taken (it is waiting in that process,
        which will answer it)."""
        async with self._store.reading() as session:
            owners = list(
                await session.scalars(
                    select(AcceptedMessage.owner).where(AcceptedMessage.owner != owner).distinct()
                )
            )
        gone = [other for other in owners if not await is_alive(other)]
        if not gone:
            return []
        async with self._store.writing() as session:
            # RETURNING: when two processes start together, each gets only the rows its own
            # UPDATE changed.
            adopted = list(
                await session.scalars(
                    update(AcceptedMessage)
                    .where(AcceptedMessage.owner.in_(gone))
                    .values(owner=owner)
                    .returning(AcceptedMessage.id)
                )
            )
        if not adopted:
            return []
        async with self._store.reading() as session:
            rows = await session.scalars(
                select(AcceptedMessage)
                .where(AcceptedMessage.id.in_(adopted))
                .order_by(AcceptedMessage.ts, AcceptedMessage.id)
            )
            return [_queued(row) for row in rows]

    # -- admission -------------------------------------------------------------------------

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
        """Record a pending turn if it fits ``limits``, else say which limit it hit.

        Admitted: the turn holds its token reservation and the accepted message
        ``queued_id`` is deleted, in the same transaction. Refused: nothing changes (the
        caller tells the person, then forgets the message). ``None``: the message
        ``queued_id`` is no longer waiting (another process took it and started its turn), so
        no turn is recorded: a message never gets two.
        """
        now = utcnow()
        async with self._store.writing() as session:
            if queued_id is not None:
                # Locked (PostgreSQL: FOR UPDATE; SQLite: the write lock) so that of two
                # processes admitting the same message, the second finds it gone.
                waiting = await session.scalar(
                    select(AcceptedMessage.id)
                    .where(AcceptedMessage.id == queued_id)
                    .with_for_update()
                )
                if waiting is None:
                    return None
            await _serialise(session, team_id, channel_id, user_id, limits)
            refusal = await _check(session, team_id, channel_id, user_id, limits, now)
            if refusal is not None:
                return refusal
            thread_id, head = await get_or_create_thread(
                session, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts
            )
            reserve = 0
            if limits.channel_daily_tokens > 0 or limits.workspace_daily_tokens > 0:
                history = await session.scalar(
                    select(Turn.input_tokens + Turn.output_tokens)
                    .where(
                        Turn.thread_id == thread_id,
                        Turn.status == TurnStatus.COMPLETED.value,
                    )
                    .order_by(Turn.id.desc())
                    .limit(1)
                )
                reserve = max(0, limits.reserve_tokens) + int(history or 0)
            turn_id = await insert_pending_turn(
                session,
                thread_id=thread_id,
                previous_response_id=head,
                team_id=team_id,
                channel_id=channel_id,
                user_id=user_id,
                user_ts=user_ts,
                event_id=event_id,
                model=model,
                now=now,
                reserved_tokens=reserve,
            )
            if queued_id is not None:
                await session.execute(
                    delete(AcceptedMessage).where(AcceptedMessage.id == queued_id)
                )
        return TurnStart(turn_id=turn_id, thread_id=thread_id, previous_response_id=head)


async def _serialise(
    session: AsyncSession, team_id: str, channel_id: str, user_id: str, limits: TurnLimits
) -> None:
    """PostgreSQL: hold the advisory lock of every limit this turn counts against until the
    transaction ends (SQLite transactions already run one at a time)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = []
    if limits.user_hourly_requests > 0:
        keys.append(f"limit:{team_id}:user:{user_id}")
    if limits.channel_daily_tokens > 0:
        keys.append(f"limit:{team_id}:channel:{channel_id}")
    if limits.workspace_daily_tokens > 0:
        keys.append(f"limit:{team_id}:workspace")
    for key in sorted(keys):  # one order for everyone: no deadlock
        await session.execute(HOLD_FOR_TRANSACTION, {"key": key})


async def _check(
    session: AsyncSession,
    team_id: str,
    channel_id: str,
    user_id: str,
    limits: TurnLimits,
    now: datetime,
) -> LimitReached | None:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for kind, budget, channel in (
        ("daily_token_budget", limits.channel_daily_tokens, channel_id),
        ("workspace_daily_token_budget", limits.workspace_daily_tokens, None),
    ):
        if budget <= 0:
            continue
        query = select(
            func.coalesce(func.sum(Turn.input_tokens + Turn.output_tokens), 0),
            func.coalesce(func.sum(Turn.reserved_tokens), 0),
        ).where(Turn.team_id == team_id, Turn.created_at >= day)
        if channel is not None:
            query = query.where(Turn.channel_id == channel)
        used, held = (await session.execute(query)).one()
        if int(used) + int(held) >= budget:
            return LimitReached(
                kind=kind,  # type: ignore[arg-type]
                limit=budget,
                used=int(used),
                held=int(held),
                again_at=day + DAY,
            )
    per_hour = limits.user_hourly_requests
    if per_hour > 0:
        asked = list(
            await session.scalars(
                select(Turn.created_at)
                .where(
                    Turn.team_id == team_id,
                    Turn.user_id == user_id,
                    Turn.created_at >= now - HOUR,
                )
                .order_by(Turn.created_at)
            )
        )
        if len(asked) >= per_hour:
            # Room for one more once all but (limit - 1) of them have left the hour.
            return LimitReached(
                kind="user_hourly_requests",
                limit=per_hour,
                used=len(asked),
                held=0,
                again_at=asked[len(asked) - per_hour] + HOUR,
            )
    return None
