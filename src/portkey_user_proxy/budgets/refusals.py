"""Why budgets refuse a request, in their own terms; `answers.py` turns each into the client's answer
(the catalogue's `budget_exceeded` and `budget_store_unavailable`, errors.py).

- `BudgetExceeded`: the user or team has used its budget for the period (or its requests still
  running may use the rest).
- `BudgetStoreUnavailable`: spend cannot be read (or whose it would be cannot be told) and
  BUDGET_STORE_FAILURE is deny.
"""

from __future__ import annotations

from .. import errors
from .money import dollars_text
from .store import Scope, SpendKey

BUDGET_EXCEEDED = errors.BUDGET_EXCEEDED.code


class BudgetExceeded(Exception):
    """Its message is the client's: LibreChat shows it to the user."""


class BudgetStoreUnavailable(Exception):
    """Its message is the client's."""


def over_budget_message(key: SpendKey, limit: int, *, spent: bool, allowance_of: str | None = None) -> str:
    """`spent`: the budget is used; else the requests still running may use what is left of it.

    `allowance_of`: the group whose per-member allowance is the user's limit, named so they know which.
    """
    window = key.window
    budget = (
        f"budget of {dollars_text(limit)}"
        if allowance_of is None
        else f"{allowance_of} allowance of {dollars_text(limit)}"
    )
    when = f"for {window.describe()}; it resets on {window.describe_reset()}"
    if not spent:
        whose = f"the {key.name} team's requests" if key.scope is Scope.TEAM else "your requests"
        owner = "its" if key.scope is Scope.TEAM else "your"
        return f"{whose} still running may use the rest of {owner} {budget} {when}; try again when they have finished"
    if key.scope is Scope.TEAM:
        return f"the {key.name} team has used its {budget} {when}"
    return f"you have used your {budget} {when}"


def store_refusal(database: str) -> BudgetStoreUnavailable:
    return BudgetStoreUnavailable(
        f"the proxy cannot read budget spend (database {database}) and BUDGET_STORE_FAILURE is deny; try again shortly"
    )


def unknown_spender_refusal() -> BudgetStoreUnavailable:
    return BudgetStoreUnavailable(
        "the proxy cannot tell whose budget this request counts against (MongoDB does not answer) and "
        "BUDGET_STORE_FAILURE is deny; try again shortly"
    )
