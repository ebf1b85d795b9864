"""Usage reports for the command line: time spans (``30d``, ``12h``, an ISO date) and the
table, CSV and JSON renderings of ``Store.usage_since`` rows, with the 👍/👎 votes of
``Store.feedback_since`` per channel or model (``up``/``down`` columns; pure: no I/O)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bot.i18n import t
from bot.pricing import ModelPrices, estimate_cost, format_cost
from storage.records import FeedbackCount, ToolCallCount
from storage.repositories import UsageCounts, UsageRow

__all__ = ["ReportFormat", "parse_since", "render_usage", "tool_call_lines"]

ReportFormat = Literal["table", "csv", "json"]

_SPAN = re.compile(r"^\s*(\d+)\s*([dh])\s*$", re.IGNORECASE)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``30d`` / ``12h`` (that long before ``now``) or an ISO date or datetime (UTC unless it
    says otherwise) as an aware UTC datetime. Raises ValueError with a plain message."""
    now = now or datetime.now(UTC)
    match = _SPAN.match(text)
    if match:
        amount, unit = int(match[1]), match[2].lower()
        try:
            return now - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
        except OverflowError:
            raise ValueError(f"{text.strip()} is too long ago") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text.strip() or 'an empty value'} is not a time span: use e.g. 30d, 12h "
            "or a date like 2026-01-31"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_COLUMNS = ("turns", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")


def _values(counts: UsageCounts) -> dict[str, int]:
    values = {name: int(getattr(counts, name)) for name in _COLUMNS}
    values["total_tokens"] = counts.total_tokens
    return values


def render_usage(
    rows: Sequence[UsageRow],
    *,
    by: str,
    since: datetime,
    prices: ModelPrices,
    fmt: ReportFormat,
    team_id: str | None = None,
    feedback: Sequence[FeedbackCount] | None = None,
) -> str:
    """The report as text (no trailing newline). Costs appear only when ``prices`` is set;
    a row with a model that has no price shows no cost. ``feedback`` (grouped like the rows:
    by channel or model) adds the ``up`` and ``down`` votes of each row."""
    priced = bool(prices)
    votes = {(f.team_id, f.key): f for f in feedback} if feedback is not None else None
    records: list[dict[str, Any]] = []
    for row in rows:
        record: dict[str, Any] = {"team": row.team_id, by: row.key, **_values(row.counts)}
        if votes is not None:
            count = votes.get((row.team_id, row.key))
            record["up"] = count.good if count else 0
            record["down"] = count.bad if count else 0
        if priced:
            cost = estimate_cost(row.by_model, prices)
            record["cost_usd"] = None if cost is None else round(cost, 6)
        records.append(record)
    if fmt == "json":
        return json.dumps(
            {
                "since": since.isoformat(),
                "by": by,
                "team": team_id,
                "rows": records,
            },
            indent=2,
        )
    if fmt == "csv":
        out = io.StringIO()
        header = ["team", by, *_COLUMNS, "total_tokens"] + (["cost_usd"] if priced else [])
        header += ["up", "down"] if votes is not None else []
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
        return out.getvalue().rstrip("\n")
    return _table(
        records, rows, by=by, since=since, prices=prices, team_id=team_id, votes=votes is not None
    )


def _table(
    records: list[dict[str, Any]],
    rows: Sequence[UsageRow],
    *,
    by: str,
    since: datetime,
    prices: ModelPrices,
    team_id: str | None,
    votes: bool = False,
) -> str:
    scope = f"workspace {team_id}" if team_id else "all workspaces"
    title = f"usage since {since:%Y-%m-%d %H:%M} UTC by {by} ({scope})"
    if not records:
        return f"{title}\nno turns recorded"
    headings = ["team", by, "turns", "input", "cached", "output", "reasoning", "total"]
    if prices:
        headings.append("est. cost")
    if votes:
        headings += ["up", "down"]
    lines: list[list[str]] = []
    for record in records:
        line = [record["team"], record[by]]
        line += [f"{record[name]:,}" for name in (*_COLUMNS, "total_tokens")]
        if prices:
            cost = record["cost_usd"]
            line.append("-" if cost is None else format_cost(cost))
        if votes:
            line += [f"{record['up']:,}", f"{record['down']:,}"]
        lines.append(line)
    total = sum((row.counts for row in rows), UsageCounts())
    footer = ["", "total"] + [f"{v:,}" for v in _values(total).values()]
    if prices:
        merged: dict[str, UsageCounts] = {}
        for row in rows:
            for model, counts in row.by_model.items():
                merged[model] = merged.get(model, UsageCounts()) + counts
        cost = estimate_cost(merged, prices)
        footer.append("-" if cost is None else format_cost(cost))
    if votes:
        footer += [f"{sum(r['up'] for r in records):,}", f"{sum(r['down'] for r in records):,}"]
    widths = [
        max(len(cells[i]) for cells in [headings, *lines, footer]) for i in range(len(headings))
    ]

    def render(cells: list[str]) -> str:
        text = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        text += [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(text).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([title, render(headings), rule, *map(render, lines), rule, render(footer)])


def tool_call_lines(
    title: str, counts: Sequence[ToolCallCount], *, top: int = 10, plain: bool = False
) -> list[str]:
    """Tool calls per server and tool: the total, then the most called, each with how many
    failed and their average time (``/ai usage`` in Slack markup; ``plain`` for the CLI).
    Nothing when there were none: most channels use no tools."""
    bold, code, bullet = ("", "", "-") if plain else ("*", "`", "•")
    if not counts:
        return []
    total = sum(c.calls for c in counts)
    failed = sum(c.failed for c in counts)
    # In the reader's language in Slack; the CLI sets no reader, so it stays English.
    lines = [f"{bold}{title}{bold}: " + t("{total} ({failed} failed)", total=total, failed=failed)]
    for c in counts[:top]:
        average = round(c.duration_ms / c.calls / 1000, 1) if c.calls else 0.0
        where = f"{c.server}/{c.tool}" if c.server else c.tool
        lines.append(
            f"{bullet} {code}{where}{code}: "
            + t(
                "{calls} ({failed} failed), {seconds} s on average",
                calls=c.calls,
                failed=c.failed,
                seconds=average,
            )
        )
    return lines
