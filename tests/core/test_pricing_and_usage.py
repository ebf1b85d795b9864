"""Cost estimates from MODEL_PRICES, time spans for reports, and the daily prune loop."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import ConfigError
from bot.pricing import ModelPrice, estimate_cost, format_cost, parse_prices, usage_cost
from bot.retention import prune_once, run_daily_prune, start_daily_prune
from bot.settings import load_settings
from bot.usage_report import parse_since, render_usage
from storage import PruneCounts, TokenUsage, UsageCounts, UsageRow

PRICES = parse_prices(
    '{"gpt-4o": {"input": 2.5, "cached": 1.25, "output": 10}, "m": {"input": 1, "output": 2}}'
)


def test_cached_input_is_billed_at_the_cached_price_and_reasoning_as_output() -> None:
    usage = TokenUsage(
        input_tokens=1_000_000, cached_tokens=400_000, output_tokens=200_000, reasoning_tokens=50
    )
    # 600k uncached * 2.5 + 400k cached * 1.25 + 200k output (reasoning included) * 10
    assert usage_cost(PRICES["gpt-4o"], usage) == pytest.approx(1.5 + 0.5 + 2.0)
    # Without a cached price, cached tokens cost the input price.
    assert usage_cost(PRICES["m"], usage) == pytest.approx(1.0 + 0.4)


def test_estimates_add_up_models_and_an_unpriced_model_means_no_cost() -> None:
    a = UsageCounts(turns=1, input_tokens=2_000_000, output_tokens=0)
    b = UsageCounts(turns=1, input_tokens=0, output_tokens=1_000_000)
    assert estimate_cost({"gpt-4o": a, "m": b}, PRICES) == pytest.approx(5.0 + 2.0)
    assert estimate_cost({"gpt-4o": a, "unknown": b}, PRICES) is None
    assert estimate_cost({"gpt-4o": a, "unknown": UsageCounts(turns=1)}, PRICES) == 5.0
    assert estimate_cost({"gpt-4o": a}, {}) is None
    assert estimate_cost({}, PRICES) == 0.0


def test_costs_are_formatted_for_people() -> None:
    assert format_cost(0) == "$0.00"
    assert format_cost(0.004213) == "$0.0042"
    assert format_cost(1234.567) == "$1,234.57"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"m": 3}', "m: must be an object"),
        ('{"m": {"input": 1}}', "m: output price is missing"),
        ('{"m": {"input": 1, "output": "2"}}', "m: output must be a number"),
        ('{"m": {"input": -1, "output": 2}}', "m: input must be a number of 0 or more"),
        ('{"m": {"input": 1, "output": 2, "extra": 1}}', "m: unknown key(s) extra"),
        ('{"m": {"input": true, "output": 2}}', "m: input must be a number"),
    ],
)
def test_malformed_prices_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_prices(raw)


def test_prices_parse_and_blank_means_none() -> None:
    assert parse_prices("  ") == {}
    assert parse_prices('{"m": {"input": 1, "output": 2}}') == {"m": ModelPrice(1.0, 2.0)}


def test_model_prices_and_retention_days_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "OPENAI_API_KEY": "k",
        "DEFAULT_MODEL": "m",
        "BOT_MODE": "http",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MODEL_PRICES", raising=False)
    monkeypatch.delenv("RETENTION_DAYS", raising=False)
    settings = load_settings(env_file=None)
    assert (settings.retention_days, settings.prices) == (90, {})
    monkeypatch.setenv("MODEL_PRICES", json.dumps({"m": {"input": 1, "output": 2}}))
    monkeypatch.setenv("RETENTION_DAYS", "0")
    settings = load_settings(env_file=None)
    assert settings.prices == {"m": ModelPrice(1.0, 2.0)}
    assert settings.retention_days == 0
    monkeypatch.setenv("MODEL_PRICES", '{"m": {"input": 1}}')
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == "MODEL_PRICES is invalid: m: output price is missing"
    monkeypatch.delenv("MODEL_PRICES")
    monkeypatch.setenv("RETENTION_DAYS", "-1")
    with pytest.raises(ConfigError, match="RETENTION_DAYS is invalid"):
        load_settings(env_file=None)


NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW - timedelta(days=30)),
        (" 12H ", NOW - timedelta(hours=12)),
        ("0d", NOW),
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T08:00", datetime(2026, 1, 31, 8, tzinfo=UTC)),
        ("2026-01-31T08:00+02:00", datetime(2026, 1, 31, 6, tzinfo=UTC)),
    ],
)
def test_since_accepts_days_hours_and_iso_dates(text: str, expected: datetime) -> None:
    since = parse_since(text, now=NOW)
    assert since == expected
    assert since.tzinfo is not None


@pytest.mark.parametrize("text", ["", "30", "d30", "3w", "yesterday", "2026-13-01", "99999999d"])
def test_other_spans_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"time span|too long ago"):
        parse_since(text, now=NOW)


def _row(key: str, model: str, tokens: int) -> UsageRow:
    counts = UsageCounts(turns=2, input_tokens=tokens, cached_tokens=0, output_tokens=tokens)
    return UsageRow(team_id="T1", key=key, counts=counts, by_model={model: counts})


def test_reports_render_as_table_csv_and_json() -> None:
    rows = [_row("C1", "m", 1_000_000), _row("C2", "other", 10)]
    table = render_usage(rows, by="channel", since=NOW, prices=PRICES, fmt="table", team_id="T1")
    lines = table.splitlines()
    assert lines[0] == "usage since 2026-03-10 12:30 UTC by channel (workspace T1)"
    assert "est. cost" in lines[1]
    assert lines[3].split()[:3] == ["T1", "C1", "2"]
    assert lines[3].endswith("$3.00")  # 1M input * $1 + 1M output * $2
    assert lines[4].endswith("-")  # "other" has no price
    assert lines[-1].split()[0] == "total"
    csv_lines = render_usage(rows, by="channel", since=NOW, prices=PRICES, fmt="csv").splitlines()
    assert csv_lines[0] == (
        "team,channel,turns,input_tokens,cached_tokens,output_tokens,reasoning_tokens,"
        "total_tokens,cost_usd"
    )
    assert csv_lines[1] == "T1,C1,2,1000000,0,1000000,0,2000000,3.0"
    assert csv_lines[2].endswith(",20,")
    data = json.loads(render_usage(rows, by="channel", since=NOW, prices={}, fmt="json"))
    assert data["by"] == "channel"
    assert data["rows"][0] == {
        "team": "T1",
        "channel": "C1",
        "turns": 2,
        "input_tokens": 1_000_000,
        "cached_tokens": 0,
        "output_tokens": 1_000_000,
        "reasoning_tokens": 0,
        "total_tokens": 2_000_000,
    }
    empty = render_usage([], by="user", since=NOW, prices={}, fmt="table")
    assert empty.endswith("no turns recorded")


class _Store:
    def __init__(self, failures: int = 0) -> None:
        self.cutoffs: list[datetime] = []
        self.failures = failures
        self.called = asyncio.Event()

    async def prune_history(self, *, older_than: datetime) -> PruneCounts:
        self.cutoffs.append(older_than)
        self.called.set()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database is away")
        return PruneCounts(turns=1)


async def test_prune_once_cuts_at_the_retention_period_and_zero_keeps_everything() -> None:
    store = _Store()
    assert await prune_once(store, 30, now=NOW) == PruneCounts(turns=1)
    assert store.cutoffs == [NOW - timedelta(days=30)]
    assert await prune_once(store, 0, now=NOW) is None
    assert len(store.cutoffs) == 1


async def test_the_daily_prune_runs_at_once_then_repeats_and_survives_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _Store(failures=1)
    stop = start_daily_prune(store, 30, interval=0.01)
    for _ in range(500):
        if len(store.cutoffs) >= 3:
            break
        await asyncio.sleep(0.01)
    await stop()
    assert len(store.cutoffs) >= 3  # the first pass failed; later ones still ran
    assert "pruning old history failed: RuntimeError" in caplog.text
    await stop()  # stopping twice is harmless


async def test_the_daily_prune_does_nothing_when_retention_is_off() -> None:
    store = _Store()
    await asyncio.wait_for(run_daily_prune(store, 0, interval=0.01), timeout=1)
    assert store.cutoffs == []
