"""Files people attach → Responses input parts, or a one-line reason they were skipped.

Images (png, jpeg, gif, webp) become ``input_image`` data URLs; text-like files (plain text,
Markdown, CSV, JSON, source code) become ``input_text`` with their filename; PDFs become
``input_file``. Files are downloaded with the bot token from Slack's file hosts only: https on
port 443 of ``slack.com`` and its subdomains, or exactly the origin (scheme, host and port) of
``SLACK_API_URL`` and, when that is https, its subdomains on the same port. The token never goes
anywhere else (no redirects are followed, no URL with user info is fetched). Within size and
count caps. What comes back must be what was declared: an image's or a PDF's first bytes must
match its type, and a web page (Slack answers a request it will not serve with its sign-in page
and status 200) is never passed on as a file.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

import httpx

from bot.i18n import N_, t

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
# The first bytes of each image type and of a PDF (their "magic numbers").
_IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # then 4 size bytes, then b"WEBP" (checked below)
}
_PDF_MAGIC = b"%PDF-"
_HTML_STARTS = (b"<!doctype html", b"<html")
_MARKUP_FILETYPES = frozenset({"html", "xml"})
_SLACK_DOMAIN = "slack.com"
_DEFAULT_PORTS = {"https": 443, "http": 80}


class TokenSource(Protocol):
    async def token(self, team_id: str) -> str:
        """The bot token of workspace ``team_id``."""
        ...


@dataclass
class FileParts:
    parts: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


def _origin(parts: SplitResult) -> _Origin | None:
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number, or out of range
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or port is None:
        return None
    return _Origin(parts.scheme, host, port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _size(n_bytes: int) -> str:
    """``500 KB``, ``1 MB``, ``2.5 MB``: a limit as people read it."""
    if n_bytes < 1024:
        return t("{count} bytes", count=n_bytes)
    if n_bytes < 1024 * 1024:
        return t("{count} KB", count=n_bytes // 1024)
    return t("{count} MB", count=round(n_bytes / (1024 * 1024), 1))


class FileReader:
    def __init__(
        self,
        *,
        tokens: TokenSource,
        api_url: str = "https://slack.com/api/",
        max_bytes: int = 10 * 1024 * 1024,
        max_files: int = 5,
        timeout: float = 30.0,
    ) -> None:
        """``api_url`` is ``SLACK_API_URL``: its origin (and, over https, its subdomains on
        the same port) may serve files besides ``https://*.slack.com``."""
        self._tokens = tokens
        self._api = _origin(urlsplit(api_url))
        self._max_bytes = max_bytes
        self._max_files = max_files
        # Redirects are never followed: the Authorization header must not travel.
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _host_allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            return False
        origin = _origin(parts)
        if origin is None:
            return False
        if origin.scheme == "https" and origin.port == 443 and _within(origin.host, _SLACK_DOMAIN):
            return True
        api = self._api
        if api is None or (origin.scheme, origin.port) != (api.scheme, api.port):
            return False
        if origin.host == api.host:
            return True
        # GovSlack-style bases (https://slack-gov.com/api/) keep files on a subdomain.
        return api.scheme == "https" and not _is_ip(api.host) and _within(origin.host, api.host)

    async def read(self, files: Iterable[Mapping[str, Any]], *, team_id: str) -> FileParts:
        """Read ``files`` shared in workspace ``team_id`` (downloaded with its bot token)."""
        result = FileParts()
        for index, file in enumerate(files):
            name = str(file.get("name") or file.get("title") or t("a file"))
            if index >= self._max_files:
                result.notices.append(
                    t(
                        "I skipped {name}: I read at most {count} files per message.",
                        name=name,
                        count=self._max_files,
                    )
                )
                continue
            try:
                part = await self._read_one(file, name, team_id)
            except _Skip as skip:
                result.notices.append(
                    t("I couldn't read {name}: {reason}.", name=name, reason=skip)
                )
                continue
            result.parts.append(part)
        return result

    async def _read_one(self, file: Mapping[str, Any], name: str, team_id: str) -> dict[str, Any]:
        mimetype = str(file.get("mimetype") or "").lower()
        filetype = str(file.get("filetype") or "").lower()
        kind = _kind(mimetype, filetype)
        if kind is None:
            if mimetype or filetype:
                raise _Skip(t("I can't read {kind} files", kind=mimetype or filetype))
            raise _Skip(t("I can't read this kind of files"))
        size = file.get("size")
        if isinstance(size, int) and size > self._max_bytes:
            raise _Skip(t("it is larger than {size}", size=_size(self._max_bytes)))
        url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not self._host_allowed(url):
            raise _Skip(t("it is not stored on Slack"))
        data, served_type = await self._download(url, await self._tokens.token(team_id))
        _check_content(kind, mimetype, filetype, data, served_type)
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

    async def _download(self, url: str, token: str) -> tuple[bytes, str]:
        """The file's bytes and the Content-Type it was served with."""
        try:
            async with self._http.stream(
                "GET", url, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                if response.status_code != 200:
                    raise _Skip(t("Slack answered HTTP {status}", status=str(response.status_code)))
                served_type = response.headers.get("content-type", "").split(";")[0]
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > self._max_bytes:
                        raise _Skip(t("it is larger than {size}", size=_size(self._max_bytes)))
                    chunks.append(chunk)
                return b"".join(chunks), served_type.strip().lower()
        except httpx.HTTPError as exc:
            logger.info("file download failed: %s", type(exc).__name__)
            raise _Skip(t("the download failed")) from exc


class _Skip(Exception):
    """Why a file is not passed to the model (the text completes "I couldn't read X: …")."""


def _within(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


_NOT_THE_FILE = N_(
    "Slack sent a web page instead of the file (the app may lack the files:read scope)"
)


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(_HTML_STARTS)


def _check_content(kind: str, mimetype: str, filetype: str, data: bytes, served: str) -> None:
    """Raise ``_Skip`` unless ``data`` is what the file claims to be."""
    if kind == "image":
        magic = _IMAGE_MAGIC[mimetype]
        valid = data.startswith(magic) and (mimetype != "image/webp" or data[8:12] == b"WEBP")
        if not valid:
            raise _Skip(
                t(_NOT_THE_FILE)
                if _looks_like_html(data)
                else t("it is not a valid {kind} image", kind=mimetype)
            )
        return
    if kind == "pdf":
        if _PDF_MAGIC not in data[:1024]:  # the header may follow a little junk
            raise _Skip(t(_NOT_THE_FILE) if _looks_like_html(data) else t("it is not a valid PDF"))
        return
    if filetype in _MARKUP_FILETYPES or mimetype in ("text/html", "application/xml", "text/xml"):
        return  # markup was declared: a page is what it is
    if served == "text/html" or _looks_like_html(data):
        raise _Skip(t(_NOT_THE_FILE))


def _kind(mimetype: str, filetype: str) -> str | None:
    if mimetype in IMAGE_TYPES:
        return "image"
    if mimetype == "application/pdf" or filetype == "pdf":
        return "pdf"
    if filetype in TEXT_FILETYPES or mimetype.startswith(TEXT_MIMETYPES):
        return "text"
    return None
