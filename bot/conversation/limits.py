"""Admission under the limits: a turn starts only if the person's hourly limit and the channel's
and workspace's daily token budgets allow it, decided with the turn's record in one
transaction (``storage.intake``); a refusal becomes a notice and no model call."""

from __future__ import annotations

from dataclasses import dataclass

from bot.channel_settings import EffectiveSettings
from bot.conversation.notes import limit_notice
from bot.conversation.ports import IncomingMessage, MessageIntake
from storage.records import LimitReached, TurnLimits, TurnStart

__all__ = ["OUTPUT_RESERVE_TOKENS", "Refused", "admit", "turn_limits"]

# What a turn is assumed to write when no max_output_tokens is set: a token reservation must
# assume something (see storage.intake).
OUTPUT_RESERVE_TOKENS = 1_000
# A file costs the model about as much as a page of text.
FILE_RESERVE_TOKENS = 1_000


@dataclass(frozen=True, slots=True)
class Refused:
    """A turn a limit stopped."""

    limit: LimitReached

    @property
    def notice(self) -> str:
        """Which limit, when the person can ask again and who can raise it."""
        return limit_notice(self.limit)


def turn_limits(message: IncomingMessage, settings: EffectiveSettings) -> TurnLimits:
    """The channel's limits, and the reservation for the new message and its answer (the
    thread's size so far is added in storage): about 4 characters per token, a page per file,
    the output cap."""
    estimate = (
        (len(message.text) + len(settings.instructions or "")) // 4
        + FILE_RESERVE_TOKENS * len(message.files)
        + (settings.max_output_tokens or OUTPUT_RESERVE_TOKENS)
    )
    return TurnLimits(
        user_hourly_requests=settings.user_hourly_requests or 0,
        channel_daily_tokens=settings.daily_token_budget or 0,
        workspace_daily_tokens=settings.workspace_daily_token_budget or 0,
        reserve_tokens=estimate,
    )


async def admit(
    intake: MessageIntake,
    message: IncomingMessage,
    settings: EffectiveSettings,
    *,
    queued_id: int,
) -> TurnStart | Refused | None:
    """Start the turn of the accepted message ``queued_id`` if the limits allow it. ``None``:
    another process took the message meanwhile and answers it (never two turns for one)."""
    admission = await intake.admit_turn(
        team_id=message.team_id,
        channel_id=message.channel_id,
        thread_ts=message.thread_ts,
        user_id=message.user_id,
        user_ts=message.ts,
        event_id=message.event_id,
        model=settings.model,
        limits=turn_limits(message, settings),
        queued_id=queued_id,
    )
    if isinstance(admission, LimitReached):
        return Refused(admission)
    return admission
