"""The budgets file's forms that are accepted but silently mean less than they say."""

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
    """The file refuses a key given twice (`_UniqueKeyLoader`), but names that differ only in case or spaces
    are the same team or user to the proxy: the smaller budget silently disappears."""
    with pytest.raises(BudgetFileError):
        parse_budgets(text, "budgets.yaml")


def test_a_default_written_with_a_capital_is_the_default_or_refused() -> None:
    """`Default: 50` becomes the budget of a user named "default" and leaves every user without a limit."""
    try:
        config = parse_budgets("users: {Default: 50}", "budgets.yaml")
    except BudgetFileError:
        return
    assert config.default_user is not None
