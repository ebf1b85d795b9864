"""Where a final answer's delivery stands, noted so that a restart finishes the same messages
instead of posting the answer twice (``bot.slack.resume``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DeliveryJournal", "ResumeState"]


class DeliveryJournal(Protocol):
    """Where a final answer's progress is noted (the turn's row), keyed by the user message."""

    async def record_delivery(
        self, *, team_id: str, channel_id: str, user_ts: str, state: str
    ) -> None: ...


@dataclass(frozen=True)
class ResumeState:
    """Where a final answer's delivery was when the process stopped (``DeliveryJournal``)."""

    ts: str | None
    """The message being finished, if one was open."""
    native: bool
    start: int
    head: str
    waste: int
    first_ts: str | None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | None) -> ResumeState | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                ts=data.get("ts"),
                native=bool(data.get("native")),
                start=int(data.get("start", 0)),
                head=str(data.get("head", "")),
                waste=int(data.get("waste", 0)),
                first_ts=data.get("first_ts"),
            )
        except (ValueError, TypeError, AttributeError):
            return None
