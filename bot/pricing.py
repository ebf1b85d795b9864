"""Estimated cost of token usage from ``MODEL_PRICES`` (pure: no I/O, no settings).

``MODEL_PRICES`` is a JSON object mapping a model name to its prices in USD per million
tokens, e.g. ``{"gpt-4o": {"input": 2.5, "cached": 1.25, "output": 10}}``. ``cached`` is
optional and defaults to the input price. Cached input tokens are billed at the cached price,
the rest of the input at the input price; reasoning tokens are part of the output tokens and
billed with them. A model without a price has no cost (never a guessed one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ModelPrice",
    "ModelPrices",
    "TokenCounts",
    "estimate_cost",
    "format_cost",
    "parse_prices",
    "usage_cost",
]

_PER = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cached: float | None = None
    """Price of cached input tokens; None: the input price."""


ModelPrices = Mapping[str, ModelPrice]


class TokenCounts(Protocol):
    """What a cost is computed from (``storage.UsageCounts`` and ``TokenUsage`` fit)."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def cached_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...


def parse_prices(raw: str) -> dict[str, ModelPrice]:
    """Parse ``MODEL_PRICES``; empty means no prices. Raises ValueError saying what is wrong."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object like {"gpt-4o": {"input": 2.5, "output": 10}}')
    prices: dict[str, ModelPrice] = {}
    for model, entry in data.items():
        if not model.strip():
            raise ValueError("model names must not be empty")
        if not isinstance(entry, dict):
            raise ValueError(f'{model}: must be an object like {{"input": 2.5, "output": 10}}')
        unknown = sorted(set(entry) - {"input", "cached", "output"})
        if unknown:
            raise ValueError(f"{model}: unknown key(s) {', '.join(unknown)}")
        for name in ("input", "output"):
            if name not in entry:
                raise ValueError(f"{model}: {name} price is missing")
        values = {name: _price(model, name, value) for name, value in entry.items()}
        prices[model] = ModelPrice(
            input=values["input"], output=values["output"], cached=values.get("cached")
        )
    return prices


def _price(model: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{model}: {name} must be a number (USD per million tokens)")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{model}: {name} must be a number of 0 or more")
    return number


def usage_cost(price: ModelPrice, usage: TokenCounts) -> float:
    """USD for ``usage`` at ``price``."""
    cached = min(max(usage.cached_tokens, 0), max(usage.input_tokens, 0))
    uncached = max(usage.input_tokens, 0) - cached
    cached_price = price.input if price.cached is None else price.cached
    return (
        uncached * price.input + cached * cached_price + max(usage.output_tokens, 0) * price.output
    ) / _PER


def estimate_cost(by_model: Mapping[str, TokenCounts], prices: ModelPrices) -> float | None:
    """USD for usage split by model; None when there are no prices or when some model that
    has tokens has no price (a partial sum would understate the cost)."""
    if not prices:
        return None
    total = 0.0
    for model, usage in by_model.items():
        price = prices.get(model)
        if price is None:
            if usage.input_tokens or usage.output_tokens:
                return None
            continue
        total += usage_cost(price, usage)
    return total


def format_cost(cost: float) -> str:
    """``$12.35``, or more digits for small amounts (``$0.0042``)."""
    if cost == 0:
        return "$0.00"
    if cost >= 1:
        return f"${cost:,.2f}"
    return f"${cost:.4f}"
