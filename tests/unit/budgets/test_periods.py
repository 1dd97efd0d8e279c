from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from portkey_user_proxy.budgets import Period, window_at


@pytest.mark.parametrize(
    ("period", "instant", "key", "described", "reset"),
    [
        (Period.MONTH, datetime(2026, 12, 4, 13, 5, tzinfo=UTC), "month:2026-12-01", "December", "1 January 00:00 UTC"),
        (Period.MONTH, datetime(2028, 2, 29, tzinfo=UTC), "month:2028-02-01", "February", "1 March 00:00 UTC"),
        (
            Period.WEEK,
            datetime(2026, 12, 6, 23, 59, tzinfo=UTC),  # a Sunday: still the week that began on Monday
            "week:2026-11-30",
            "the week of 30 November",
            "7 December 00:00 UTC",
        ),
        (
            Period.WEEK,
            datetime(2026, 12, 7, tzinfo=UTC),
            "week:2026-12-07",
            "the week of 7 December",
            "14 December 00:00 UTC",
        ),
        (Period.DAY, datetime(2026, 12, 31, 23, 0, tzinfo=UTC), "day:2026-12-31", "31 December", "1 January 00:00 UTC"),
    ],
)
def test_periods_are_calendar_periods_in_utc(
    period: Period, instant: datetime, key: str, described: str, reset: str
) -> None:
    window = window_at(period, instant)

    assert window.key == key
    assert window.describe() == described
    assert window.describe_reset() == reset
    assert window.contains(instant)
    assert not window.contains(window.end)
    assert window_at(period, window.end - timedelta(microseconds=1)) == window


def test_an_instant_in_another_timezone_is_placed_by_its_utc_time() -> None:
    # 1 January 01:30 in Paris is still 31 December in UTC.
    paris = timezone(timedelta(hours=1))

    assert window_at(Period.MONTH, datetime(2027, 1, 1, 0, 30, tzinfo=paris)).key == "month:2026-12-01"
