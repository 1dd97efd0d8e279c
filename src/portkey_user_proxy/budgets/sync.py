"""This replica's figures and the budget store, kept in step in the background.

**Reads.** At start, the whole period's spend in one query (every document of the period, up to
`PERIOD_READ_LIMIT`; beyond, keys are read one by one as requests name them, and the teams of the
file at once): until it answered the replica is not ready (`/readyz`), and the read loop tries it
again first. Afterwards, the keys `admit` asks for (figures past half the cache window, or never
read), and the teams' every half window, in batches of `_READ_BATCH`. Requests that need a key
read wait for the next read (`read_first`): one read for all of them, answered or failed.

**Writes.** Answers' costs wait in `PendingIncrements`, merged by key, and go out in batches, at
most one per `write_interval`; a batch whose write failed is in doubt and is sent again as it is
before any other (`store.py` says why that counts it once). No write goes out before the store's
indexes are known to exist: the unique index is what makes a batch sent twice count once.

**The store's state** is what its last read or write said: AVAILABLE, UNAVAILABLE (then a warning
once a minute at most), or UNKNOWN before it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Collection, Iterable

from ..mongodb.failures import advice, classify
from ..observability.logs import RateLimitedWarnings, logger
from .observer import BudgetObserver
from .periods import Window
from .spend import SpendView
from .store import Batch, PendingIncrements, SpendKey, SpendStore

# Documents read at start in one query; a period with more is read key by key as requests name them.
PERIOD_READ_LIMIT = 100_000
_READ_BATCH = 500  # keys per read: one query each, bounded in size
_MAX_BACKOFF_SECONDS = 30.0


class StoreState(enum.Enum):
    UNKNOWN = "unknown"  # not asked yet
    AVAILABLE = "available"  # answered the last read or write
    UNAVAILABLE = "unavailable"  # failed the last read or write


class SpendSync:
    def __init__(
        self,
        store: SpendStore,
        view: SpendView,
        observer: BudgetObserver,
        *,
        window: Callable[[], Window],
        always_read: Callable[[Window], Iterable[SpendKey]],
        on_read: Callable[[SpendKey], None],
        failure_means: str,
        max_pending: int,
        write_interval: float,
        period_read_limit: int = PERIOD_READ_LIMIT,
    ) -> None:
        self.store = store
        self.state = StoreState.UNKNOWN
        self.ready = False  # the start's read of the period answered
        self._view = view
        self._observer = observer
        self._window = window
        self._always_read = always_read  # the teams of the file: read every cache window, for metrics
        self._on_read = on_read
        self._failure_means = failure_means  # what happens to requests with a budget, for the warning
        self._write_interval = write_interval
        self._period_read_limit = period_read_limit
        self._pending = PendingIncrements(max_pending)
        self._in_doubt: Batch | None = None  # written, not confirmed: sent again before anything else
        self._wanted: set[SpendKey] = set()
        self._round = asyncio.Event()  # set when the next read of the wanted keys answered (or failed)
        self._prepared = False
        self._write_wanted = asyncio.Event()
        self._read_wanted = asyncio.Event()
        self._writing = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._warnings = RateLimitedWarnings()

    @property
    def waiting(self) -> int:
        """Increments not yet written: those queued and those of the batch in doubt."""
        return len(self._pending) + (len(self._in_doubt.amounts) if self._in_doubt is not None else 0)

    @property
    def dropped(self) -> int:
        return self._pending.dropped

    # What the request path asks; nothing here awaits, except `read_first`.

    def want_read(self, key: SpendKey) -> None:
        self._wanted.add(key)
        self._read_wanted.set()

    async def read_first(self, keys: Collection[SpendKey], wait: float) -> None:
        """Have `keys` read now, and wait for that read (shared with every request waiting) at most `wait`."""
        self._wanted.update(keys)
        self._read_wanted.set()
        answered = self._round
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await answered.wait()

    def queue(self, key: SpendKey, nanos: int) -> None:
        if not self._pending.add(key, nanos):
            self._note_dropped(1)

    def queued(self) -> None:
        """An answer's increments are queued: the write loop writes them (at once after a quiet spell)."""
        self._observer.pending(self.waiting)
        self._write_wanted.set()

    def keep_only(self, window: Window) -> None:
        self._wanted = {key for key in self._wanted if key.window == window}

    # The background.

    async def start(self, timeout: float) -> None:
        """Prepare the store and read the period's spend, for at most `timeout`; then run in the background."""
        try:
            async with asyncio.timeout(timeout):
                if await self._prepare():
                    await self.refresh()
        except TimeoutError as exc:  # the read loop goes on trying
            self._failed(exc, "answering at start")
        self._tasks = [asyncio.create_task(self._write_loop()), asyncio.create_task(self._read_loop())]

    async def aclose(self) -> None:
        """Stop the background tasks and write what is waiting, once more."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.flush()
        if self.waiting:
            logger.warning("stopped with %d budget increments not written to the budget store", self.waiting)

    async def flush(self) -> bool:
        """Write the batch in doubt, if any, then every waiting increment; True when none is left waiting."""
        async with self._writing:
            if not self._prepared and not await self._prepare():
                return False
            for _ in range(2):
                if self._in_doubt is None:
                    amounts = self._pending.take()
                    if not amounts:
                        break
                    self._in_doubt = self.store.batch(amounts)
                if not await self._write(self._in_doubt):
                    return False
            return not self.waiting

    async def refresh(self) -> bool:
        """Read the spend of every key wanted, and the teams' when stale; True when the store answered.

        Until the period's spend was read once (at start), it is read first.
        """
        answered, self._round = self._round, asyncio.Event()
        try:
            if not self.ready and not await self._read_at_start():
                return False
            read = await self._read_wanted_keys()
            self.ready = self.ready or read
            return read
        finally:
            answered.set()  # the requests waiting go on, with the figures or without

    async def _read_at_start(self) -> bool:
        """The period's spend in one query; True when it answered, or the period has too many documents
        (each key is then read as requests name it, the teams' next)."""
        window = self._window()
        sent = self._view.read_sent_for_all()
        try:
            stored = await self.store.period_spend(window, self._period_read_limit)
        except Exception as exc:  # the read loop tries again
            self._failed(exc, "reading the period's spend")
            return False
        self._answered()
        if stored is None:
            logger.info(
                "the budget store holds more than %d spend documents for %s: each user's is read at their "
                "first request",
                self._period_read_limit,
                window.key,
            )
            return True  # ready once the teams' are read, by the caller
        for key in self._always_read(window):
            stored.setdefault(key, 0)  # not in the store: nothing spent yet
        self._view.read_answered(stored, sent, add=True)
        for key in self._always_read(window):
            self._on_read(key)
        return True

    async def _read_wanted_keys(self) -> bool:
        window = self._window()
        wanted = {key for key in self._wanted if key.window == window}
        # The teams' every half window: kept fresh, their requests never wait for a read.
        ahead = self._view.fresh_for / 2
        wanted.update(key for key in self._always_read(window) if not self._view.is_fresh(key, ahead))
        self._wanted = set()
        ordered = list(wanted)
        for start in range(0, len(ordered), _READ_BATCH):
            keys = ordered[start : start + _READ_BATCH]
            sent = self._view.read_sent(keys)
            try:
                stored = await self.store.spend_of(keys)
            except Exception as exc:  # the keys stay wanted: read again after the back-off
                self._wanted.update(ordered[start:])
                self._failed(exc, "reading")
                return False
            self._view.read_answered(stored, sent)
            self._answered()
            for key in keys:
                self._on_read(key)
        return True

    async def _write(self, batch: Batch) -> bool:
        try:
            refused = await self.store.write(batch)
        except Exception as exc:  # in doubt: sent again, as it is, at the next try
            self._observer.pending(self.waiting)
            self._failed(exc, "writing")
            return False
        self._in_doubt = None
        self._view.written({key: nanos for key, nanos in batch.amounts.items() if key not in refused})
        self._note_dropped(self._pending.restore(refused))  # refused: not written, so safe in a later batch
        self._observer.pending(self.waiting)
        self._answered()
        return True

    async def _write_loop(self) -> None:
        backoff = _Backoff()
        while True:
            await self._write_wanted.wait()
            self._write_wanted.clear()
            if await self.flush():
                backoff.reset()
                # What is recorded meanwhile waits, merged by key: under load one bulk write per
                # interval, not one per answer (each costs the driver more CPU than the answer's
                # own admission and settling). After a quiet spell the first answer is written at once.
                await asyncio.sleep(self._write_interval)
            else:
                await asyncio.sleep(backoff.next())  # MongoDB is failing: try again later, not at once
                self._write_wanted.set()

    async def _read_loop(self) -> None:
        backoff = _Backoff()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._view.fresh_for / 2):  # the teams' figures, kept fresh
                    await self._read_wanted.wait()
            self._read_wanted.clear()
            if not self._prepared:
                await self._prepare()
            if await self.refresh():
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next())

    async def _prepare(self) -> bool:
        try:
            await self.store.prepare()
        except Exception as exc:  # retried by the read loop, and before each write
            self._failed(exc, "preparing")
            return False
        self._prepared = True
        return True

    @property
    def writes(self) -> asyncio.Lock:
        """Held by a write from its start to its confirmation: holding it, no write of this replica lands
        unseen between reading the store and counting what this replica has not written yet."""
        return self._writing

    def note_failure(self, exc: BaseException, action: str) -> None:
        """The store failed a query made elsewhere (a hold near a budget's end): as if it failed one of ours."""
        self._failed(exc, action)

    def _failed(self, exc: BaseException, action: str) -> None:
        self._observer.store_up(False)
        failure = classify(exc, self.store.database.client)
        self.state = StoreState.UNAVAILABLE
        self._warnings.warn(
            "budget-store",
            "budget store (database %s) failed %s: %s (%s); %d increments wait to be written; requests with "
            "a budget are %s (BUDGET_STORE_FAILURE); %s",
            self.store.database.name,
            action,
            failure.kind,
            failure.detail,
            self.waiting,
            self._failure_means,
            advice(failure.kind),
        )

    def _answered(self) -> None:
        if self.state is StoreState.UNAVAILABLE:
            logger.info("budget store (database %s) answers again", self.store.database.name)
        if self.state is not StoreState.AVAILABLE:
            self._observer.store_up(True)
        self.state = StoreState.AVAILABLE

    def _note_dropped(self, count: int) -> None:
        if count:
            self._observer.dropped(count)
            self._warnings.warn(
                "budget-dropped",
                "dropped %d budget increments: the queue of those waiting for the budget store is full",
                count,
            )


class _Backoff:
    """Delays between retries against a failing store: 0.5 s, doubling, at most 30 s."""

    def __init__(self) -> None:
        self._delay = 0.5

    def next(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, _MAX_BACKOFF_SECONDS)
        return delay

    def reset(self) -> None:
        self._delay = 0.5
