"""What admission holds of a budget before the answer: the request's likely cost, from recent answers."""

from __future__ import annotations

from decimal import Decimal

from portkey_user_proxy.budgets import Demand, Price, PriceList
from portkey_user_proxy.budgets.estimates import DEFAULT_OUTPUT_TOKENS, RecentAnswers

# $1 per 1M input tokens, $2 per 1M output tokens: 1,000 and 2,000 nanodollars a token.
IN, OUT = 1000, 2000
PRICES = PriceList([Price("cheap", Decimal(1), Decimal(2)), Price("dear", Decimal(10), Decimal(20))], catalogue=None)


def test_a_model_never_seen_holds_its_prompt_and_its_cap_or_a_long_answer() -> None:
    recent = RecentAnswers(PRICES)

    assert recent.estimate(Demand("cheap", 1000, 500)) == 1000 * IN + 500 * OUT
    assert type(recent.estimate(Demand("cheap", 1000, 500))) is int  # holds add up exactly, as spend does
    assert recent.estimate(Demand("cheap", 1000, None)) == 1000 * IN + DEFAULT_OUTPUT_TOKENS * OUT
    assert recent.estimate(Demand("cheap", 1000, 0)) == 1000 * IN  # no answer asked for: the prompt alone
    assert recent.estimate(Demand("cheap", 1000, -5)) == 1000 * IN
    assert recent.estimate(Demand("dear", 1000, 500)) == 10 * (1000 * IN + 500 * OUT)  # each model at its price
    assert recent.estimate(Demand("unpriced", 1000, 500)) == 0


def test_recent_answers_say_how_long_the_next_one_is_likely_to_be() -> None:
    recent = RecentAnswers(PRICES)
    recent.learn("cheap", 1000, 0)
    recent.learn("cheap", 2000, 0)  # the running average moves a fifth of the way: 1,200 tokens

    assert recent.estimate(Demand("cheap", 0, None)) == 1200 * OUT
    assert recent.estimate(Demand("cheap", 0, 100)) == 100 * OUT  # the request's own cap, when lower
    assert recent.estimate(Demand("dear", 0, None)) == 10 * DEFAULT_OUTPUT_TOKENS * OUT  # another model: nothing learnt


def test_a_hold_is_never_below_what_recent_answers_cost_on_average() -> None:
    recent = RecentAnswers(PRICES)
    recent.learn("cheap", 10, 5_000_000)  # an answer billed far above its output (a long prompt, say)
    assert recent.estimate(Demand("cheap", 0, 10)) == 5_000_000

    recent.learn("cheap", 10, 0)  # the average moves a fifth of the way
    assert recent.estimate(Demand("cheap", 0, 10)) == 4_000_000
