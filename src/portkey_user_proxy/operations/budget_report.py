"""`portkey-user-proxy budgets`: the current period's spend against each budget, as text or JSON.

Read from the budget store when asked, not from any replica's cache: what every replica has written.
"""

from __future__ import annotations

import json
from typing import Any

from ..budgets import BudgetReport, Standing, dollars_text
from ..budgets.money import NANOS_PER_DOLLAR


def report_text(report: BudgetReport, where: str) -> str:
    window = report.window
    lines = [
        f"period:    {window.describe()} ({window.key}); resets on {window.describe_reset()}",
        f"mode:      {report.mode}",
        f"store:     {where}",
        "teams:" if report.teams else "teams:     none has spent anything this period",
        *(_line(standing) for standing in report.teams),
        "top users:" if report.users else "top users: none has spent anything this period",
        *(_line(standing) for standing in report.users),
    ]
    return "\n".join(lines)


def report_json(report: BudgetReport, where: str) -> str:
    window = report.window
    document = {
        "period": {
            "kind": str(window.period),
            "key": window.key,
            "name": window.describe(),
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
        },
        "mode": str(report.mode),
        "store": where,
        "teams": [_entry(standing) for standing in report.teams],
        "users": [_entry(standing) for standing in report.users],
    }
    return json.dumps(document, indent=2)


def _line(standing: Standing) -> str:
    name = _printable(standing.name)
    spent = dollars_text(standing.spent_nanos)
    if standing.limit_nanos is None:
        return f"  {name:<32} {spent:>12}  (no budget)"
    share = f"{_share(standing):.0%}" if standing.limit_nanos else "-"
    over = "  over budget" if standing.spent_nanos >= standing.limit_nanos else ""
    return f"  {name:<32} {spent:>12} of {dollars_text(standing.limit_nanos):<10} {share:>5}{over}"


def _entry(standing: Standing) -> dict[str, Any]:
    limit = standing.limit_nanos
    return {
        "name": standing.name,
        "spent_usd": standing.spent_nanos / NANOS_PER_DOLLAR,
        "limit_usd": limit / NANOS_PER_DOLLAR if limit is not None else None,
        "used": round(_share(standing), 4) if limit else None,
        "over_budget": limit is not None and standing.spent_nanos >= limit,
    }


def _share(standing: Standing) -> float:
    return standing.spent_nanos / standing.limit_nanos if standing.limit_nanos else 0.0


def _printable(name: str) -> str:
    # Names come from LibreChat's data (groups, emails): escaped unless a terminal shows them as they are.
    return name if name.isprintable() else ascii(name)
