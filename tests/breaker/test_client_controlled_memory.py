"""Memory a client can make a replica hold through the names it sends."""

from __future__ import annotations

import tracemalloc

from portkey_user_proxy.budgets.estimates import Demand, RecentAnswers
from portkey_user_proxy.budgets.prices import PriceList


def test_distinct_long_model_names_do_not_pile_up_in_the_price_caches() -> None:
    """A request's `model` up to 64 KiB (`fields._FIELD_LIMIT`) is a key of `PriceList._matched` (4,096 kept)
    and `RecentAnswers._models` (1,000 kept), looked up at admission for every budgeted user: a client
    cycling long names makes each server process hold up to 4,096 x 64 KiB = 256 MiB."""
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
