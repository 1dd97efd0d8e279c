"""Memory a client can make a replica hold through the names it sends."""

from __future__ import annotations

import tracemalloc

from portkey_user_proxy.budgets.estimates import Demand, RecentAnswers
from portkey_user_proxy.budgets.prices import PriceList


def test_distinct_long_model_names_do_not_pile_up_in_the_price_caches() -> None:
    """A request's `model` may be 64 KiB long, and the price caches keep thousands of names: a name longer than
    any model's is priced as no model, never kept."""
    prices = PriceList(())
    recent = RecentAnswers(prices)
    tracemalloc.start()
    try:
        for index in range(1_000):
            recent.estimate(Demand(f"gpt-4o-{index}-" + "a" * 60_000, 10, None))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 16 * 1024 * 1024
