"""The Slack side of a turn's answer: posts the reply into the thread.

One guarantee: every Slack failure leaves here as ``DeliveryError`` (with Slack's error code),
never as a slack_sdk exception. Rate limits (429) are retried by the web client's
``AsyncRateLimitErrorRetryHandler`` before they get here.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import IncomingMessage
from bot.errors import DeliveryError
from bot.slack.render import message_payload, split_markdown

__all__ = ["SlackReplySink", "SlackReplySinks"]

logger = logging.getLogger(__name__)

EMPTY_ANSWER = "_(The model returned an empty answer.)_"


class SlackReplySink:
    """Posts one turn's answer into its thread (final text once; split when too long)."""

    def __init__(self, client: AsyncWebClient, message: IncomingMessage) -> None:
        self._client = client
        self._message = message

    async def started(self) -> None:
        return None

    async def reasoning(self) -> None:
        return None

    async def delta(self, text: str) -> None:
        return None

    async def finish(self, text: str) -> str | None:
        return await self._post_all(split_markdown(text) or [EMPTY_ANSWER])

    async def fail(self, notice: str, partial_text: str) -> str | None:
        chunks = split_markdown(partial_text) if partial_text.strip() else []
        chunks.append(notice)
        return await self._post_all(chunks)

    async def _post_all(self, chunks: list[str]) -> str | None:
        first_ts: str | None = None
        for chunk in chunks:
            ts = await self._post(message_payload(chunk))
            first_ts = first_ts or ts
        return first_ts

    async def _post(self, payload: dict[str, Any]) -> str:
        try:
            response = await self._client.chat_postMessage(
                channel=self._message.channel_id,
                thread_ts=self._message.thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                **payload,
            )
        except SlackApiError as exc:
            code = str(exc.response.get("error") or "slack_api_error")
            raise DeliveryError(f"chat.postMessage failed: {code}", code=code) from exc
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryError(
                f"chat.postMessage failed: {type(exc).__name__}", code="slack_unreachable"
            ) from exc
        return str(response["ts"])


class SlackReplySinks:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    def open(self, message: IncomingMessage) -> SlackReplySink:
        return SlackReplySink(self._client, message)
