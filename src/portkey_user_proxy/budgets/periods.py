"""Budget periods: calendar days, weeks (from Monday) and months in UTC, and the clock that places now in one.

Spend is stored under the key of the period it was made in, so a new period starts at zero on every
replica at the same instant, with no reset job. The texts are the ones a LibreChat user reads in a
refusal: "for December; it resets on 1 January 00:00 UTC".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """One period: from `start` (included) to `end` (excluded), both UTC midnights."""

    period: Period
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """What spend is stored under: the kind and first day, e.g. `month:2026-12-01`."""
        return f"{self.period}:{self.start:%Y-%m-%d}"

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def describe(self) -> str:
        """The period as a person names it: "December", "the week of 30 November", "4 December"."""
        if self.period is Period.MONTH:
            return _MONTHS[self.start.month - 1]
        if self.period is Period.WEEK:
            return f"the week of {_day(self.start)}"
        return _day(self.start)

    def describe_reset(self) -> str:
        """When the next period starts: "1 January 00:00 UTC"."""
        return f"{_day(self.end)} 00:00 UTC"


def window_at(period: Period, instant: datetime) -> Window:
    """The period of kind `period` that holds `instant`."""
    day = instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return Window(period, day, day + timedelta(days=1))
    if period is Period.WEEK:
        monday = day - timedelta(days=day.weekday())
        return Window(period, monday, monday + timedelta(weeks=1))
    first = day.replace(day=1)
    year, month = divmod(first.year * 12 + first.month, 12)  # the month after, counted from 0
    return Window(period, first, first.replace(year=year, month=month + 1))


def _day(instant: datetime) -> str:
    return f"{instant.day} {_MONTHS[instant.month - 1]}"
