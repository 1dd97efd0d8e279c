"""Budgets per team and per user, in US dollars per calendar period, shared by every replica.

`BUDGETS_FILE` (`file.py`) names the period, the mode, the prices and the budgets. `Budgets`
(`ledger.py`) is what the forwarder calls: `admit` before forwarding (which holds the request's
estimated cost, `estimates.py`, or refuses it, `refusals.py`), `settle` after the answer (or
`release` for a request never sent). Spend lives in MongoDB (`store.py`), is known to each replica
through `spend.py`, and is read and written in the background by `sync.py`.
"""

from __future__ import annotations

from .estimates import Demand
from .file import BudgetConfig, BudgetFileError, BudgetsFile, Mode, load_budget_file, parse_budgets
from .ledger import BudgetReport, Budgets, Hold, Standing, StoreFailurePolicy
from .metrics import BudgetMetrics
from .money import dollars_text
from .observer import BudgetObserver
from .periods import Clock, Period, SystemClock, Window, window_at
from .prices import Cost, Price, PriceList
from .refusals import BUDGET_EXCEEDED, BudgetExceeded, BudgetStoreUnavailable
from .store import Scope, SpendStore
from .sync import StoreState

__all__ = [
    "BUDGET_EXCEEDED",
    "BudgetConfig",
    "BudgetExceeded",
    "BudgetFileError",
    "BudgetMetrics",
    "BudgetObserver",
    "BudgetReport",
    "BudgetStoreUnavailable",
    "Budgets",
    "BudgetsFile",
    "Clock",
    "Cost",
    "Demand",
    "Hold",
    "Mode",
    "Period",
    "Price",
    "PriceList",
    "Scope",
    "SpendStore",
    "Standing",
    "StoreFailurePolicy",
    "StoreState",
    "SystemClock",
    "Window",
    "dollars_text",
    "load_budget_file",
    "parse_budgets",
    "window_at",
]
