"""The pure parts of conversation state (continuity, transcript budget, endpoint keys, the
setting) and what the capability record keeps, on a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.channel_settings import SCHEMA, InvalidSetting
from bot.conversation import (
    ChainCheck,
    EndpointCapabilities,
    continuity_broken,
    endpoint_key,
    select_transcript,
)
from bot.model.types import Usage
from bot.settings import Settings
from storage.conversation_state import ConversationStateStore, ResponseUsage, TranscriptRecord
from tests.databases import Databases


def _before(input_tokens: int, output_tokens: int, reasoning: int = 0) -> ResponseUsage:
    return ResponseUsage(
        model="m",
        input_tokens=input_tokens,
        cached_tokens=0,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
    )


@pytest.mark.parametrize(
    ("before", "now", "broken"),
    [
        # History carried: at least the previous input plus its output.
        (_before(400, 300), Usage(input_tokens=720), False),
        # The chain was ignored: only instructions and the new message were billed.
        (_before(400, 300), Usage(input_tokens=60), True),
        # A small thread: a difference within the margin is not "clearly smaller".
        (_before(40, 10), Usage(input_tokens=30), False),
        # Reasoning tokens are not carried into later turns.
        (_before(100, 900, reasoning=880), Usage(input_tokens=125), False),
        # A relay that counts cached tokens apart from the input (Anthropic-style).
        (_before(400, 300), Usage(input_tokens=50, cached_tokens=680), False),
        # Unknown figures are not judged.
        (_before(400, 300), Usage(), False),
        (_before(0, 0), Usage(input_tokens=5), False),
        (None, Usage(input_tokens=5), False),
    ],
)
def test_continuity(before: ResponseUsage | None, now: Usage, broken: bool) -> None:
    assert continuity_broken(before, now, model="m") is broken


def test_continuity_is_not_judged_across_models() -> None:
    assert continuity_broken(_before(400, 300), Usage(input_tokens=60), model="other") is False


def _entry(n: int, role: str, text: str, files: int = 0) -> TranscriptRecord:
    return TranscriptRecord(
        id=n,
        turn_id=n,
        role=role,
        author_id=None,
        text=text,
        files=tuple({"id": f"F{i}"} for i in range(files)),
    )


def test_the_transcript_keeps_the_newest_within_the_budget_and_starts_with_a_question() -> None:
    entries = [
        _entry(1, "user", "q1"),
        _entry(2, "assistant", "a" * 500),
        _entry(3, "user", "q2"),
        _entry(4, "assistant", "b" * 500),
        _entry(5, "user", "q3"),
    ]
    kept = select_transcript(entries, 600)
    assert [e.text[:2] for e in kept] == ["q2", "bb", "q3"]
    # The newest entry is kept even when it alone is over the budget.
    assert [e.id for e in select_transcript([_entry(1, "user", "x" * 50)], 10)] == [1]
    # A file costs about a page.
    with_file = [_entry(1, "user", "q1"), _entry(2, "user", "see", files=1)]
    assert [e.id for e in select_transcript(with_file, 500)] == [2]


def test_the_endpoint_key_has_no_credentials_or_query() -> None:
    assert endpoint_key("https://user:pw@relay.example:8443/v1/?key=s") == (
        "https://relay.example:8443/v1"
    )
    assert endpoint_key("http://127.0.0.1:4000/v1") == "http://127.0.0.1:4000/v1"


def test_the_setting_and_its_channel_field() -> None:
    setting = SCHEMA["conversation_state"]
    assert setting.parse(" Transcript ") == "transcript"
    with pytest.raises(InvalidSetting, match="auto, chain, transcript"):
        setting.parse("sometimes")
    base = {"openai_api_key": "k", "default_model": "m", "slack_bot_token": "xoxb-1"}
    settings = Settings(_env_file=None, slack_signing_secret="s", **base)  # type: ignore[call-arg]
    assert (settings.conversation_state, settings.conversation_probe) == ("auto", True)
    chosen = Settings(_env_file=None, slack_signing_secret="s", conversation_state="CHAIN", **base)  # type: ignore[call-arg]
    assert chosen.conversation_state == "chain"


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[ConversationStateStore]:
    async with Databases.migrated("sqlite", tmp_path) as databases:
        yield ConversationStateStore(databases.store())


async def test_a_chain_seen_ignored_on_a_turn_is_not_undone_by_a_background_probe(
    state: ConversationStateStore,
) -> None:
    answers = iter([ChainCheck("kept", "refused"), ChainCheck("kept", "refused")])

    async def probe(model: str) -> ChainCheck:
        return next(answers)

    switches: list[str] = []
    capabilities = EndpointCapabilities(
        store=state, endpoint="https://relay/v1", probe=probe, on_switch=switches.append
    )
    assert await capabilities.mark_ignored("m", source="continuity", detail="seen") is True
    assert await capabilities.mark_ignored("m", source="continuity", detail="again") is False
    assert switches == ["continuity"]

    await capabilities.probe_now("m", source="probe")
    assert await capabilities.chains_ignored("m") is True  # sticky against a background probe
    await capabilities.probe_now("m", source="doctor")  # the operator asked: it decides
    record = await state.capability(endpoint="https://relay/v1", model="m")
    assert record is not None
    assert (record.chains, record.chains_source) == ("kept", "doctor")


async def test_a_failed_probe_keeps_what_was_known_and_probes_run_in_the_background(
    state: ConversationStateStore,
) -> None:
    calls: list[str] = []

    async def probe(model: str) -> ChainCheck:
        calls.append(model)
        if len(calls) == 1:
            return ChainCheck("kept", "refused")
        if len(calls) == 2:
            return ChainCheck("unknown", "rate limited")
        raise RuntimeError("boom")

    capabilities = EndpointCapabilities(store=state, endpoint="https://relay/v1", probe=probe)
    await capabilities.probe_if_stale("m", max_age=3600)
    await capabilities.wait_idle()
    await capabilities.probe_if_stale("m", max_age=3600)  # fresh: not probed again
    await capabilities.wait_idle()
    assert calls == ["m"]
    capabilities.probe_soon("m")
    await capabilities.wait_idle()
    record = await state.capability(endpoint="https://relay/v1", model="m")
    assert record is not None
    assert record.chains == "kept"  # "unknown" taught nothing
    capabilities.probe_soon("m")  # a probe that raises is logged, never raised
    await capabilities.wait_idle()
    await capabilities.aclose()
    assert len(calls) == 3
