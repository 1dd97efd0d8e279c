"""Names the proxy reads as one: two entries for one team or user are refused; `Default` is the default."""

from __future__ import annotations

import pytest

from portkey_user_proxy.budgets.file import BudgetFileError, parse_budgets


@pytest.mark.parametrize(
    "text",
    [
        "teams: {Finance: 10, finance: 500}",  # teams match ignoring case: one of the two is never applied
        "teams: {Eng: {each: 5}, ENG: {each: 500}}",  # allowances likewise: the later one silently wins
        "users: {Alice@example.com: 10, alice@example.com: 500}",  # one user twice once lower-cased
        'users: {"alice@example.com ": 10, alice@example.com: 500}',  # ...or once stripped
    ],
)
def test_two_entries_for_the_same_team_or_user_are_refused(text: str) -> None:
    """Names that differ only in case or blanks are one team or user to the proxy: one of two budgets would
    silently never apply."""
    with pytest.raises(BudgetFileError):
        parse_budgets(text, "budgets.yaml")


def test_a_default_written_with_a_capital_is_the_default_or_refused() -> None:
    config = parse_budgets("users: {Default: 50}", "budgets.yaml")

    assert config.default_user == 50 and config.users == {}
