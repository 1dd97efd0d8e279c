"""`portkey-user-proxy budgets`: the current period's spend against each budget, as text or JSON;
`budgets price`: the prices a model is charged at, and where they come from; `budgets check`: what a
valid budgets file sets.

Spend is read from the budget store when asked, not from any replica's cache: what every replica has
written.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from ..budgets import BudgetConfig, BudgetReport, Scope, Standing, dollars_text
from ..budgets.catalogue import TokenPrices
from ..budgets.money import NANOS_PER_DOLLAR
from ..budgets.prices import PriceList, Quote


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
    allowance = f"  ({_printable(standing.allowance_of)} allowance)" if standing.allowance_of is not None else ""
    return f"  {name:<32} {spent:>12} of {dollars_text(standing.limit_nanos):<10} {share:>5}{over}{allowance}"


def _entry(standing: Standing) -> dict[str, Any]:
    limit = standing.limit_nanos
    entry: dict[str, Any] = {
        "name": standing.name,
        "spent_usd": standing.spent_nanos / NANOS_PER_DOLLAR,
        "limit_usd": limit / NANOS_PER_DOLLAR if limit is not None else None,
        "used": round(_share(standing), 4) if limit else None,
        "over_budget": limit is not None and standing.spent_nanos >= limit,
    }
    if standing.scope is Scope.USER:
        entry["allowance_of"] = standing.allowance_of  # the group whose allowance per member is the limit, or null
    return entry


def _share(standing: Standing) -> float:
    return standing.spent_nanos / standing.limit_nanos if standing.limit_nanos else 0.0


def _printable(name: str) -> str:
    # Names come from LibreChat's data (groups, emails): escaped unless a terminal shows them as they are.
    return name if name.isprintable() else ascii(name)


def price_text(model: str, quote: Quote, prices: PriceList, budgets_file: Path | None) -> str:
    """What `budgets price` prints: the source, then USD per 1M tokens of each kind, tiers and changes after."""
    lines = [f"{'model:':<13}{model}", f"{'priced by:':<13}{_source(quote, prices, budgets_file)}"]
    if quote.found is not None and prices.catalogue is not None:
        lines.append(f"{'catalogue:':<13}{prices.catalogue.describe()}")
    lines.extend(_price_lines(quote.prices))
    for tier in quote.tiers:
        lines.append(f"above {tier.above:,} input tokens, every token of the answer costs:")
        lines.extend(f"  {line}" for line in _price_lines(tier.prices))
    if quote.until is not None:
        lines.append(f"{'until:':<13}{quote.until:%Y-%m-%d %H:%M} UTC, when the catalogue's price changes")
    return "\n".join(lines)


def budgets_file_text(path: Path, config: BudgetConfig) -> str:
    """What `budgets check` prints for a valid file: its limits, then the price that applies to each model it names."""
    users = [f"{name} {_dollars(limit)}" for name, limit in config.users.items()]
    if config.default_user is not None:
        users.append(f"every other user {_dollars(config.default_user)}")
    lines = [
        f"{'budgets file:':<14}{path}: valid",
        f"{'period:':<14}{config.period} (calendar, UTC)",
        f"{'mode:':<14}{config.mode}",
        f"{'teams:':<14}" + (", ".join(f"{team} {_dollars(limit)}" for team, limit in config.teams.items()) or "none"),
        f"{'users:':<14}" + (", ".join(users) or "none"),
    ]
    prices = PriceList(config.prices)
    for index, entry in enumerate(config.prices, start=1):
        quote = prices.quote(entry.model)
        assert quote is not None  # an entry's own glob matches its own text, or an earlier one does
        lines.append(f"prices, entry {index}:")
        if quote.entry != index:
            lines.append(f"  never used: entry {quote.entry} of `prices` matches {json.dumps(entry.model)} first")
        lines.extend(f"  {line}" for line in price_text(entry.model, quote, prices, path).splitlines())
    if not config.prices:
        lines.append(f"{'prices:':<14}none of its own: every model at the catalogue's published price")
    return "\n".join(lines)


def _dollars(amount: Decimal) -> str:
    return dollars_text(int(amount * NANOS_PER_DOLLAR))


def _source(quote: Quote, prices: PriceList, budgets_file: Path | None) -> str:
    if quote.entry is not None:
        glob = prices.prices[quote.entry - 1].model
        return f"the budgets file {budgets_file}, entry {quote.entry} of `prices` (model: {json.dumps(glob)})"
    assert quote.found is not None
    file = f"no entry of the budgets file {budgets_file} matches" if budgets_file else "BUDGETS_FILE is unset"
    return f"the catalogue: {quote.found.provider}'s {quote.found.model} ({file})"


def _price_lines(prices: TokenPrices) -> list[str]:
    kinds = (
        ("input", prices.input),
        ("output", prices.output),
        ("cache read", prices.cache_read),
        ("cache write", prices.cache_write),
    )
    return [
        f"{kind + ':':<13}{_per_million(price if price is not None else prices.input)}"
        + (" (input's price: none of its own)" if price is None else "")
        for kind, price in kinds
    ]


def _per_million(dollars: Decimal) -> str:
    """`$2.50`, `$0.075`: cents at least, as price lists write them, and every digit beyond."""
    exact = dollars.normalize()
    if not isinstance(exponent := exact.as_tuple().exponent, int) or exponent > -2:
        exact = exact.quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"${exact:,f} per 1M tokens"
