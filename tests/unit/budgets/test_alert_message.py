"""The warning a channel shows: one sentence a person reads, names that can never become markup, exact amounts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from portkey_user_proxy.budgets import Period, Scope, window_at
from portkey_user_proxy.budgets.alert_message import (
    Crossing,
    doctor_test_body,
    percent,
    slack_plain,
    warning_body,
    warning_text,
)

DECEMBER = window_at(Period.MONTH, datetime(2026, 12, 4, tzinfo=UTC))
WEEK = window_at(Period.WEEK, datetime(2026, 12, 4, tzinfo=UTC))


def test_a_teams_warning_says_who_how_much_of_what_and_until_when() -> None:
    crossing = Crossing(DECEMBER, Scope.TEAM, "Finance", Decimal("0.8"), 400_021_000_000, 500 * 10**9)

    assert warning_body(crossing) == {
        "text": "The Finance team has used 80% of its budget of $500 for December ($400.02 spent); "
        "it resets on 1 January 00:00 UTC.",
        "scope": "team",
        "name": "Finance",
        "period": "month:2026-12-01",
        "threshold": 0.8,
        "spent_usd": "400.021",
        "limit_usd": "500",
        "resets_at": "2027-01-01T00:00:00+00:00",
    }


def test_a_users_warning_names_the_user() -> None:
    crossing = Crossing(WEEK, Scope.USER, "alice@example.com", Decimal("1"), 50_500_000_000, 50 * 10**9)

    assert warning_text(crossing) == (
        "The user alice@example.com has used 100% of their budget of $50 for the week of 30 November "
        "($50.50 spent); it resets on 7 December 00:00 UTC."
    )


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<@U0123ABC>", "&lt;@U0123ABC&gt;"),
        ("<https://evil.example|click here>", "&lt;https://evil.example|click here&gt;"),
        ("R&D", "R&amp;D"),
        ("&lt;already escaped&gt;", "&amp;lt;already escaped&amp;gt;"),  # shown as written, not decoded
        ("two\nlines", "two\ufffdlines"),
        ("right\u202eto left", "right\ufffdto left"),
    ],
)
def test_names_reach_the_channel_as_plain_text(name: str, shown: str) -> None:
    assert slack_plain(name) == shown
    crossing = Crossing(DECEMBER, Scope.TEAM, name, Decimal("0.8"), 80, 100)
    assert warning_text(crossing).startswith(f"The {shown} team has used 80%")
    assert warning_body(crossing)["name"] == name  # the field for machines keeps the name as it is


@pytest.mark.parametrize(
    ("threshold", "shown"), [("0.8", "80%"), ("1", "100%"), ("1.0", "100%"), ("0.875", "87.5%"), ("1.5", "150%")]
)
def test_thresholds_read_as_percentages(threshold: str, shown: str) -> None:
    assert percent(Decimal(threshold).normalize()) == shown


def test_doctors_test_message_says_what_it_is_and_what_will_follow() -> None:
    assert doctor_test_body() == {
        "text": "portkey-user-proxy: a test message from `doctor --webhook-test`. Budget warnings will arrive here.",
        "test": True,
    }
