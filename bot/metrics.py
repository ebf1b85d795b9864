"""Prometheus metrics, on a registry owned by the service (never the global default, so two
services in one test process don't share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_received = Counter(
            "slackbot_events_received",
            "Slack events received, by event type.",
            ["type"],
            registry=self.registry,
        )
        self.turns = Counter(
            "slackbot_turns",
            "Messages handled, by outcome (ignored, duplicate, completed, failed, ...).",
            ["outcome"],
            registry=self.registry,
        )
        self.turns_in_flight = Gauge(
            "slackbot_turns_in_flight", "Turns being answered now.", registry=self.registry
        )
        self.turn_seconds = Histogram(
            "slackbot_turn_seconds",
            "Time from event to finished answer.",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
