"""Each key's spend as this replica knows it, without waiting on MongoDB to know it.

The figure is the store's, read at most `fresh_for` seconds ago, plus what this replica recorded
that the read may not have counted: everything not yet confirmed written when the read was sent.
It can count a write twice for one read (one confirmed while the read ran), never miss one of this
replica's; other replicas' spend shows at the next read. So a team can overshoot its budget by the
answers in flight when it crossed it, plus what other replicas record within one cache window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from .periods import Window
from .store import SpendKey


@dataclass(slots=True)
class _Known:
    recorded: int = 0  # by this replica, since start or the period's start
    written: int = 0  # of `recorded`, confirmed written to the store
    stored: int | None = None  # the store's figure at the last read; None before the first
    written_at_read: int = 0  # `written` when that read was sent
    read_at: float = -float("inf")  # monotonic time the last read was answered


class SpendView:
    def __init__(self, fresh_for: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._fresh_for = fresh_for
        self._monotonic = monotonic
        self._known: dict[SpendKey, _Known] = {}

    def estimate(self, key: SpendKey) -> int | None:
        """The key's spend: the store's figure plus what it may not count yet; None before any read."""
        known = self._known.get(key)
        if known is None or known.stored is None:
            return None
        return known.stored + known.recorded - known.written_at_read

    def local(self, key: SpendKey) -> int:
        """What this replica recorded for the key: a floor for its spend while the store is unread."""
        known = self._known.get(key)
        return known.recorded if known is not None else 0

    def is_fresh(self, key: SpendKey) -> bool:
        known = self._known.get(key)
        return known is not None and self._monotonic() - known.read_at < self._fresh_for

    def spend(self, key: SpendKey) -> tuple[bool, int | None, int]:
        """`is_fresh`, `estimate` and `local` of one key from one look-up, as `check` wants all three."""
        known = self._known.get(key)
        if known is None:
            return False, None, 0
        fresh = self._monotonic() - known.read_at < self._fresh_for
        estimate = None if known.stored is None else known.stored + known.recorded - known.written_at_read
        return fresh, estimate, known.recorded

    def recorded(self, key: SpendKey, nanos: int) -> int:
        """Add what this replica recorded; the key's spend after it (`estimate`, else `local`)."""
        known = self._entry(key)
        known.recorded += nanos
        if known.stored is None:
            return known.recorded
        return known.stored + known.recorded - known.written_at_read

    def written(self, amounts: Mapping[SpendKey, int]) -> None:
        for key, nanos in amounts.items():
            if (known := self._known.get(key)) is not None:
                known.written += nanos

    def read_sent(self, keys: Collection[SpendKey]) -> dict[SpendKey, int]:
        """What each key had written when a read was sent, for `read_answered`."""
        return {key: self._entry(key).written for key in keys}

    def read_answered(self, stored: Mapping[SpendKey, int], sent: Mapping[SpendKey, int]) -> None:
        now = self._monotonic()
        for key, nanos in stored.items():
            if (known := self._known.get(key)) is not None:
                known.stored, known.written_at_read, known.read_at = nanos, sent.get(key, 0), now

    def keep_only(self, window: Window) -> None:
        """Forget every key of another period (a new one began)."""
        self._known = {key: known for key, known in self._known.items() if key.window == window}

    def _entry(self, key: SpendKey) -> _Known:
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = _Known()
        return known
