"""An answer's steps (tool calls, reasoning summaries) as Slack shows them: no Slack calls,
only what each of the sink's calls carries.

Steps ride in the same calls as the answer's text, one call at a time through the sink's pump
and its rate budgets. Each step is reported again whenever its status changes; what a call
carries is taken when its slot comes, so several changes between two calls become one call
with the latest state of each step (``take``), and a step is marked shown only once Slack
took that call (``delivered``): a change that arrives while a call is in flight goes in the
next one.

- **Native streaming**: each step is a task card, a ``task_update`` chunk (same ``id`` on
  each change, so Slack updates the card in place) with its sources as ``url`` elements. The
  stream is started with ``task_display_mode`` ``timeline``, so the cards sit in the answer
  where they happened, the text after them.
- **Fallback** (``chat.postMessage`` + ``chat.update``): the message that was open when a
  step changed (its *host*) shows a ``context`` block of compact lines above the answer's
  text, one per step: ``:hourglass_flowing_sand:`` while it runs, ``:white_check_mark:`` /
  ``:x:`` once done. The lines stay when the answer is finished (they say what the answer
  rests on); every later update or split of that message keeps them, since ``chat.update``
  replaces all of a message's blocks.

Titles and details come from the bot (the tool's name and arguments, never its output), but
the arguments come from the model: they are escaped for mrkdwn and truncated here, and the
client neutralises broadcast mentions in every text field (``render.neutralise_payload``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bot.conversation import StepStatus, ToolStep
from bot.i18n import t
from bot.slack.escaping import escape
from bot.slack.tool_texts import STEPS_FALLBACK, steps_earlier

__all__ = [
    "DISPLAY_MODE",
    "MAX_LINES",
    "MAX_TITLE_CHARS",
    "Batch",
    "Steps",
    "shorten",
    "with_lead",
]

DISPLAY_MODE: Final = "timeline"
"""``chat.startStream``'s ``task_display_mode``: cards in the answer where they happened."""
MAX_TITLE_CHARS: Final = 120
"""A card's title and a line's text, after escaping (ours: Slack documents no limit)."""
MAX_DETAILS_CHARS: Final = 256
"""A card's ``details`` (Slack's SDKs document 256)."""
MAX_SOURCES: Final = 10
"""Sources per card (assumed: Slack documents no limit)."""
MAX_LINE_SOURCES: Final = 3
"""Sources linked on a fallback line, to keep it compact."""
MAX_LINES: Final = 15
"""Lines in one message's context block; older steps are summed up in one line."""
MAX_CONTEXT_CHARS: Final = 3_000
"""Slack's limit on a context block's text element."""
ELLIPSIS: Final = "…"

_ICONS: Final = {
    StepStatus.IN_PROGRESS: ":hourglass_flowing_sand:",
    StepStatus.COMPLETE: ":white_check_mark:",
    StepStatus.ERROR: ":x:",
}


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, escaped for mrkdwn, at most ``limit`` characters: cut before
    escaping, so no entity is ever cut in half."""
    plain = " ".join(text.split())
    escaped = escape(plain)
    if len(escaped) <= limit:
        return escaped
    cut = limit - len(ELLIPSIS)
    while cut > 0 and len(escape(plain[:cut])) > limit - len(ELLIPSIS):
        cut -= 1
    return escape(plain[:cut].rstrip()) + ELLIPSIS


def _safe_url(url: str) -> bool:
    # Only web links, and none that would break out of a mrkdwn link (``<url|text>``).
    return url.startswith(("https://", "http://")) and not any(c in url for c in "<>| \n")


@dataclass(frozen=True, slots=True)
class Batch:
    """The steps one call carries: each one's latest state and version when it was built."""

    steps: tuple[ToolStep, ...] = ()
    versions: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.steps)


