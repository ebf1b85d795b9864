"""The language the bot writes to a person in, outside a turn: a slash command's answer, a
modal, the Home tab, a feedback form, the assistant pane's prompts.

The workspace's ``language`` setting when it names one, else the person's Slack locale from
the shared ``users.info`` (``UserDirectory.locale``: the same cached call as display names and
admin checks). A turn decides the same way in the core (``bot.conversation.service``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.channel_settings import WORKSPACE_DEFAULTS
from bot.conversation import LocaleSource, PersonLocale, SettingsSource
from bot.i18n import Reader, choose, reading
from storage.errors import StorageError

__all__ = ["PersonLanguages", "speaking_to"]

logger = logging.getLogger(__name__)


class PersonLanguages:
    def __init__(self, *, locales: LocaleSource, settings: SettingsSource) -> None:
        self._locales = locales
        self._settings = settings

    async def of(self, *, team_id: str, user_id: str) -> Reader:
        """The reader ``user_id`` is (English when nothing is known)."""
        person = (
            await self._locales.locale(team_id=team_id, user_id=user_id)
            if user_id
            else PersonLocale()
        )
        return Reader(choose(await self._setting(team_id), person.locale), person.timezone)

    async def _setting(self, team_id: str) -> object:
        """The workspace's ``language`` setting (``None`` when the database cannot say)."""
        try:
            defaults = await self._settings.effective(
                team_id=team_id, channel_id=WORKSPACE_DEFAULTS
            )
        except StorageError as exc:  # the person's own language will do
            logger.info("workspace language unavailable: %s", exc.code)
            return None
        return defaults.values.get("language")


@asynccontextmanager
async def speaking_to(
    languages: PersonLanguages | None,
    *,
    team_id: str,
    user_id: str,
    within: float | None = None,
) -> AsyncIterator[Reader]:
    """Inside, the bot's words are in ``user_id``'s language (English without ``languages``).
    ``within``: seconds the lookup may take (a modal's ``trigger_id`` lives 3 seconds, so the
    language must not cost the form); past it, English."""
    reader = Reader()
    if languages is not None:
        try:
            async with asyncio.timeout(within):
                reader = await languages.of(team_id=team_id, user_id=user_id)
        except TimeoutError:
            logger.info("a person's language was not known in time; English")
    with reading(reader.language, reader.timezone) as active:
        yield active
