"""Budgets per team and per user, in US dollars per calendar period, shared by every replica.

`BUDGETS_FILE` (`file.py`) names the period, the mode, the prices and the budgets. `Budgets`
(`ledger.py`) is what the forwarder calls: `check` before forwarding, `record` after the answer;
spend lives in MongoDB (`store.py`) and is read through a short cache (`spend.py`).
"""

from __future__ import annotations

from .file import BudgetConfig, BudgetFileError, BudgetsFile, Mode, load_budget_file, parse_budgets
from .ledger import (
    BUDGET_EXCEEDED,
    BudgetExceeded,
    BudgetReport,
    Budgets,
    BudgetStoreUnavailable,
    Demand,
    Hold,
    Standing,
    StoreFailurePolicy,
    StoreState,
)
from .metrics import BudgetMetrics
from .money import dollars_text
from .observer import BudgetObserver
from .periods import Clock, Period, SystemClock, Window, window_at
from .prices import Cost, Price, PriceList
from .store import Scope, SpendStore

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
