"""A model's Markdown answer → Slack message payloads (pure functions, no Slack SDK).

Slack's ``markdown`` block renders real Markdown, but a message's markdown blocks may hold at
most 12,000 characters in total. ``chunk_markdown`` is the one splitter, used by every path
that posts or streams (``split_markdown`` is its list-of-strings form): it cuts a long answer
into chunks that each fit one message without losing or repeating a character, and without
cutting a fenced code block in two: a split inside a fence closes it at the end of one chunk
and reopens it (same opening line, language tag included) at the top of the next.
``message_payload`` and ``stream_payload`` wrap text for the Web API.

The contract of the splitter, which the tests check with hypothesis:

* it ends, every chunk makes progress, and ``n`` characters take at most
  ``ceil(n / limit) + 2`` chunks;
* every chunk is at most ``limit`` characters, added fence lines included;
* a chunk that starts inside a code block begins with that block's opening line (repeated),
  and then the chunk before it ends with the block's closing fence, preceded by ``"\\n"`` only
  when it does not already end with a newline (past the budget for niceties neither is added);
* remove those added lines and the chunks concatenate to exactly the input, less its leading
  blank lines and trailing whitespace (which Slack does not show either) and less any run of
  whitespace longer than a message met at a split.

``neutralise_broadcasts`` makes sure nothing the bot posts notifies a whole channel or group.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_FALLBACK_CHARS",
    "MAX_MARKDOWN_CHARS",
    "Chunk",
    "chunk_markdown",
    "live_room",
    "message_payload",
    "neutralise_broadcasts",
    "neutralise_payload",
    "normalise",
    "plain_text",
    "reopen_at",
    "split_markdown",
    "stream_payload",
    "stream_safe_length",
]

MAX_MARKDOWN_CHARS = 12_000
"""Slack's limit on the cumulative text of the ``markdown`` blocks of one message."""

MAX_FALLBACK_CHARS = 3_000
"""Length cap of the plain ``text`` fallback. It only feeds notifications, screen readers and
clients that cannot draw blocks, so a short preview is enough; 3,000 also keeps it within every
Slack text limit (section text, ``chat.update``'s practical 4,000)."""

ELLIPSIS = "…"

# CommonMark allows at most 3 spaces of indentation, but models nest fences inside list items
# with deeper indentation, and treating those as plain text would let a split cut the block.
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_FENCE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class _Fence:
    opener: str
    """The opening line as written, newline included: repeated at the top of the next chunk."""
    closer: str
    """Indentation and fence characters that close this block."""

    @property
    def char(self) -> str:
        return self.closer.lstrip(" \t")[0]

    @property
    def size(self) -> int:
        return len(self.closer.lstrip(" \t"))


class _Lines:
    """Line offsets of a text and the code fence open after each line."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.ends: list[int] = []
        self.opens_fence: list[bool] = []
        self.fence_after: list[_Fence | None] = []
        start = 0
        fence: _Fence | None = None
        while start < len(text):
            newline = text.find("\n", start)
            end = len(text) if newline == -1 else newline + 1
            line = text[start:end]
            before = fence
            fence = _next_fence(fence, line)
            self.ends.append(end)
            self.opens_fence.append(before is None and fence is not None)
            self.fence_after.append(fence)
            start = end
        # Where each code block ends (the end of its closing line, or of the text), by the
        # index of its opening line.
        self.block_end: dict[int, int] = {}
        opening: int | None = None
        for i, fence_after in enumerate(self.fence_after):
            if self.opens_fence[i]:
                opening = i
            elif fence_after is None and opening is not None:
                self.block_end[opening] = self.ends[i]
                opening = None
        if opening is not None:
            self.block_end[opening] = len(text)

    def start(self, i: int) -> int:
        return self.ends[i - 1] if i else 0

    def fence_at(self, position: int) -> _Fence | None:
        """The fence open at ``position``: only whole lines before it count, so a position in
        the middle of a line has the state of that line's start."""
        index = bisect.bisect_right(self.ends, position) - 1
        return self.fence_after[index] if index >= 0 else None


def _next_fence(fence: _Fence | None, line: str) -> _Fence | None:
    match = _FENCE_RE.match(line.rstrip("\r\n"))
    if fence is None:
        if match is None:
            return None
        marker = match["fence"]
        if marker[0] == "`" and "`" in match["info"]:
            return None  # CommonMark: a backtick fence's info string has no backticks
        return _Fence(opener=line, closer=match["indent"] + marker)
    if (
        match is not None
        and match["fence"][0] == fence.char
        and len(match["fence"]) >= fence.size
        and not match["info"].strip()
    ):
        return None
    return fence


