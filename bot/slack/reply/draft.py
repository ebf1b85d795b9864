"""What an answer says and how much of it Slack shows: no Slack calls, only the bookkeeping
the sink's moves read and update.

The answer's text is cut by the one splitter (``render.chunk_markdown``) into the chunks the
messages hold; ``start``, ``head`` and ``waste`` say where the next message starts (the
chunks before it are in Slack for good), ``live`` is the message that may still change and
what it shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.i18n import N_
from bot.slack.render import (
    Chunk,
    chunk_markdown,
    live_room,
    normalise,
    reopen_at,
    stream_safe_length,
)
from bot.slack.reply.journal import ResumeState

__all__ = ["EMPTY_ANSWER", "Draft", "Live"]

logger = logging.getLogger(__name__)

EMPTY_ANSWER = N_("_(The model returned an empty answer.)_")
"""A catalogue text (``bot.i18n``): shown through ``t``."""


@dataclass
class Live:
    """The message that may still change."""

    ts: str
    native: bool
    shown: str
    """What it shows (the chunk's head included, before neutralisation)."""
    known: bool = True
    """Whether ``shown`` is known (not for a message resumed after a restart)."""


class Draft:
    def __init__(self, *, limit: int, resume: ResumeState | None = None) -> None:
        self.limit = limit
        self.raw = ""
        """Every delta so far (and the final text once known)."""
        self.final: str | None = None
        """The whole text to deliver, once the answer (or a note) is complete."""
        self.correction: str | None = None
        """A final text that does not extend the stream: it replaces the draft."""
        self.start, self.head, self.waste = 0, "", 0
        self.live: Live | None = None
        self.first_ts: str | None = None
        self.posted: list[str] = []
        """Every message of this answer, in order."""
        self.messages = 0
        if resume is not None:
            self.start, self.head, self.waste = resume.start, resume.head, resume.waste
            self.first_ts = resume.first_ts
            if resume.ts is not None:
                self.live = Live(resume.ts, resume.native, shown="", known=False)

    # --- what there is to show ---------------------------------------------------------------
    def text(self) -> str:
        return normalise(self.final if self.final is not None else self.raw)

    def chunks(self) -> list[Chunk]:
        live = self.live
        keep = len(live.shown) - len(self.head) if live and live.native else 0
        return chunk_markdown(
            self.text(),
            limit=self.limit,
            start=self.start,
            head=self.head,
            waste=self.waste,
            keep=max(0, keep),
        )

    def is_last_chunk(self) -> bool:
        return len(self.chunks()) <= 1

    def candidate(self) -> str:
        """What the open message may show now, while the answer still grows."""
        text = self.text()
        chunks = self.chunks()
        live = self.live
        if not chunks:
            return live.shown if live else ""
        if len(chunks) > 1:
            first = chunks[0]
            return first.text[: len(first.text) - len(first.closing)]
        body = text[self.start :]
        if live is None or live.native:
            room = live_room(
                text, limit=self.limit, start=self.start, head=self.head, waste=self.waste
            )
            body = body[:room]
        body = body[: stream_safe_length(body)]
        return self.head + body if body.strip() else (live.shown if live else "")

    def has_news(self) -> bool:
        if self.live is None:
            # Something visible to open a message with (a held-back "@he" is not yet).
            return bool(self.candidate().strip()) or len(self.chunks()) > 1
        return len(self.candidate()) > len(self.live.shown) or len(self.chunks()) > 1

    def nothing_shown(self) -> bool:
        return self.messages == 0 and self.live is None

    # --- what Slack now holds --------------------------------------------------------------
    def opened(self, ts: str, *, native: bool, shown: str) -> None:
        self.live = Live(ts, native, shown)
        self.messages += 1
        self.posted.append(ts)
        self.first_ts = self.first_ts or ts

    def advance(self, chunk: Chunk) -> None:
        """``chunk`` is in Slack for good: the next message starts after it."""
        self.live = None
        self.start, self.head, self.waste = chunk.end, chunk.reopen, chunk.waste

    def abandon_live(self) -> Live | None:
        """The open message keeps what it shows; the rest continues in a new message. Returns
        the message given up (its native stream, if any, is the caller's to account for)."""
        live = self.live
        if live is None:
            return None
        shown_body = max(0, len(live.shown) - len(self.head))
        text = self.text()
        self.waste += self.limit - shown_body
        self.start += shown_body
        self.head = reopen_at(text, self.start, limit=self.limit) if shown_body else self.head
        self.live = None
        return live

    def reconcile(self, text: str, *, correct: bool = False) -> None:
        """Make sure everything in ``text`` gets shown, once. With ``correct``, a final text
        that does not extend what was streamed (a relay streamed reasoning as answer text)
        replaces it: the final response's text wins."""
        if text.startswith(self.raw):
            self.raw = text
        elif text and correct:
            self.correction = text
        elif text:
            logger.warning("the text differs from the streamed text; keeping the stream")

    def restart(self, text: str) -> None:
        """A note follows in a new message, whatever the answer showed."""
        self.live = None
        self.raw, self.start, self.head = text, 0, ""

    def state(self) -> ResumeState:
        """Where delivery stands, for the journal."""
        live = self.live
        return ResumeState(
            ts=live.ts if live else None,
            native=bool(live and live.native),
            start=self.start,
            head=self.head,
            waste=self.waste,
            first_ts=self.first_ts,
        )
