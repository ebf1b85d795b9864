"""The bot's own words in each person's language: one gettext catalogue (Babel), the reader's
language in a context variable. See ``active`` and README, "Languages"."""

from bot.i18n.active import (
    LOCALE_DIR,
    N_,
    Reader,
    clock,
    current,
    reading,
    shown_default,
    t,
    tn,
    translations,
)
from bot.i18n.languages import (
    AUTO,
    DEFAULT_LANGUAGE,
    SUPPORTED,
    catalogue_name,
    choose,
    from_slack_locale,
    supported,
)

__all__ = [
    "AUTO",
    "DEFAULT_LANGUAGE",
    "LOCALE_DIR",
    "N_",
    "SUPPORTED",
    "Reader",
    "catalogue_name",
    "choose",
    "clock",
    "current",
    "from_slack_locale",
    "reading",
    "shown_default",
    "supported",
    "t",
    "tn",
    "translations",
]
