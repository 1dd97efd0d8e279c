"""Budgets as the forwarder sees them: `check` before forwarding, `record` after the answer.

Neither waits on MongoDB. `check` decides on the spend this replica knows (see `spend.py`) and asks
for a fresher figure in the background when its own is older than the cache window; `record` prices
the answer's usage and queues the increments, which a background task writes. When the store
cannot be read, BUDGET_STORE_FAILURE says whether requests with a budget are allowed or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .. import errors
from ..dialects.usage import Usage
from ..errors import ProxyError
from ..mongodb.failures import advice, classify
from ..observability.logs import RateLimitedWarnings, loggable, logger
from .alerts import BudgetAlerts
from .file import BudgetConfig, Mode
from .money import dollars_text, nanos
from .observer import BudgetObserver, NoObserver
from .periods import Clock, SystemClock, Window, window_at
from .prices import Cost, PriceList
from .spend import SpendView
from .store import DEFAULT_PENDING_KEYS, PendingIncrements, Scope, SpendKey, SpendStore

BUDGET_EXCEEDED = errors.BUDGET_EXCEEDED.code
DEFAULT_CACHE_SECONDS = 5.0
# How long the start waits for the store (indexes, the teams' spend) before serving without it.
START_TIMEOUT_SECONDS = 3.0
# At most one write of the waiting increments per this many seconds (the first after a quiet spell at once).
WRITE_INTERVAL_SECONDS = 0.5
_KEYS_KEPT = 10_000  # spend keys kept for reuse by the hot path; beyond, they are built again
_READ_BATCH = 500  # keys per read: one query each, bounded in size
_MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Demand:
    model: str | None
    prompt_tokens: int
    max_output_tokens: int | None


@dataclass(frozen=True, slots=True)
class Hold:
    user: str | None
    team: str | None


class BudgetExceeded(Exception):
    pass


class BudgetStoreUnavailable(Exception):
    pass


class StoreFailurePolicy(enum.StrEnum):
    ALLOW = "allow"  # forward requests while spend cannot be read (the default)
    DENY = "deny"  # refuse requests that have a budget while spend cannot be read


class StoreState(enum.Enum):
    UNKNOWN = "unknown"  # not asked yet
    AVAILABLE = "available"  # answered the last read or write
    UNAVAILABLE = "unavailable"  # failed the last read or write


@dataclass(frozen=True, slots=True)
class Standing:
    """One team's or user's spend for the period against its budget, for `budgets` and doctor."""

    scope: Scope
    name: str
    spent_nanos: int
    limit_nanos: int | None


@dataclass(frozen=True, slots=True)
class BudgetReport:
    window: Window
    mode: Mode
    teams: list[Standing]
    users: list[Standing]


class Budgets:
    def __init__(
        self,
        config: BudgetConfig,
        store: SpendStore,
        *,
        on_store_failure: StoreFailurePolicy = StoreFailurePolicy.ALLOW,
        observer: BudgetObserver | None = None,
        clock: Clock | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        max_pending: int = DEFAULT_PENDING_KEYS,
        monotonic: Callable[[], float] = time.monotonic,
        write_interval: float = WRITE_INTERVAL_SECONDS,
        alerts: BudgetAlerts | None = None,
    ) -> None:
        self.store = store
        self.alerts = alerts  # warnings to a webhook as a budget nears its end; None: none
        self._on_store_failure = on_store_failure
        self._observer: BudgetObserver = observer or NoObserver()
        self._clock = clock or SystemClock()
        self._team_limits: dict[str, int] = {}
        self._apply(config)
        self._view = SpendView(cache_seconds, monotonic)
        self._pending = PendingIncrements(max_pending)
        self._window = window_at(config.period, self._clock.now())
        self._wanted: set[SpendKey] = set()
        self._keys: dict[tuple[Scope, str], SpendKey] = {}
        self._state = StoreState.UNKNOWN
        self._prepared = False
        self._cache_seconds = cache_seconds
        self._write_interval = write_interval
        self._write_wanted = asyncio.Event()
        self._read_wanted = asyncio.Event()
        self._writing = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._warnings = RateLimitedWarnings()

    def reconfigure(self, config: BudgetConfig) -> None:
        """Apply a budgets file read again (SIGHUP): prices and budgets change, the spend stays."""
        period_changed = config.period is not self.config.period
        self._apply(config)
        if period_changed:
            self._window = window_at(config.period, self._clock.now())
            self._view.keep_only(self._window)
            self._wanted = {key for key in self._wanted if key.window == self._window}
        for team in self._team_limits:
            self._want_read(SpendKey(self.window(), Scope.TEAM, team))

    def _apply(self, config: BudgetConfig) -> None:
        for team in self._team_limits.keys() - config.teams.keys():
            self._observer.forget_team(team)  # team labels are bounded by the file in force
        self.config = config
        self._prices = PriceList(config.prices)
        self._team_limits = {team: nanos(limit) for team, limit in config.teams.items()}
        # LibreChat's group names are matched ignoring case, as TEAM_GROUPS matches them.
        self._team_names = {team.casefold(): team for team in config.teams}
        self._user_limits = {user: nanos(limit) for user, limit in config.users.items()}
        self._default_user_limit = nanos(config.default_user) if config.default_user is not None else None
        for team, limit in self._team_limits.items():
            self._observer.limit(Scope.TEAM, team, limit)

    @property
    def store_state(self) -> StoreState:
        return self._state

    @property
    def pending_increments(self) -> int:
        return len(self._pending)

    @property
    def dropped_increments(self) -> int:
        return self._pending.dropped

    def window(self) -> Window:
        """The current period; at its end, the next one begins with nothing spent."""
        now = self._clock.now()
        if not self._window.contains(now):
            self._window = window_at(self.config.period, now)
            self._view.keep_only(self._window)
            self._wanted = {key for key in self._wanted if key.window == self._window}
            for team in self._team_limits:
                self._observer.spend(Scope.TEAM, team, 0)
        return self._window

    @property
    def has_team_budgets(self) -> bool:
        return bool(self._team_limits)

    def refuse_unknown(self) -> BudgetStoreUnavailable | None:
        if self._on_store_failure is StoreFailurePolicy.DENY:
            return BudgetStoreUnavailable(self._store_refusal().message)
        return None

    async def admit(self, user: str | None, team: str | None, demand: Demand) -> Hold:
        refused = self.check(user, team)
        if refused is not None:
            if refused.code == BUDGET_EXCEEDED:
                raise BudgetExceeded(refused.message)
            raise BudgetStoreUnavailable(refused.message)
        return Hold(user, team)

    def settle(self, hold: Hold, model: str | None, usage: Usage, *, estimated: str | None = None) -> Cost:
        return self.record(hold.user, hold.team, model, usage)

    def release(self, hold: Hold) -> None:
        pass

    # The hot path: neither method awaits anything.

    def check(self, user: str | None, team: str | None) -> ProxyError | None:
        """Before forwarding: the error to answer with when the user or team has spent its budget for the period."""
        window = self.window()
        for scope, name, limit in self._limits(user, team):
            key = self._key(window, scope, name)
            fresh, spent, local = self._view.spend(key)
            if not fresh:
                self._want_read(key)
            if spent is None or not fresh:
                if self._state is StoreState.UNAVAILABLE and self._on_store_failure is StoreFailurePolicy.DENY:
                    return self._store_refusal()
                spent = max(spent or 0, local)
            if spent >= limit:
                refusal = self._over_budget(key, limit)
                if refusal is not None:
                    return refusal
        return None

    def record(self, user: str | None, team: str | None, model: str | None, usage: Usage) -> Cost:
        """After the answer: add its cost to the user's and the team's spend (written in the background)."""
        cost = self._prices.cost(model, usage)
        if cost.unpriced_tokens:
            self._note_unpriced(model, cost.unpriced_tokens)
        if cost.nanos <= 0:
            return cost
        window = self.window()
        for scope, name in _scopes(user, self._team_name(team) if team is not None else None):
            key = self._key(window, scope, name)
            if not self._pending.add(key, cost.nanos):
                self._note_dropped(1)
            spent = self._view.recorded(key, cost.nanos)
            if key.scope is Scope.USER or key.name in self._team_limits:  # team labels are bounded by the file
                self._observer.spend(key.scope, key.name, spent)
            if self.alerts is not None:
                limit = self._team_limits.get(key.name) if key.scope is Scope.TEAM else self._user_limit(key.name)
                if limit is not None:
                    self.alerts.spent(key.window, key.scope, key.name, spent, limit)
        self._observer.pending(len(self._pending))
        self._write_wanted.set()
        return cost

    # The background: writing increments, reading spend.

    async def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Prepare the store and read the teams' spend, for at most `timeout`; then run in the background."""
        for team in self._team_limits:
            self._want_read(SpendKey(self.window(), Scope.TEAM, team))
        try:
            async with asyncio.timeout(timeout):
                await self._prepare()
                await self.refresh()
        except TimeoutError as exc:  # the read loop goes on trying
            self._store_failed(exc, "answering at start")
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
        if self._pending:
            logger.warning("stopped with %d budget increments not written to the budget store", len(self._pending))

    async def flush(self) -> bool:
        """Write every waiting increment; True when none is left waiting."""
        async with self._writing:
            batch = self._pending.take()
            if not batch:
                return True
            failure: Exception | None = None
            try:
                unwritten = await self.store.write(batch)
            except Exception as exc:  # any failure keeps the increments for the next try
                unwritten, failure = batch, exc
            self._view.written({key: amount for key, amount in batch.items() if key not in unwritten})
            self._note_dropped(self._pending.restore(unwritten))
            self._observer.pending(len(self._pending))
            if failure is not None:
                self._store_failed(failure, "writing")
            else:
                self._store_answered()
            return not self._pending

    async def refresh(self) -> bool:
        """Read the spend of every key `check` found stale, and the teams'; True when the store answered."""
        window = self.window()
        wanted = {key for key in self._wanted if key.window == window}
        wanted.update(
            key for team in self._team_limits if not self._view.is_fresh(key := SpendKey(window, Scope.TEAM, team))
        )
        self._wanted = set()
        ordered = list(wanted)
        for start in range(0, len(ordered), _READ_BATCH):
            keys = ordered[start : start + _READ_BATCH]
            sent = self._view.read_sent(keys)
            try:
                stored = await self.store.spend_of(keys)
            except Exception as exc:  # the keys stay wanted: read again after the back-off
                self._wanted.update(ordered[start:])
                self._store_failed(exc, "reading")
                return False
            self._view.read_answered(stored, sent)
            self._store_answered()
            for key in keys:
                self._observe_spend(key)
        return True

    async def report(self, top_users: int = 10) -> BudgetReport:
        """The period's spend against each budget, read from the store now (for `budgets`)."""
        window = self.window()
        teams = dict(await self.store.top(window, Scope.TEAM, max(100, len(self._team_limits))))
        teams.update(await self.store.named(window, Scope.TEAM, self._team_limits))
        users = await self.store.top(window, Scope.USER, top_users)
        return BudgetReport(
            window,
            self.config.mode,
            [Standing(Scope.TEAM, team, spent, self._team_limits.get(team)) for team, spent in _largest_first(teams)],
            [Standing(Scope.USER, user, spent, self._user_limit(user)) for user, spent in users],
        )

    async def _write_loop(self) -> None:
        backoff = _Backoff()
        while True:
            await self._write_wanted.wait()
            self._write_wanted.clear()
            if await self.flush():
                backoff.reset()
                # What is recorded meanwhile waits, merged by key: under load one bulk write per
                # interval, not one per answer (each costs the driver more CPU than the answer's
                # own check and record). After a quiet spell the first answer is written at once.
                await asyncio.sleep(self._write_interval)
            else:
                await asyncio.sleep(backoff.next())  # MongoDB is failing: try again later, not at once
                self._write_wanted.set()

    async def _read_loop(self) -> None:
        backoff = _Backoff()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cache_seconds):  # the teams' figures, for metrics
                    await self._read_wanted.wait()
            self._read_wanted.clear()
            if not self._prepared:
                await self._prepare()
            if await self.refresh():
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next())

    async def _prepare(self) -> None:
        try:
            await self.store.prepare()
        except Exception as exc:  # retried by the read loop
            self._store_failed(exc, "preparing")
        else:
            self._prepared = True

    def _limits(self, user: str | None, team: str | None) -> Iterator[tuple[Scope, str, int]]:
        if team is not None and (limit := self._team_limits.get(team := self._team_name(team))) is not None:
            yield Scope.TEAM, team, limit
        if user is not None and (limit := self._user_limit(email := user.lower())) is not None:
            yield Scope.USER, email, limit

    def _key(self, window: Window, scope: Scope, name: str) -> SpendKey:
        """The same key object for the same scope and name within a period: built and hashed once."""
        key = self._keys.get((scope, name))
        if key is None or key.window is not window:
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            key = self._keys[scope, name] = SpendKey(window, scope, name)
        return key

    def _team_name(self, team: str) -> str:
        """The team as the file spells it, when the file names it."""
        return self._team_names.get(team.casefold(), team)

    def _user_limit(self, email: str) -> int | None:
        return self._user_limits.get(email, self._default_user_limit)

    def _want_read(self, key: SpendKey) -> None:
        self._wanted.add(key)
        self._read_wanted.set()

    def _over_budget(self, key: SpendKey, limit: int) -> ProxyError | None:
        message = _over_budget_message(key, limit)
        if self.config.mode is Mode.WARN:
            self._observer.over_budget(key.scope, refused=False)
            self._warnings.warn(f"over-budget-{key.scope}", "over budget, forwarded (mode: warn): %s", message)
            return None
        self._observer.over_budget(key.scope, refused=True)
        return errors.BUDGET_EXCEEDED.error(message=message)

    def _store_refusal(self) -> ProxyError:
        message = (
            f"the proxy cannot read budget spend (database {self.store.database.name}) "
            "and BUDGET_STORE_FAILURE is deny; try again shortly"
        )
        return errors.BUDGET_STORE_UNAVAILABLE.error(message=message)

    def _observe_spend(self, key: SpendKey) -> None:
        if key.scope is Scope.TEAM and key.name not in self._team_limits:
            return  # team labels are bounded by the file
        spent = self._view.estimate(key)
        self._observer.spend(key.scope, key.name, spent if spent is not None else self._view.local(key))

    def _store_failed(self, exc: BaseException, action: str) -> None:
        self._observer.store_up(False)
        failure = classify(exc, self.store.database.client)
        policy = "allowed" if self._on_store_failure is StoreFailurePolicy.ALLOW else "refused"
        self._state = StoreState.UNAVAILABLE
        self._warnings.warn(
            "budget-store",
            "budget store (database %s) failed %s: %s (%s); %d increments wait to be written; requests with "
            "a budget are %s (BUDGET_STORE_FAILURE); %s",
            self.store.database.name,
            action,
            failure.kind,
            failure.detail,
            len(self._pending),
            policy,
            advice(failure.kind),
        )

    def _store_answered(self) -> None:
        if self._state is StoreState.UNAVAILABLE:
            logger.info("budget store (database %s) answers again", self.store.database.name)
        if self._state is not StoreState.AVAILABLE:
            self._observer.store_up(True)
        self._state = StoreState.AVAILABLE

    def _note_unpriced(self, model: str | None, tokens: int) -> None:
        self._observer.unpriced(tokens)
        self._warnings.warn(
            "unpriced",
            "no price in BUDGETS_FILE matches the model %s: its %d tokens count as unpriced, not as spend "
            '(add a price, or a catch-all `model: "*"`)',
            loggable(model or "-"),
            tokens,
        )

    def _note_dropped(self, count: int) -> None:
        if count:
            self._observer.dropped(count)
            self._warnings.warn(
                "budget-dropped",
                "dropped %d budget increments: the queue of those waiting for the budget store is full",
                count,
            )


def _over_budget_message(key: SpendKey, limit: int) -> str:
    window, budget = key.window, dollars_text(limit)
    when = f"for {window.describe()}; it resets on {window.describe_reset()}"
    if key.scope is Scope.TEAM:
        return f"the {key.name} team has used its budget of {budget} {when}"
    return f"you have used your budget of {budget} {when}"


def _scopes(user: str | None, team: str | None) -> Iterator[tuple[Scope, str]]:
    if team is not None:
        yield Scope.TEAM, team
    if user is not None:
        yield Scope.USER, user.lower()


def _largest_first(spend: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(spend.items(), key=lambda item: (-item[1], item[0]))


class _Backoff:
    """Delays between retries against a failing store: 0.5 s, doubling, at most 30 s."""

    def __init__(self) -> None:
        self._delay = 0.5

    def next(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, _MAX_BACKOFF_SECONDS)
        return delay

    def reset(self) -> None:
        self._delay = 0.5