@dataclass(frozen=True)
class Chunk:
    """One message's worth of a normalised text (see ``chunk_markdown``)."""

    text: str
    """What the message shows: the repeated fence opener, the body, the added closing fence."""
    start: int
    """Offset of the body in the text."""
    end: int
    """Offset just past the body: where the next chunk's body starts (whitespace aside)."""
    waste: int
    """Room left unused so far, this chunk included: ``limit`` minus each body's length."""
    reopen: str
    """The fence opener the next chunk starts with ("" when it starts outside a block)."""
    closing: str = ""
    """The closing fence added at the end of ``text`` ("" when none)."""


def normalise(text: str) -> str:
    """The text less its leading blank lines and trailing whitespace (Slack shows neither)."""
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


def split_markdown(text: str, *, limit: int = MAX_MARKDOWN_CHARS) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters (see the module docstring).

    Text with nothing visible gives ``[]``: there is no message to post.
    """
    return [chunk.text for chunk in chunk_markdown(normalise(text), limit=limit)]


def chunk_markdown(
    text: str,
    *,
    limit: int = MAX_MARKDOWN_CHARS,
    start: int = 0,
    head: str = "",
    waste: int = 0,
    keep: int = 0,
) -> list[Chunk]:
    """The one splitter: cut normalised ``text`` from ``start`` into message-sized chunks.

    ``head``, ``waste``: the previous chunk's ``reopen`` and ``waste`` when continuing a text
    already partly sent. ``keep``: the first chunk's body holds at least this many characters
    (a native stream cannot take back what it showed; ``live_room`` says how much it may show).

    Splits at the last paragraph boundary that fits (a blank line, or just before or after a
    code block), else at a line end, else after a space, else anywhere; a boundary is used only
    if it leaves the chunk at least a third (paragraphs) or half (the rest) full, and never one
    that leaves a chunk with nothing visible.

    Bounded, whatever the text: every chunk ends past its start (progress), and the niceties
    (a boundary short of the limit, a fence repeated across a split) may leave at most
    ``2 * limit`` characters of room unused in total, so ``n`` characters never
    take more than ``ceil(n / limit) + 2`` chunks. Past that budget cuts are hard and fences
    are no longer repeated. A run of whitespace longer than a whole message is skipped at a
    split rather than sent as a blank message.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    lines = _Lines(text)
    chunks: list[Chunk] = []
    position = start
    while position < len(text):
        room = limit - len(head)
        if not text[position : position + room].strip():
            # Nothing visible fits: skip the whitespace (normalised text ends visibly).
            position = len(text) - len(text[position:].lstrip())
            continue
        if len(head) + len(text) - position <= limit:
            chunks.append(Chunk(head + text[position:], position, len(text), waste, ""))
            break
        end, suffix, reopen = _cut(lines, position, head, limit, waste, keep)
        waste += limit - (end - position)
        chunks.append(
            Chunk(head + text[position:end] + suffix, position, end, waste, reopen, suffix)
        )
        position, head, keep = end, reopen, 0
    return chunks


def live_room(text: str, *, limit: int, start: int, head: str, waste: int) -> int:
    """How many characters of ``text[start:]`` a message that may still grow can show, so that
    ``chunk_markdown(..., keep=that)`` can always close it within ``limit``."""
    lines = _Lines(text)
    shown = min(len(text) - start, limit - len(head))
    while shown > 0:
        suffix, _ = _repeat(lines, start, start + shown, limit, waste)
        if len(head) + shown + len(suffix) <= limit:
            break
        shown -= 1
    return shown


def reopen_at(text: str, position: int, *, limit: int) -> str:
    """The fence opener a message continuing ``text`` at ``position`` starts with ("" when no
    block is open there, or it is too long to repeat)."""
    fence = _usable(_Lines(text).fence_at(position), limit)
    return fence.opener if fence is not None else ""


def _usable(fence: _Fence | None, limit: int) -> _Fence | None:
    # Repeating a fence costs its opening line plus its closer in every chunk. An absurdly long
    # opening line (or a tiny limit) could leave no room for content, so such a block is split
    # as plain text instead: the size guarantee always wins over the rendering nicety.
    if fence is None or len(fence.opener) + len(fence.closer) + 2 > limit // 2:
        return None
    return fence


def _nicety_budget(limit: int) -> int:
    """Room that boundaries short of the limit may leave unused in total: most of the two
    messages' worth, the last quarter message kept for repeating fences."""
    return 2 * limit - limit // 4


