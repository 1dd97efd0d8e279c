"""Each key's spend as this replica knows it, without waiting on MongoDB to know it.

The figure is the store's, read at most `fresh_for` seconds ago, plus what this replica recorded
that the read may not have counted: everything not yet confirmed written when the read was sent.
It can count a write twice for one read (one confirmed while the read ran), never miss one of this
replica's; other replicas' spend shows at the next read.

Beside it, what is held: the estimated cost of this replica's answers admitted and not yet settled
(`ledger.Hold`). A request is admitted while spent + held is below the budget, so requests running
at once count against what is left before any of them has cost anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from .periods import Window
from .store import SpendKey


@dataclass(slots=True)
class KeySpend:
    recorded: int = 0  # by this replica, since start or the period's start
    written: int = 0  # of `recorded`, confirmed written to the store
    stored: int | None = None  # the store's figure at the last read; None before the first
    written_at_read: int = 0  # `written` when that read was sent
    read_at: float = -float("inf")  # monotonic time the last read was answered
    held: int = 0  # estimates of this replica's admitted answers, not yet settled

    def spent(self) -> int:
        """The store's figure plus what it may not count yet; before any read, what this replica recorded."""
        if self.stored is None:
            return self.recorded
        return self.stored + self.recorded - self.written_at_read


class SpendView:
    def __init__(self, fresh_for: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.fresh_for = fresh_for
        self._monotonic = monotonic
        self._known: dict[SpendKey, KeySpend] = {}

    def entry(self, key: SpendKey) -> KeySpend:
        """The key's figures, created empty (never read) on the first look."""
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = KeySpend()
        return known

    def is_fresh(self, key: SpendKey, within: float | None = None) -> bool:
        """Whether the key was read within `within` seconds (the cache window by default)."""
        known = self._known.get(key)
        limit = self.fresh_for if within is None else within
        return known is not None and self._monotonic() - known.read_at < limit

    def unwritten(self, key: SpendKey) -> int:
        """What this replica recorded for the key and has not seen written: the store does not count it yet."""
        known = self._known.get(key)
        return known.recorded - known.written if known is not None else 0

    def recorded(self, key: SpendKey, nanos: int) -> int:
        """Add what this replica recorded; the key's spend after it."""
        known = self.entry(key)
        known.recorded += nanos
        return known.spent()

    def release(self, key: SpendKey, nanos: int) -> None:
        """An admitted answer settled (or was never sent): its estimate no longer holds budget."""
        known = self._known.get(key)
        if known is not None:  # a key of a period that ended is forgotten with what it held
            known.held = max(known.held - nanos, 0)

    def written(self, amounts: Mapping[SpendKey, int]) -> None:
        for key, nanos in amounts.items():
            if (known := self._known.get(key)) is not None:
                known.written += nanos

    def read_sent(self, keys: Collection[SpendKey]) -> dict[SpendKey, int]:
        """What each key had written when a read was sent, for `read_answered`."""
        return {key: self.entry(key).written for key in keys}

    def read_sent_for_all(self) -> dict[SpendKey, int]:
        """`read_sent` for a read of every key of the period: those known so far."""
        return {key: known.written for key, known in self._known.items() if known.written}

    def read_answered(self, stored: Mapping[SpendKey, int], sent: Mapping[SpendKey, int], *, add: bool = False) -> None:
        """The store's figures read; `add`: also for keys not known yet (a read of the whole period)."""
        now = self._monotonic()
        for key, nanos in stored.items():
            known = self._known.get(key)
            if known is None:
                if not add:
                    continue
                known = self._known[key] = KeySpend()
            known.stored, known.written_at_read, known.read_at = nanos, sent.get(key, 0), now

    def keep_only(self, window: Window) -> None:
        """Forget every key of another period (a new one began)."""
        self._known = {key: known for key, known in self._known.items() if key.window == window}
