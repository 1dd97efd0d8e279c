"""The answers budgets give a request they refuse, shaped like OpenAI's errors so LibreChat shows them.

- `BudgetExceeded`, 412 `budget_exceeded`: the user or team has used its budget for the period (or
  its requests still running may use the rest). 412 is what Portkey answers for its own budgets, and
  the OpenAI and Anthropic SDKs never retry it.
- `BudgetStoreUnavailable`, 503 `budget_store_unavailable` with `Retry-After`: spend cannot be read
  (or whose it would be cannot be told) and BUDGET_STORE_FAILURE is deny.
"""

from __future__ import annotations

from ..errors import ProxyError
from .money import dollars_text
from .store import Scope, SpendKey

BUDGET_EXCEEDED = "budget_exceeded"
_RETRY_AFTER = ((b"retry-after", b"5"),)


class BudgetExceeded(ProxyError):
    def __init__(self, message: str, scope: Scope) -> None:
        super().__init__(412, message, "budget_exceeded")
        self.scope = scope


class BudgetStoreUnavailable(ProxyError):
    def __init__(self, message: str) -> None:
        super().__init__(503, message, "budget_store_unavailable", headers=_RETRY_AFTER)


def over_budget_message(key: SpendKey, limit: int, *, spent: bool) -> str:
    """`spent`: the budget is used; else the requests still running may use what is left of it."""
    window, budget = key.window, dollars_text(limit)
    when = f"for {window.describe()}; it resets on {window.describe_reset()}"
    if not spent:
        whose = f"the {key.name} team's requests" if key.scope is Scope.TEAM else "your requests"
        owner = "its" if key.scope is Scope.TEAM else "your"
        return (
            f"{whose} still running may use the rest of {owner} budget of {budget} {when}; "
            "try again when they have finished"
        )
    if key.scope is Scope.TEAM:
        return f"the {key.name} team has used its budget of {budget} {when}"
    return f"you have used your budget of {budget} {when}"


def store_refusal(database: str) -> BudgetStoreUnavailable:
    return BudgetStoreUnavailable(
        f"the proxy cannot read budget spend (database {database}) and BUDGET_STORE_FAILURE is deny; try again shortly"
    )


def unknown_spender_refusal() -> BudgetStoreUnavailable:
    return BudgetStoreUnavailable(
        "the proxy cannot tell whose budget this request counts against (MongoDB does not answer) and "
        "BUDGET_STORE_FAILURE is deny; try again shortly"
    )
