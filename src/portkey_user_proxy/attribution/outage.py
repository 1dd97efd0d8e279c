"""The outage window: after MongoDB fails, lookups of users not cached skip it for a while.

Without it, every request of a user not yet cached waits the full lookup timeout while MongoDB is
down. After a failure the window opens (1 s, doubling with each failed probe up to 5 s); inside
it, new users are attributed by the fallback at once. When it ends, one query goes out as the
probe; requests wait a moment for its answer (the user directory bounds that wait) rather than
each asking; an answer closes the window, a failure reopens it, longer.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

FIRST_WINDOW_SECONDS = 1.0
LONGEST_WINDOW_SECONDS = 5.0


class MongoState(enum.Enum):
    AVAILABLE = "available"  # every lookup may ask MongoDB
    BACKING_OFF = "backing_off"  # MongoDB failed: nobody asks until the window ends
    PROBING = "probing"  # the window ended: one query is asking, the others still skip


class Admission(enum.Enum):
    QUERY = "query"  # ask MongoDB and wait for the answer
    PROBE = "probe"  # ask MongoDB, but wait only a moment: it failed moments ago
    SKIP = "skip"  # do not ask


class OutageWindow:
    def __init__(
        self,
        *,
        first: float = FIRST_WINDOW_SECONDS,
        longest: float = LONGEST_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = first
        self._longest = longest
        self._clock = clock
        self.state = MongoState.AVAILABLE
        self._length = first
        self._ends_at = 0.0

    def admit(self) -> Admission:
        """Whether a lookup may ask MongoDB now; the first to ask after a window sends its probe."""
        if self.state is MongoState.AVAILABLE:
            return Admission.QUERY
        if self.state is MongoState.BACKING_OFF and self._clock() >= self._ends_at:
            self.state = MongoState.PROBING
            return Admission.PROBE
        return Admission.SKIP

    def answered(self) -> None:
        self.state = MongoState.AVAILABLE
        self._length = self._first

    def failed(self) -> None:
        if self.state is MongoState.BACKING_OFF:
            return  # queries sent before the window opened fail too: one outage, one window
        if self.state is MongoState.PROBING:
            self._length = min(self._length * 2, self._longest)
        self.state = MongoState.BACKING_OFF
        self._ends_at = self._clock() + self._length

    @property
    def seconds_left(self) -> float:
        return max(0.0, self._ends_at - self._clock()) if self.state is MongoState.BACKING_OFF else 0.0
