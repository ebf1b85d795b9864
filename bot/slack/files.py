"""Files people attach → Responses input parts, or a one-line reason they were skipped.

Images (png, jpeg, gif, webp) become ``input_image`` data URLs; text-like files (plain text,
Markdown, CSV, JSON, source code) become ``input_text`` with their filename; PDFs become
``input_file``. Files are downloaded with the bot token from Slack's file hosts only (the
token never goes anywhere else, and redirects are not followed), within size and count caps.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

__all__ = ["FileParts", "FileReader"]

logger = logging.getLogger(__name__)

IMAGE_TYPES = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
TEXT_FILETYPES = {
    "text", "markdown", "post", "csv", "tsv", "json", "yaml", "xml", "html", "css", "sql",
    "python", "javascript", "typescript", "java", "kotlin", "go", "rust", "c", "cpp", "csharp",
    "ruby", "php", "shell", "bash", "swift", "scala", "r", "diff", "dockerfile", "toml", "ini",
}  # fmt: skip
TEXT_MIMETYPES = ("text/", "application/json", "application/xml", "application/x-yaml")
MAX_TEXT_CHARS = 100_000


class TokenSource(Protocol):
    async def token(self, team_id: str) -> str:
        """The bot token of workspace ``team_id``."""
        ...


@dataclass
class FileParts:
    parts: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class FileReader:
    def __init__(
        self,
        *,
        tokens: TokenSource,
        allowed_hosts: Iterable[str],
        max_bytes: int = 10 * 1024 * 1024,
        max_files: int = 5,
        timeout: float = 30.0,
    ) -> None:
        self._tokens = tokens
        self._allowed = {host.lower() for host in allowed_hosts}
        self._max_bytes = max_bytes
        self._max_files = max_files
        # Redirects are never followed: the Authorization header must not travel.
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _host_allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("https", "http") or not host:
            return False
        return host in self._allowed or host.endswith(".slack.com") or host == "slack.com"

    async def read(self, files: Iterable[Mapping[str, Any]], *, team_id: str) -> FileParts:
        """Read ``files`` shared in workspace ``team_id`` (downloaded with its bot token)."""
        result = FileParts()
        for index, file in enumerate(files):
            name = str(file.get("name") or file.get("title") or "a file")
            if index >= self._max_files:
                result.notices.append(
                    f"I skipped {name}: I read at most {self._max_files} files per message."
                )
                continue
            try:
                part = await self._read_one(file, name, team_id)
            except _Skip as skip:
                result.notices.append(f"I couldn't read {name}: {skip}.")
                continue
            result.parts.append(part)
        return result

    async def _read_one(self, file: Mapping[str, Any], name: str, team_id: str) -> dict[str, Any]:
        mimetype = str(file.get("mimetype") or "").lower()
        filetype = str(file.get("filetype") or "").lower()
        kind = _kind(mimetype, filetype)
        if kind is None:
            raise _Skip(f"I can't read {mimetype or filetype or 'this kind of'} files")
        size = file.get("size")
        if isinstance(size, int) and size > self._max_bytes:
            raise _Skip(f"it is larger than {self._max_bytes // (1024 * 1024)} MB")
        url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not self._host_allowed(url):
            raise _Skip("it is not stored on Slack")
        data = await self._download(url, await self._tokens.token(team_id))
        if kind == "image":
            encoded = base64.b64encode(data).decode()
            return {
                "type": "input_image",
                "image_url": f"data:{mimetype};base64,{encoded}",
                "detail": "auto",
            }
        if kind == "pdf":
            encoded = base64.b64encode(data).decode()
            return {
                "type": "input_file",
                "filename": name,
                "file_data": f"data:application/pdf;base64,{encoded}",
            }
        text = data.decode("utf-8", errors="replace")
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS] + "\n[… cut: the file is longer]"
        return {"type": "input_text", "text": f"File {name}:\n```\n{text}\n```"}

    async def _download(self, url: str, token: str) -> bytes:
        try:
            async with self._http.stream(
                "GET", url, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                if response.status_code != 200:
                    raise _Skip(f"Slack answered HTTP {response.status_code}")
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > self._max_bytes:
                        raise _Skip(f"it is larger than {self._max_bytes // (1024 * 1024)} MB")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            logger.info("file download failed: %s", type(exc).__name__)
            raise _Skip("the download failed") from exc


class _Skip(Exception):
    """Why a file is not passed to the model (the text completes "I couldn't read X: …")."""


def _kind(mimetype: str, filetype: str) -> str | None:
    if mimetype in IMAGE_TYPES:
        return "image"
    if mimetype == "application/pdf" or filetype == "pdf":
        return "pdf"
    if filetype in TEXT_FILETYPES or mimetype.startswith(TEXT_MIMETYPES):
        return "text"
    return None