def _repeat(lines: _Lines, position: int, end: int, limit: int, waste: int) -> tuple[str, str]:
    """(closing suffix, opener for the next chunk) for a cut at ``end``, or ("", "") when no
    block is open there, it cannot be repeated, or repeating it would overspend the budget."""
    fence = _usable(lines.fence_at(end), limit)
    if fence is None:
        return "", ""
    if waste + limit - (end - position) + len(fence.opener) > 2 * limit:
        return "", ""
    suffix = fence.closer if lines.text[end - 1] == "\n" else "\n" + fence.closer
    return suffix, fence.opener


def _cut(
    lines: _Lines, position: int, head: str, limit: int, waste: int, keep: int
) -> tuple[int, str, str]:
    """Where the chunk starting at ``position`` ends: (end, suffix, next head)."""
    text = lines.text
    room = limit - len(head)
    window_text = text[position : position + room]
    visible = position + len(window_text) - len(window_text.lstrip())

    def fits_size(end: int) -> bool:
        suffix, _ = _repeat(lines, position, end, limit, waste)
        return len(head) + (end - position) + len(suffix) <= limit

    def fits(end: int) -> bool:
        # Niceties may spend only part of the budget (see chunk_markdown; repeated fences
        # keep the rest); a split before the first visible character would post a message
        # that shows nothing; a native stream's shown text stays in its message.
        return (
            waste + limit - (end - position) <= _nicety_budget(limit)
            and end > visible
            and end >= position + keep
            and fits_size(end)
        )

    # Line indexes whose end falls inside the window, latest first.
    first = bisect.bisect_right(lines.ends, position)
    last = bisect.bisect_right(lines.ends, position + room) - 1
    window = range(last, first - 1, -1)

    def is_paragraph_end(i: int) -> bool:
        if lines.fence_after[i] is not None:
            return False
        following = i + 1
        if following < len(lines.ends) and lines.opens_fence[following]:
            # Moving a code block to the next message is worth a short message only if the
            # block then fits whole; one that must be cut anyway may as well start here.
            return lines.block_end[following] - lines.start(following) <= room
        blank = not text[lines.start(i) : lines.ends[i]].strip()
        closes_block = i > 0 and lines.fence_after[i - 1] is not None
        return blank or closes_block

    def is_line_end(i: int) -> bool:
        # Splitting right after an opening fence would leave an empty code block behind.
        return text[lines.ends[i] - 1] == "\n" and not lines.opens_fence[i]

    def result(end: int) -> tuple[int, str, str]:
        suffix, reopen = _repeat(lines, position, end, limit, waste)
        return end, suffix, reopen

    for predicate, minimum in ((is_paragraph_end, room // 3), (is_line_end, room // 2)):
        for i in window:
            end = lines.ends[i]
            if end - position < minimum:
                break
            if predicate(i) and fits(end):
                return result(end)

    # One long line: after the last space that fits, else as far as fits.
    end = position + room
    while end > position + room // 2:
        space = max(text.rfind(" ", position + 1, end), text.rfind("\t", position + 1, end))
        if space < 0 or space + 1 <= position + room // 2:
            break
        if fits(space + 1):
            return result(space + 1)
        end = space
    end = position + room
    while end > max(position + 1, position + keep) and not fits_size(end):
        end -= 1
    if (
        end > position + 1
        and end - 1 >= position + keep
        and waste + limit - (end - 1 - position) <= 2 * limit
        and text[end - 1] == "\r"
        and end < len(text)
        and text[end] == "\n"
    ):
        end -= 1  # keep a CRLF together
    return result(end)


# --- plain-text fallback -------------------------------------------------------------------

_INLINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image → its alt text
    (re.compile(r"\[([^\]]+)\]\((\S+?)(?:\s+\"[^\"]*\")?\)"), r"\1 (\2)"),  # link → text (url)
    (re.compile(r"`([^`\n]+)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
)
_LINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$"), r"\1"),  # heading
    (re.compile(r"^\s{0,3}(?:[-*_]\s*){3,}$"), ""),  # thematic break
    (re.compile(r"^(\s*)>\s?"), r"\1"),  # block quote
    (re.compile(r"^(\s*)[-*+]\s+\[([ xX])\]\s+"), r"\1• [\2] "),  # task list item
    (re.compile(r"^(\s*)[-*+]\s+"), r"\1• "),  # bullet
)


def plain_text(markdown: str) -> str:
    """Readable plain text for Markdown: markers dropped, links as ``text (url)``, code kept.

    Best effort for a notification preview, not a Markdown parser. ``&``, ``<`` and ``>`` are
    escaped because Slack reads ``text`` as mrkdwn, where ``<...>`` would become a link or a
    mention.
    """
    out: list[str] = []
    fence: _Fence | None = None
    for line in markdown.splitlines():
        after = _next_fence(fence, line)
        if after is not fence:  # an opening or closing fence line: drop it, keep the code
            fence = after
            continue
        if fence is None:
            for pattern, replacement in _LINE_RULES:
                line = pattern.sub(replacement, line)
            for pattern, replacement in _INLINE_RULES:
                line = pattern.sub(replacement, line)
        out.append(line.rstrip())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = limit - len(ELLIPSIS)
    entity = text.rfind("&", max(0, cut - 5), cut)
    if entity >= 0 and ";" not in text[entity:cut]:
        cut = entity  # never leave half an "&amp;" behind
    return text[:cut].rstrip() + ELLIPSIS


# --- broadcast mentions --------------------------------------------------------------------

# Slack notifies a whole channel or user group for ``<!channel>``, ``<!here>``, ``<!everyone>``,
# the legacy ``<!group>`` and ``<!subteam^ID>`` (each with an optional ``|label``) in mrkdwn
# ``text``; the bare ``@channel`` / ``@here`` / ``@everyone`` spellings notify where Slack
# links names (``link_names``, ``parse=full``, text typed by people). Slack does not document
# what its ``markdown`` block does with either, so both spellings are neutralised everywhere.
_ANGLE_BROADCAST = re.compile(
    r"<!(?P<kind>channel|here|everyone|group|subteam\^[^>|]*)(?:\|(?P<label>[^>]*))?>",
    re.IGNORECASE,
)
_BARE_BROADCAST = re.compile(r"(?<![\w@./:])@(?P<word>channel|here|everyone)\b", re.IGNORECASE)
_KEYWORDS = ("channel", "here", "everyone", "group")
HARMLESS_AT = "\uff20"
"""FULLWIDTH COMMERCIAL AT: reads as "@", never links or notifies, and keeps the length."""


def _angle(match: re.Match[str]) -> str:
    kind = match["kind"]
    label = (match["label"] or "").lstrip("@\uff20")
    if not label:
        label = "group" if kind.lower().startswith("subteam") else kind
    return HARMLESS_AT + label


def neutralise_broadcasts(text: str) -> str:
    """``text`` with every broadcast mention shown as ``HARMLESS_AT`` + its word (or its
    label) instead: visible, notifying nobody, the rest unchanged, never longer."""
    text = _ANGLE_BROADCAST.sub(_angle, text)
    return _BARE_BROADCAST.sub(lambda m: HARMLESS_AT + m["word"], text)


def stream_safe_length(text: str) -> int:
    """How much of a growing ``text`` can be sent now without splitting a broadcast mention
    that the next delta could complete: a stream's appends are joined by Slack, so
    ``"<!chan"`` then ``"nel>"`` would each look harmless on its own."""
    safe = len(text)
    opening = text.rfind("<", max(0, len(text) - 256))
    if opening != -1 and text[opening + 1 : opening + 2] in ("", "!") and ">" not in text[opening:]:
        safe = opening
    at = max(text.rfind("@"), text.rfind(HARMLESS_AT))
    if at != -1:
        tail = text[at + 1 :].lower()
        if any(keyword.startswith(tail) for keyword in _KEYWORDS):
            safe = min(safe, at)
    return safe


# "details" and "output": a stream's task cards (``bot.slack.reply.steps``).
_TEXT_KEYS = frozenset(
    {"text", "markdown_text", "fallback", "pretext", "title", "details", "output"}
)


def neutralise_payload(value: Any) -> Any:
    """A Web API argument with every text field (``text``, ``markdown_text``, block and chunk
    texts at any depth) passed through ``neutralise_broadcasts``; other fields untouched."""
    if isinstance(value, dict):
        return {
            key: neutralise_broadcasts(item)
            if key in _TEXT_KEYS and isinstance(item, str)
            else neutralise_payload(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [neutralise_payload(item) for item in value]
    return value


def stream_payload(text: str) -> dict[str, Any]:
    """``chat.startStream`` / ``appendStream`` / ``stopStream`` arguments carrying ``text``."""
    return {"markdown_text": text} if text else {}


def message_payload(chunk: str) -> dict[str, Any]:
    """``chat.postMessage`` / ``chat.update`` arguments showing ``chunk`` as one Markdown block.

    ``text`` is the plain-text fallback (notifications, accessibility), at most
    ``MAX_FALLBACK_CHARS``; the ``markdown`` block is what people see in the thread. ``chunk``
    should come from ``split_markdown`` so that it fits the block's limit.
    """
    fallback = _truncate(plain_text(chunk), MAX_FALLBACK_CHARS) or ELLIPSIS
    return {"text": fallback, "blocks": [{"type": "markdown", "text": chunk}]}
