"""What budgets report as they work: the metrics' side of the ledger (see `metrics.BudgetMetrics`)."""

from __future__ import annotations

from typing import Protocol

from .store import Scope


class BudgetObserver(Protocol):
    def spend(self, scope: Scope, name: str, nanos: int) -> None:
        """The period's spend of a team (one in the file) or a user, as this replica knows it."""

    def limit(self, scope: Scope, name: str, nanos: int) -> None:
        """A team's budget for the period, from the file."""

    def forget_team(self, name: str) -> None:
        """A team no longer in the file (reloaded): its series end."""

    def over_budget(self, scope: Scope, *, refused: bool) -> None:
        """A request whose user or team had spent its budget: refused, or forwarded in warn mode."""

    def unpriced(self, tokens: int) -> None:
        """Tokens of a model no price matched."""

    def pending(self, increments: int) -> None:
        """Increments waiting to be written."""

    def dropped(self, increments: int) -> None:
        """Increments dropped because the queue of waiting ones was full."""

    def store_up(self, up: bool) -> None:
        """Whether the budget store answered the last read or write."""

    def unchecked(self, reason: str) -> None:
        """A request that may have a budget forwarded without its spend known (BUDGET_STORE_FAILURE=allow)."""

    def estimated(self, reason: str) -> None:
        """An answer charged on the forwarder's estimate of its usage, not the provider's."""

    def invalid_usage(self) -> None:
        """An answer whose usage priced above what any one answer can cost: not charged."""


class NoObserver:
    def spend(self, scope: Scope, name: str, nanos: int) -> None:
        pass

    def limit(self, scope: Scope, name: str, nanos: int) -> None:
        pass

    def forget_team(self, name: str) -> None:
        pass

    def over_budget(self, scope: Scope, *, refused: bool) -> None:
        pass

    def unpriced(self, tokens: int) -> None:
        pass

    def pending(self, increments: int) -> None:
        pass

    def dropped(self, increments: int) -> None:
        pass

    def store_up(self, up: bool) -> None:
        pass

    def unchecked(self, reason: str) -> None:
        pass

    def estimated(self, reason: str) -> None:
        pass

    def invalid_usage(self) -> None:
        pass


class AlertObserver(Protocol):
    def warning_sent(self) -> None:
        """A budget warning the webhook accepted."""

    def attempt_failed(self) -> None:
        """A POST to the webhook that failed: no answer, or a status other than 2xx."""

    def warnings_dropped(self, count: int) -> None:
        """Budget warnings given up: the queue was full, the webhook refused, or retries ran out."""


class NoAlertObserver:
    def warning_sent(self) -> None:
        pass

    def attempt_failed(self) -> None:
        pass

    def warnings_dropped(self, count: int) -> None:
        pass
