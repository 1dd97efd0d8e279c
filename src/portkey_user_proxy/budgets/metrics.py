"""Budget metrics in the proxy's Prometheus registry.

Team labels come from the budgets file (bounded by it); user labels only with
METRICS_PER_USER_TOKENS, as for the per-user token counters.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..observability.metrics import user_label
from .money import NANOS_PER_DOLLAR
from .store import Scope

_PREFIX = "portkey_user_proxy_"
UNCHECKED_REASONS = ("spend_unread", "spend_stale", "user_unknown", "holds_unread")


class BudgetMetrics:
    def __init__(self, registry: CollectorRegistry, *, per_user: bool = False) -> None:
        self._per_user = per_user
        self.team_spend = Gauge(
            _PREFIX + "team_budget_spend_usd",
            "The current period's spend of each team in BUDGETS_FILE, in US dollars.",
            ["team"],
            registry=registry,
            multiprocess_mode="max",  # each worker adds its own answers not yet read back to the store's figure
        )
        self.team_limit = Gauge(
            _PREFIX + "team_budget_limit_usd",
            "Each team's budget for the period, in US dollars, from BUDGETS_FILE.",
            ["team"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.user_spend = Gauge(
            _PREFIX + "user_budget_spend_usd",
            "The current period's spend of each user, in US dollars (only with METRICS_PER_USER_TOKENS=true).",
            ["user"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.refusals = Counter(
            _PREFIX + "budget_refusals",
            "Requests refused because their user or team had spent its budget, by scope (team, user).",
            ["scope"],
            registry=registry,
        )
        self.warnings = Counter(
            _PREFIX + "budget_over_limit_forwarded",
            "Requests over their user's or team's budget forwarded anyway (mode: warn), by scope.",
            ["scope"],
            registry=registry,
        )
        self.unpriced_tokens = Counter(
            _PREFIX + "budget_unpriced_tokens",
            "Tokens of answers whose model neither BUDGETS_FILE nor the price catalogue prices: counted, never priced.",
            registry=registry,
        )
        self.pending_increments = Gauge(
            _PREFIX + "budget_pending_increments",
            "Spend increments waiting to be written to the budget store.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.dropped_increments = Counter(
            _PREFIX + "budget_dropped_increments",
            "Spend increments dropped because the queue of those waiting for the budget store was full.",
            registry=registry,
        )
        self.unchecked_requests = Counter(
            _PREFIX + "budget_unchecked",
            "Requests that may have a budget forwarded without their spend known (BUDGET_STORE_FAILURE=allow), "
            "by reason: spend_unread (the budget store did not answer in time for a first read), spend_stale "
            "(decided on a figure older than the cache window), user_unknown (MongoDB could not say who asks).",
            ["reason"],
            registry=registry,
        )
        self.estimated_charges = Counter(
            _PREFIX + "budget_estimated_charges",
            "Answers charged on the proxy's estimate of their usage, not the provider's, by reason.",
            ["reason"],
            registry=registry,
        )
        self.invalid_usage_answers = Counter(
            _PREFIX + "budget_invalid_usage",
            "Answers whose usage priced above what any one answer can cost ($10,000): not charged.",
            registry=registry,
        )
        self._team_spend_children: dict[str, Gauge] = {}
        for scope in Scope:  # every scope served from the start, so rates over them start at zero
            self.refusals.labels(scope.value)
            self.warnings.labels(scope.value)
        for reason in UNCHECKED_REASONS:
            self.unchecked_requests.labels(reason)
        self.store_is_up = Gauge(
            _PREFIX + "budget_store_up",
            "1 when the budget store answered the last read or write, 0 when it failed.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )

    def spend(self, scope: Scope, name: str, nanos: int) -> None:
        if scope is Scope.TEAM:
            # Set after every answer: the team's gauge child is kept (teams are bounded by the file),
            # rather than looked up through `labels()` each time.
            child = self._team_spend_children.get(name)
            if child is None:
                child = self._team_spend_children[name] = self.team_spend.labels(name)
            child.set(nanos / NANOS_PER_DOLLAR)
        elif self._per_user:
            self.user_spend.labels(user_label(name)).set(nanos / NANOS_PER_DOLLAR)

    def limit(self, scope: Scope, name: str, nanos: int) -> None:
        if scope is Scope.TEAM:
            self.team_limit.labels(name).set(nanos / NANOS_PER_DOLLAR)

    def forget_team(self, name: str) -> None:
        self._team_spend_children.pop(name, None)
        for gauge in (self.team_spend, self.team_limit):
            with contextlib.suppress(KeyError):  # never set
                gauge.remove(name)

    def over_budget(self, scope: Scope, *, refused: bool) -> None:
        (self.refusals if refused else self.warnings).labels(scope.value).inc()

    def unpriced(self, tokens: int) -> None:
        self.unpriced_tokens.inc(tokens)

    def pending(self, increments: int) -> None:
        self.pending_increments.set(increments)

    def dropped(self, increments: int) -> None:
        self.dropped_increments.inc(increments)

    def store_up(self, up: bool) -> None:
        self.store_is_up.set(1 if up else 0)

    def unchecked(self, reason: str) -> None:
        self.unchecked_requests.labels(reason).inc()

    def estimated(self, reason: str) -> None:
        self.estimated_charges.labels(reason).inc()  # one of the forwarder's few reasons

    def invalid_usage(self) -> None:
        self.invalid_usage_answers.inc()


class AlertMetrics:
    """The budget webhook's counters (with BUDGET_WEBHOOK_URL set): every one served from the start, at zero."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            _PREFIX + "budget_webhook_sent",
            "Budget warnings the webhook (BUDGET_WEBHOOK_URL) accepted.",
            registry=registry,
        )
        self.failed = Counter(
            _PREFIX + "budget_webhook_failed",
            "POSTs of budget warnings that failed (no answer, or not 2xx); each retry counts.",
            registry=registry,
        )
        self.dropped = Counter(
            _PREFIX + "budget_webhook_dropped",
            "Budget warnings given up: queue full, refused by the webhook, or not delivered in time.",
            registry=registry,
        )

    def warning_sent(self) -> None:
        self.sent.inc()

    def attempt_failed(self) -> None:
        self.failed.inc()

    def warnings_dropped(self, count: int) -> None:
        self.dropped.inc(count)
