"""The app manifest, parsed as Slack parses it (YAML): the assistant pane, its events and
scopes, and the Home tab are on; doctor's own reader (no YAML library at run time) reads the
same lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.channel_settings.schema import DEFAULT_SUGGESTED_PROMPTS
from bot.doctor import (
    ASSISTANT_EVENTS,
    ASSISTANT_SCOPES,
    MANIFEST_PATH,
    manifest_bot_events,
    manifest_bot_scopes,
    manifest_flags,
)
from tests.fakes.slack_server import DEFAULT_BOT_SCOPES


def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_the_manifest_turns_on_the_assistant_pane_its_events_and_the_home_tab() -> None:
    data = manifest()
    features = data["features"]
    assert features["app_home"]["home_tab_enabled"] is True
    view = features["assistant_view"]
    assert view["assistant_description"].strip()
    prompts = view["suggested_prompts"]
    assert 1 <= len(prompts) <= 4
    assert all(p["title"].strip() and p["message"].strip() for p in prompts)
    assert prompts[0]["message"] == DEFAULT_SUGGESTED_PROMPTS[0]  # the same first prompt
    events = data["settings"]["event_subscriptions"]["bot_events"]
    assert set(ASSISTANT_EVENTS) <= set(events)
    scopes = data["oauth_config"]["scopes"]["bot"]
    assert set(ASSISTANT_SCOPES) <= set(scopes)
    assert data["settings"]["interactivity"]["is_enabled"] is True  # feedback buttons


def test_doctor_reads_the_manifest_as_yaml_does(tmp_path: Path) -> None:
    data = manifest()
    assert manifest_bot_scopes() == data["oauth_config"]["scopes"]["bot"]
    assert manifest_bot_events() == data["settings"]["event_subscriptions"]["bot_events"]
    assert manifest_flags() == {"home_tab": True, "assistant_view": True}
    # The fake Slack grants what the manifest asks for, as a correct install does.
    assert set(DEFAULT_BOT_SCOPES) == set(manifest_bot_scopes())
    # An old manifest (no pane, Home tab off) is read as such.
    old = MANIFEST_PATH.read_text(encoding="utf-8")
    old = old.replace("home_tab_enabled: true", "home_tab_enabled: false")
    old = old.replace("assistant_view:", "not_the_assistant_view:")
    path = tmp_path / "old.yaml"
    path.write_text(old, encoding="utf-8")
    assert manifest_flags(path) == {"home_tab": False, "assistant_view": False}
    assert yaml.safe_load(old)["features"]["app_home"]["home_tab_enabled"] is False
