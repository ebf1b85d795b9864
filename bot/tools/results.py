"""What a tool call gives back: one text for the model, plus the facts the turn records.

Every outcome, failures included, is a ``ToolCallResult`` whose ``output`` is a plain sentence
or the tool's text: the model reads it as data and decides what to tell the user. Nothing here
raises for a bad result, and nothing of the output is logged or stored by this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "ToolCallResult",
    "ToolCallStatus",
    "render_call_result",
    "truncate_output",
]

DEFAULT_MAX_OUTPUT_CHARS = 20_000

ToolCallStatus = Literal["ok", "tool_error", "timeout", "unavailable", "protocol_error", "rejected"]
"""``ok``: the tool answered; ``tool_error``: it answered with ``isError``; ``timeout``: no
answer in time; ``unavailable``: the server could not be reached; ``protocol_error``: the
server refused the request or answered nonsense; ``rejected``: the bot did not send the call
(unknown tool, server not enabled, bad arguments, approval missing)."""


@dataclass(frozen=True, slots=True)
class ToolCallResult:
    """The outcome of one call. ``output`` goes back to the model as ``function_call_output``;
    the rest is what accounting may record (never ``output`` unless LOG_MESSAGE_CONTENT)."""

    function_name: str
    server: str | None
    tool: str | None
    status: ToolCallStatus
    output: str
    duration: float = 0.0
    output_chars: int = 0
    """Length of the tool's own text before truncation (0 when the tool never answered)."""
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def truncate_output(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_chars`` characters, ending with a marker that says so."""
    if len(text) <= max_chars:
        return text, False
    marker = f"\n[output truncated: {max_chars:,} of {len(text):,} characters shown]"
    keep = max(0, max_chars - len(marker))
    return text[:keep] + marker, True


def render_call_result(result: CallToolResult) -> str:
    """The text of an MCP tool result, as the model will read it.

    Text blocks are joined; structured content is used when there is no text; binary content
    (images, audio, blobs) is described, not inlined, because a function output is text.
    """
    parts = [_render_block(block) for block in result.content]
    text = "\n".join(part for part in parts if part)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False, default=str)
    if result.is_error:
        return f"The tool reported an error: {text or '(no details)'}"
    return text or "(the tool returned no content)"


def _render_block(block: Any) -> str:
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent | AudioContent):
        kind = "image" if isinstance(block, ImageContent) else "audio"
        return f"[{kind} {block.mime_type} omitted: {_b64_size(block.data)} bytes]"
    if isinstance(block, ResourceLink):
        return f"[resource {block.uri}" + (f" ({block.name})" if block.name else "") + "]"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, TextResourceContents):
            return resource.text
        if isinstance(resource, BlobResourceContents):
            return f"[binary resource {resource.uri} omitted: {_b64_size(resource.blob)} bytes]"
    return ""


def _b64_size(data: str) -> int:
    return len(data) * 3 // 4
