"""The languages the bot writes its own words in, and how a Slack locale maps onto them.

Slack reports a person's locale as ``users.info`` → ``user.locale`` (asked with
``include_locale=true``): ``en-US``, ``ja-JP``, ``zh-CN``, ``es-LA``, ``pt-BR``… Each maps to
one tag of ``SUPPORTED``; anything else (or nothing) is English.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AUTO",
    "DEFAULT_LANGUAGE",
    "SUPPORTED",
    "catalogue_name",
    "choose",
    "from_slack_locale",
    "supported",
]

SUPPORTED: Final = ("en", "zh-CN", "zh-TW", "ja", "ko", "es", "fr", "de", "pt-BR")
"""Every language the catalogue holds, as BCP 47 tags (what people type in settings)."""
DEFAULT_LANGUAGE: Final = "en"
AUTO: Final = "auto"
"""The workspace setting's value for "each person's own Slack language"."""

_BY_LOWER: Final = {tag.lower(): tag for tag in SUPPORTED}
# Chinese by script or region: Simplified for the mainland and Singapore, Traditional for
# Taiwan, Hong Kong and Macau.
_CHINESE: Final = {
    "zh": "zh-CN",
    "zh-cn": "zh-CN",
    "zh-sg": "zh-CN",
    "zh-hans": "zh-CN",
    "zh-tw": "zh-TW",
    "zh-hk": "zh-TW",
    "zh-mo": "zh-TW",
    "zh-hant": "zh-TW",
}


def supported(tag: str) -> str | None:
    """``tag`` as spelled in ``SUPPORTED`` (any case, ``_`` for ``-``), or ``None``."""
    return _BY_LOWER.get(tag.strip().lower().replace("_", "-"))


def from_slack_locale(locale: str | None) -> str:
    """The supported language for a Slack locale; English when unknown or missing."""
    if not locale:
        return DEFAULT_LANGUAGE
    wanted = locale.strip().lower().replace("_", "-")
    exact = _BY_LOWER.get(wanted)
    if exact is not None:
        return exact
    parts = wanted.split("-")
    if parts[0] == "zh":
        # zh-Hant-TW, zh-Hans-CN…: the script decides, then the region.
        for length in (2, 1):
            found = _CHINESE.get("-".join(parts[:length]))
            if found is not None and (length == 2 or len(parts) == 1):
                return found
        return "zh-CN"
    if parts[0] == "pt":
        return "pt-BR"  # Slack's one Portuguese
    return _BY_LOWER.get(parts[0], DEFAULT_LANGUAGE)


def choose(setting: object, locale: str | None) -> str:
    """The language to write in: the workspace's ``language`` setting when it names a
    supported one, else the person's Slack ``locale`` (``auto``, unset: the person's)."""
    if isinstance(setting, str) and setting != AUTO:
        fixed = supported(setting)
        if fixed is not None:
            return fixed
    return from_slack_locale(locale)


def catalogue_name(tag: str) -> str:
    """The gettext and Babel name of a tag: ``zh-CN`` → ``zh_CN``."""
    return tag.replace("-", "_")
