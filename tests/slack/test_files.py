"""Which URLs the file reader may send the bot token to (the end-to-end behaviour is in
``tests/faults/test_privacy_and_secrets.py``)."""

from __future__ import annotations

import pytest

from bot.slack.files import FileReader


class _Tokens:
    async def token(self, team_id: str) -> str:
        return "xoxb-test"


@pytest.mark.parametrize(
    ("api_url", "url", "allowed"),
    [
        ("https://slack.com/api/", "https://files.slack.com/files-pri/T1-F1/a.png", True),
        ("https://slack.com/api/", "https://files.slack.com:443/files-pri/T1-F1/a.png", True),
        ("https://slack.com/api/", "http://files.slack.com/files-pri/T1-F1/a.png", False),
        ("https://slack.com/api/", "https://files.slack.com:8443/a.png", False),
        ("https://slack.com/api/", "https://files.slack.com.evil.test/a.png", False),
        ("https://slack.com/api/", "https://evil.test/files.slack.com/a.png", False),
        ("https://slack.com/api/", "https://user:pw@files.slack.com/a.png", False),
        ("https://slack.com/api/", "https://files.slack.com:99999/a.png", False),
        ("https://slack.com/api/", "ftp://files.slack.com/a.png", False),
        ("https://slack-gov.com/api/", "https://files.slack-gov.com/a.png", True),
        ("https://slack-gov.com/api/", "http://files.slack-gov.com/a.png", False),
        ("http://127.0.0.1:4000/api/", "http://127.0.0.1:4000/files-pri/a.png", True),
        ("http://127.0.0.1:4000/api/", "http://127.0.0.1:4001/files-pri/a.png", False),
        ("http://127.0.0.1:4000/api/", "https://127.0.0.1:4000/files-pri/a.png", False),
        ("http://proxy.test:8080/api/", "http://files.proxy.test:8080/a.png", False),
    ],
)
async def test_only_slacks_file_hosts_with_their_scheme_and_port(
    api_url: str, url: str, allowed: bool
) -> None:
    reader = FileReader(tokens=_Tokens(), api_url=api_url)
    try:
        assert reader._host_allowed(url) is allowed
    finally:
        await reader.aclose()
