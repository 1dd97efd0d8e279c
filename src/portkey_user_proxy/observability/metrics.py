"""Prometheus metrics, served at `/metrics`.

Each app owns its registry, so several apps in one process (tests, workers) never collide. Label
values come from small fixed sets (route classes, status codes, outcomes), except the opt-in per-user
token counters, whose label set grows with the number of resolved users (never with what clients send).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ..dialects import OTHER_ROUTE, route_class
from ..dialects.usage import Usage
from ..headers import shorten
from .worker_metrics import forget_dead_workers, multiprocess_directory

CONTENT_TYPE = CONTENT_TYPE_LATEST

# A lookup that MongoDB answered was a cache miss; the metric says so in those words.
_LOOKUP_LABELS = {"found": "miss"}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_LOOKUP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


_Labelled = TypeVar("_Labelled", Counter, Histogram)


class Children(Generic[_Labelled]):
    """A labelled metric's children, each looked up once: `labels()` converts, checks and locks on every call.

    Only for labels whose values come from small fixed sets (route classes, statuses, outcomes).
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: _Labelled) -> None:
        self._metric: _Labelled = metric
        self._children: dict[tuple[str, ...], _Labelled] = {}

    def __call__(self, *values: str) -> _Labelled:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


def user_label(user: str) -> str:
    """A `user` label value that every scrape can encode: valid UTF-8, at most 128 characters.

    A lone surrogate in a label makes every later scrape fail; a long one makes every scrape long.
    """
    return shorten(user).encode("utf-8", "replace").decode("utf-8")


class Metrics:
    def __init__(self, *, per_user_tokens: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.per_user_tokens = per_user_tokens
        prefix = "portkey_user_proxy_"
        self.requests = Counter(
            prefix + "requests",
            "Proxied requests by route class and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            prefix + "upstream_duration_seconds",
            "Time from sending a request upstream to the end of its response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_byte_seconds = Histogram(
            prefix + "upstream_first_byte_seconds",
            "Time from sending a request upstream to the first byte of its response body (a stream's first event).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.open_streams = Gauge(
            prefix + "open_streams",
            "Responses being streamed to clients right now.",
            registry=self.registry,
            multiprocess_mode="livesum",  # with several workers: the sum over the workers alive
        )
        self.lookups = Counter(prefix + "user_lookups", "User lookups by outcome.", ["outcome"], registry=self.registry)
        self.lookup_seconds = Histogram(
            prefix + "user_lookup_duration_seconds",
            "Time spent asking MongoDB for a user (cache misses only).",
            buckets=_LOOKUP_BUCKETS,
            registry=self.registry,
        )
        self.attributions = Counter(
            prefix + "attributions",
            "Requests by attribution outcome, and the reason for it (a small fixed set).",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.errors = Counter(
            prefix + "errors",
            "Error responses the proxy made itself (not relayed from the upstream), by route class and error code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.overhead_seconds = Histogram(
            prefix + "overhead_seconds",
            "Time from receiving a request to sending it upstream: identity, user lookup, metadata.",
            ["route"],
            buckets=_LOOKUP_BUCKETS,
            registry=self.registry,
        )
        self.mongodb_up = Gauge(
            prefix + "mongodb_up",
            "1 when the last MongoDB query (a lookup or the readiness probe) was answered, 0 when it failed.",
            registry=self.registry,
            multiprocess_mode="mostrecent",  # with several workers: whichever asked MongoDB last
        )
        self.teams_readable = Gauge(
            prefix + "teams_readable",
            "0 while LibreChat's groups cannot be read for teams (the last read failed), so teams are left out; "
            "1 otherwise, also with teams off.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.teams_readable.set(1)  # no read has failed yet
        # The children the request path updates on every request.
        self.requests_of = Children(self.requests)
        self.upstream_seconds_of = Children(self.upstream_seconds)
        self.first_byte_seconds_of = Children(self.first_byte_seconds)
        self.overhead_seconds_of = Children(self.overhead_seconds)
        self.attributions_of = Children(self.attributions)
        self._lookups_of = Children(self.lookups)
        self.tokens = Counter(
            prefix + "user_tokens",
            "Tokens per user from response usage (only with METRICS_PER_USER_TOKENS=true).",
            ["user", "kind"],
            registry=self.registry,
        )

    def refused(self, path: str | None, code: str) -> None:
        """A request the server refused before the app saw it whole (408, 431, 503): an error the proxy made."""
        self.errors.labels(route_class(path) if path is not None else OTHER_ROUTE, code).inc()

    def lookup(self, outcome: str) -> None:
        self._lookups_of(_LOOKUP_LABELS.get(outcome, str(outcome))).inc()

    def mongodb_answered(self, answered: bool) -> None:
        self.mongodb_up.set(1 if answered else 0)

    def teams_answered(self, answered: bool) -> None:
        self.teams_readable.set(1 if answered else 0)

    def query_time(self, seconds: float) -> None:
        self.lookup_seconds.observe(seconds)

    def usage(self, user: str, usage: Usage) -> None:
        """Count one response's tokens, as its dialect read them (see `usage.py`)."""
        label = user_label(user)
        for kind, count in usage.counts():
            self.tokens.labels(label, kind).inc(count)

    def exposition(self) -> bytes:
        directory = multiprocess_directory()
        if directory is None:
            return generate_latest(self.registry)
        # Several workers: every scrape reads every worker's files, whichever worker answers it.
        forget_dead_workers(Path(directory))
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def process_ended(self) -> None:
        """A worker stopping: its live gauges (open streams) leave the sums."""
        if (directory := multiprocess_directory()) is not None:
            mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
