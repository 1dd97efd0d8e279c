"""Amounts of US dollars as whole nanodollars: sums of them are exact, in memory and in MongoDB.

Spend grows by millions of small increments, across replicas, in any order; integers add up to the
same total whatever the order, floats do not. Costs are computed in picodollars ($1 per 1M tokens
is 10^6 picodollars a token, so any published price is exact) and rounded to nanodollars once per
answer; an int64 of nanodollars holds $9 billion.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

NANOS_PER_DOLLAR = 10**9
# Where sums of nanodollars stop growing: far beyond any budget, well below the int64 MongoDB stores (2^63).
SATURATED_NANOS = 2**62
PICOS_PER_NANO = 1000
# A price is USD per 1M tokens: $1 per 1M tokens is 10^6 picodollars per token.
_PICOS_PER_TOKEN_PER_DOLLAR_PER_MILLION = 10**6


def nanos(dollars: Decimal) -> int:
    """`dollars` in nanodollars, rounded to the nearest."""
    return int((dollars * NANOS_PER_DOLLAR).to_integral_value(ROUND_HALF_UP))


def picos_per_token(dollars_per_million: Decimal) -> int:
    """A price in USD per 1M tokens as picodollars per token, rounded to the nearest."""
    return int((dollars_per_million * _PICOS_PER_TOKEN_PER_DOLLAR_PER_MILLION).to_integral_value(ROUND_HALF_UP))


def nanos_of_picos(picos: int) -> int:
    """Picodollars rounded to the nearest nanodollar (halves up)."""
    return (picos + PICOS_PER_NANO // 2) // PICOS_PER_NANO


def dollars_text(amount_nanos: int) -> str:
    """`$500` for whole dollars, `$12.50` otherwise (cents, rounded; `$0.004` below a cent)."""
    dollars = Decimal(amount_nanos) / NANOS_PER_DOLLAR
    if dollars == dollars.to_integral_value():
        return f"${dollars:,.0f}"
    if abs(dollars) < Decimal("0.01"):
        return f"${dollars.normalize():f}"
    return f"${dollars.quantize(Decimal('0.01'), ROUND_HALF_UP):,}"