@dataclass
class Steps:
    """One answer's steps: the latest state of each, and what Slack has been shown."""

    _latest: dict[str, ToolStep] = field(default_factory=dict)
    _version: dict[str, int] = field(default_factory=dict)
    _shown: dict[str, int] = field(default_factory=dict)
    _hosts: dict[str, list[str]] = field(default_factory=dict)
    """Fallback messages (by ts) → the steps whose lines they show, in order."""
    _counter: int = 0

    def update(self, step: ToolStep) -> bool:
        """Note ``step``'s latest state; False when it changes nothing Slack would show."""
        if self._latest.get(step.step_id) == step:
            return False
        self._counter += 1
        self._latest[step.step_id] = step
        self._version[step.step_id] = self._counter
        return True

    def __bool__(self) -> bool:
        return bool(self._latest)

    def touch_running(self) -> bool:
        """Mark the steps still in progress as changed, so the next call sends them again
        (asking Slack whether the stream still runs); False when none is in progress."""
        running = [k for k, step in self._latest.items() if step.status == StepStatus.IN_PROGRESS]
        for key in running:
            self._counter += 1
            self._version[key] = self._counter
        return bool(running)

    def news(self) -> bool:
        """Some step changed since Slack last took it."""
        return any(self._shown.get(key, 0) < version for key, version in self._version.items())

    def take(self) -> Batch:
        """The steps that changed since Slack last took them, at their latest state."""
        keys = [k for k, v in self._version.items() if self._shown.get(k, 0) < v]
        return Batch(
            steps=tuple(self._latest[k] for k in keys),
            versions=tuple(self._version[k] for k in keys),
        )

    def delivered(self, batch: Batch, *, ts: str, native: bool) -> None:
        """Slack took ``batch`` in message ``ts``: those states are shown."""
        for step, version in zip(batch.steps, batch.versions, strict=True):
            self._shown[step.step_id] = max(self._shown.get(step.step_id, 0), version)
            if not native:
                hosted = self._hosts.setdefault(ts, [])
                if step.step_id not in hosted:
                    hosted.append(step.step_id)

    # --- native streaming: task cards -----------------------------------------------------
    @staticmethod
    def chunks(batch: Batch) -> list[dict[str, Any]]:
        """``task_update`` chunks for ``batch``."""
        return [_task_chunk(step) for step in batch.steps]

    # --- fallback: context lines ----------------------------------------------------------
    def lead(self, ts: str | None, batch: Batch | None = None) -> list[dict[str, Any]]:
        """The blocks message ``ts`` starts with: one context block with a line per step it
        hosts (and per step of ``batch``, which it is about to show), or none."""
        keys = list(self._hosts.get(ts, [])) if ts is not None else []
        if batch is not None:
            keys += [s.step_id for s in batch.steps if s.step_id not in keys]
        if not keys:
            return []
        lines = [_line(self._latest[key]) for key in keys]
        earlier = 0
        while len(lines) > MAX_LINES or len("\n".join(lines)) > MAX_CONTEXT_CHARS - 40:
            lines.pop(0)
            earlier += 1
        if earlier:
            lines.insert(0, steps_earlier(earlier))
        return [{"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(lines)}]}]


def with_lead(payload: dict[str, Any], lead: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A ``chat.postMessage`` / ``chat.update`` payload (``render.message_payload``) with
    ``lead`` above its text; a message with steps and no text yet shows only the steps."""
    if not lead:
        return payload
    blocks = [
        b for b in payload["blocks"] if not (b.get("type") == "markdown" and not b.get("text"))
    ]
    has_text = any(b.get("type") == "markdown" for b in blocks)
    text = payload["text"] if has_text else t(STEPS_FALLBACK)
    return {**payload, "text": text, "blocks": [*lead, *blocks]}


def _task_chunk(step: ToolStep) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "type": "task_update",
        "id": step.step_id,
        "title": shorten(step.title, MAX_TITLE_CHARS) or ELLIPSIS,
        "status": step.status.value,
    }
    if step.details.strip():
        chunk["details"] = shorten(step.details, MAX_DETAILS_CHARS)
    sources = [
        {"type": "url", "url": url, "text": shorten(title or url, MAX_TITLE_CHARS)}
        for title, url in step.sources
        if _safe_url(url)
    ][:MAX_SOURCES]
    if sources:
        chunk["sources"] = sources
    return chunk


def _line(step: ToolStep) -> str:
    line = f"{_ICONS[step.status]} {shorten(step.title, MAX_TITLE_CHARS) or ELLIPSIS}"
    links = [
        f"<{url}|{shorten(title or url, 40)}>" for title, url in step.sources if _safe_url(url)
    ][:MAX_LINE_SOURCES]
    return " · ".join([line, *links])
