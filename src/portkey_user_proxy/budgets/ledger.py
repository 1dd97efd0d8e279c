"""Budgets as the forwarder sees them: `admit` before forwarding, `settle` after the answer.

`admit` decides on the spend this replica knows (`spend.py`), and holds the request's estimated
cost (`estimates.py`) against its user's and team's budgets until `settle` replaces it with the
answer's priced cost (or `release` drops it, for a request never sent). A request is admitted while
spent + held is below the budget.

**Never on an old figure.** A key's figure is the store's, read at most the cache window (5 s) ago,
plus this replica's answers since. Past half the window it is read again in the background, so a
key in use never waits; a key never read (a user first seen since the start, a new period), or
read longer ago than the window (idle meanwhile), is read at once and the request waits for it, at
most `FIRST_READ_WAIT_SECONDS`, one read shared by every request waiting. So a replica is strict
from its first request, and `admit` awaits nothing while its keys are fresh.

**How far a budget can be overshot.** On one replica, K requests at once of a user (or team) with
$x left are admitted until their estimates add up to $x: when requests cost about what recent ones
did, the spend ends within about one request's cost of the budget, whatever K. Across replicas,
each decides on the others' spend as read at most one cache window ago (their answers are written
within `WRITE_INTERVAL_SECONDS`): each overshoots by about one request, plus what the other replicas
admitted within that window, which it cannot see. For requests spread over time that is a few
requests; for a burst reaching R replicas within the same window, up to R times what was left.

**When the store cannot answer** and a budget applies, BUDGET_STORE_FAILURE says: `deny` refuses
(503, `BudgetStoreUnavailable`), also for a key never read; `allow` forwards, deciding on what this
replica knows, and counts each such request (`budget_unchecked_total`).

**Costs that cannot be right** (above `MAX_ANSWER_NANOS`, $10,000 for one answer) are not charged:
counted (`budget_invalid_usage_total`) and warned about, so one absurd usage report never stops the
spend being written. Sums of spend saturate below what MongoDB's int64 holds (`store.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..dialects.usage import Usage
from ..observability.logs import RateLimitedWarnings, loggable
from .alerts import BudgetAlerts
from .estimates import Demand, RecentAnswers
from .file import BudgetConfig, Mode
from .limits import UserLimit, UserLimits
from .money import NANOS_PER_DOLLAR, dollars_text, nanos
from .observer import BudgetObserver, NoObserver
from .periods import Clock, SystemClock, Window, window_at
from .prices import Cost, PriceList
from .refusals import (
    BudgetExceeded,
    BudgetStoreUnavailable,
    over_budget_message,
    store_refusal,
    unknown_spender_refusal,
)
from .shared_holds import SharedHolds
from .spend import SpendView
from .store import DEFAULT_PENDING_KEYS, Scope, SpendKey, SpendStore
from .sync import PERIOD_READ_LIMIT, SpendSync, StoreState

DEFAULT_CACHE_SECONDS = 5.0
# How long the start waits for the store (indexes, the period's spend) before serving without it.
START_TIMEOUT_SECONDS = 3.0
# At most one write of the waiting increments per this many seconds (the first after a quiet spell at once).
WRITE_INTERVAL_SECONDS = 0.5
# How long a request whose user or team was never read (or not for a cache window) waits for that read. A
# MongoDB that answers does so in milliseconds, even behind another batch of reads; one that does not
# must not hold a request longer than a user lookup may (USER_LOOKUP_TIMEOUT_SECONDS, 1 s by default).
FIRST_READ_WAIT_SECONDS = 0.5
# No single answer costs this much: a cost above it comes from usage or a price that is wrong, and is
# not charged (counted in budget_invalid_usage_total, and warned about).
# Within this many requests' worth of its end, a budget's holds are written to MongoDB (`shared_holds.py`).
NEAR_END_REQUESTS = 20
MAX_ANSWER_NANOS = 10_000 * NANOS_PER_DOLLAR
_KEYS_KEPT = 10_000  # spend keys kept for reuse by the hot path; beyond, they are built again
_UNPRICED_KEPT = 100  # model names kept for doctor: they come from request bodies
_NOTHING = Cost(0)


GroupsOf = Callable[[str], Awaitable[Sequence[str]]]


class StoreFailurePolicy(enum.StrEnum):
    ALLOW = "allow"  # forward requests while spend cannot be read (the default)
    DENY = "deny"  # refuse requests that have a budget while spend cannot be read


@dataclass(slots=True, eq=False)
class Hold:
    """One admitted request: whose spend its answer adds to, and what its estimate holds of each budget."""

    team: SpendKey | None
    user: SpendKey | None
    demand: Demand
    team_held: int = 0
    user_held: int = 0
    user_limit: UserLimit | None = None  # the user's own limit, and where it came from
    shared: list[str] = field(default_factory=list)  # its holds in MongoDB, near a budget's end
    open: bool = True  # until settled or released: the second call does nothing


@dataclass(frozen=True, slots=True)
class Standing:
    """One team's or user's spend for the period against its budget, for `budgets` and doctor."""

    scope: Scope
    name: str
    spent_nanos: int
    limit_nanos: int | None
    allowance_of: str | None = None  # a user's limit is this group's allowance per member (`each`)


@dataclass(frozen=True, slots=True)
class BudgetReport:
    window: Window
    mode: Mode
    teams: list[Standing]
    users: list[Standing]


class _Judged(enum.Enum):
    ADMITTED = "admitted"
    UNREAD = "unread"  # never read, or too long ago: wait for the store to read it
    # The store did not answer, and BUDGET_STORE_FAILURE=allow: admitted on what this replica knows,
    # without the key's spend (never read), or on its last figure (read too long ago).
    UNREAD_SPEND = "unread_spend"
    STALE_SPEND = "stale_spend"


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
        first_read_wait: float = FIRST_READ_WAIT_SECONDS,
        period_read_limit: int = PERIOD_READ_LIMIT,
    ) -> None:
        self.store = store
        self.alerts = alerts  # warnings to a webhook as a budget nears its end; None: none
        self._on_store_failure = on_store_failure
        self._observer: BudgetObserver = observer or NoObserver()
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        self._cache_seconds = cache_seconds
        self._refresh_after = cache_seconds / 2
        self._first_read_wait = first_read_wait
        self._team_limits: dict[str, int] = {}
        self._apply(config)
        self._view = SpendView(cache_seconds, monotonic)
        self._shared = SharedHolds(store.database, timeout=first_read_wait)
        self._dropping: set[asyncio.Task[None]] = set()  # holds in MongoDB being taken back
        self._window = window_at(config.period, self._clock.now())
        self._ends_at = self._end_of(self._window)
        self._keys: dict[tuple[Scope, str], SpendKey] = {}
        self._unpriced: set[str] = set()
        self._warnings = RateLimitedWarnings()
        self._sync = SpendSync(
            store,
            self._view,
            self._observer,
            window=self.window,
            always_read=self._team_keys,
            on_read=self._observe_spend,
            failure_means="allowed" if on_store_failure is StoreFailurePolicy.ALLOW else "refused",
            max_pending=max_pending,
            write_interval=write_interval,
            period_read_limit=period_read_limit,
        )

    def reconfigure(self, config: BudgetConfig) -> None:
        """Apply a budgets file read again (SIGHUP): prices and budgets change, the spend stays."""
        period_changed = config.period is not self.config.period
        self._apply(config)
        if period_changed:
            self._new_window(window_at(config.period, self._clock.now()))
        for key in self._team_keys(self.window()):
            self._sync.want_read(key)

    def _apply(self, config: BudgetConfig) -> None:
        for team in self._team_limits.keys() - config.teams.keys():
            self._observer.forget_team(team)  # team labels are bounded by the file in force
        self.config = config
        self._prices = PriceList(config.prices)
        self._recent = RecentAnswers(self._prices)  # new prices: learnt again, in a few answers
        self._team_limits = {team: nanos(limit) for team, limit in config.teams.items()}
        # LibreChat's group names are matched ignoring case, as TEAM_GROUPS matches them.
        self._team_names = {team.casefold(): team for team in config.teams}
        self._user_limits = UserLimits(config)
        self._any_limit = bool(self._team_limits) or self._user_limits.any
        for team, limit in self._team_limits.items():
            self._observer.limit(Scope.TEAM, team, limit)

    @property
    def store_state(self) -> StoreState:
        return self._sync.state

    @property
    def ready(self) -> bool:
        """Whether the start's read of the period's spend answered (`/readyz` waits for it)."""
        return self._sync.ready

    @property
    def pending_increments(self) -> int:
        return self._sync.waiting

    @property
    def dropped_increments(self) -> int:
        return self._sync.dropped

    @property
    def unpriced_models(self) -> list[str]:
        """Models this replica found no price for since it started (at most 100, escaped for output)."""
        return sorted(self._unpriced)

    def window(self) -> Window:
        """The current period; at its end, the next one begins with nothing spent."""
        if self._ends_at is not None and time.time() < self._ends_at:
            return self._window  # the system clock, read as a float: twice per request, no datetime made
        now = self._clock.now()
        if not self._window.contains(now):
            self._new_window(window_at(self.config.period, now))
            for team in self._team_limits:
                self._observer.spend(Scope.TEAM, team, 0)
        return self._window

    @property
    def has_team_budgets(self) -> bool:
        """Whether the file sets a team budget: a user's unknown team may then have one."""
        return bool(self._team_limits)

    def _new_window(self, window: Window) -> None:
        self._window = window
        self._ends_at = self._end_of(window)
        self._view.keep_only(window)
        self._sync.keep_only(window)

    def _end_of(self, window: Window) -> float | None:
        """When `window` ends, as the system clock counts; None under another clock (the tests' own)."""
        return window.end.timestamp() if isinstance(self._clock, SystemClock) else None

    def could_have_budget(self) -> bool:
        """Whether any team or user has a budget: a request whose user cannot be told might have one."""
        return self._any_limit

    # The request path: neither awaits anything while the keys were read within the cache window.

    async def admit(self, user: str | None, team: str | None, demand: Demand, groups: Sequence[str] = ()) -> Hold:
        """Before forwarding: the request's hold on its budgets, or `BudgetExceeded` / `BudgetStoreUnavailable`.

        `groups`: every group the user is in, whose allowances (`each`) may be their limit.
        """
        window = self.window()
        team_key = user_key = None
        team_limit: int | None = None
        user_limit: UserLimit | None = None
        if team is not None:
            team = self._team_name(team)
            team_key = self._key(window, Scope.TEAM, team)
            team_limit = self._team_limits.get(team)
        if user is not None:
            email = user.lower()
            user_key = self._key(window, Scope.USER, email)
            user_limit = self._user_limits.of(email, groups)
        hold = Hold(team_key, user_key, demand, user_limit=user_limit)
        if team_limit is None and user_limit is None:
            return hold
        if self._judge_all(team_key, team_limit, user_key, user_limit, waited=False):
            await self._sync.read_first([key for key in (team_key, user_key) if key is not None], self._first_read_wait)
            # Judged again: other requests may have been admitted meanwhile.
            self._judge_all(team_key, team_limit, user_key, user_limit, waited=True)
        estimate = self._recent.estimate(demand)
        near_end: list[tuple[SpendKey, int, str | None]] = []
        if team_key is not None and team_limit is not None and self._near_end(team_key, team_limit, estimate):
            near_end.append((team_key, team_limit, None))
        if user_key is not None and user_limit is not None and self._near_end(user_key, user_limit.nanos, estimate):
            near_end.append((user_key, user_limit.nanos, user_limit.allowance_of))
        # Held here first: requests at once on this replica are decided here, and only those admitted
        # here ask the store what the other replicas hold.
        if team_limit is not None and team_key is not None:
            self._view.entry(team_key).held += estimate
            hold.team_held = estimate
        if user_limit is not None and user_key is not None:
            self._view.entry(user_key).held += estimate
            hold.user_held = estimate
        if near_end and self.config.mode is Mode.ENFORCE:  # warn mode refuses nothing: nothing to ask
            try:
                await self._hold_in_store(hold, near_end, estimate)
            except BaseException:
                self._release_here(hold)
                raise
        return hold

    def _unheld(self) -> None:
        """Near a budget's end, the other replicas' holds cannot be read: BUDGET_STORE_FAILURE decides."""
        if self._on_store_failure is StoreFailurePolicy.DENY:
            raise store_refusal(self.store.database.name)
        self._observer.unchecked("holds_unread")

    def _near_end(self, key: SpendKey, limit: int, estimate: int) -> bool:
        """Whether what is left of a budget is within `NEAR_END_REQUESTS` requests like this one."""
        known = self._view.entry(key)
        return limit - known.spent() - known.held < NEAR_END_REQUESTS * max(estimate, 1)

    async def _hold_in_store(self, hold: Hold, near_end: list[tuple[SpendKey, int, str | None]], estimate: int) -> None:
        """Near a budget's end, the request's hold is written where every replica sees it (`shared_holds.py`)."""
        try:
            for key, limit, allowance_of in near_end:
                if self._sync.state is StoreState.UNAVAILABLE:  # known to be failing: not waited for again
                    self._unheld()
                    continue
                try:
                    async with asyncio.timeout(self._first_read_wait), self._sync.writes:
                        here = self._view.unwritten(key) + self._view.entry(key).held - estimate
                        taken = await self._shared.take(key, estimate, limit, here)
                except Exception as exc:  # the store cannot say what the other replicas hold
                    self._sync.note_failure(exc, "holding")
                    self._unheld()
                    continue
                if taken is None:
                    self._over_budget(key, limit, spent=False, allowance_of=allowance_of)  # raises, unless warn
                else:
                    hold.shared.append(taken)
        except BaseException:
            self._drop_later(hold.shared)
            hold.shared = []
            raise

    def settle(
        self,
        hold: Hold,
        model: str | None,
        usage: Usage,
        *,
        estimated: str | None = None,
        requested: str | None = None,
    ) -> Cost:
        """After the answer: its hold released, its usage priced and added to the spend (written in the background).

        `model`: the one the answer names, else the request's; `requested`: the request's, which prices
        the usage when nothing prices `model` (a deployment's own name). `estimated`: why the usage is
        the forwarder's estimate rather than the provider's (a short label, counted). A hold settled or
        released already is not charged again.
        """
        if not hold.open:
            return _NOTHING
        self.release(hold)
        cost = self._prices.cost(model, usage)
        if cost.unpriced_tokens and requested is not None and requested != model:
            model, cost = requested, self._prices.cost(requested, usage)
        if estimated is not None:
            self._observer.estimated(estimated)
        if cost.unpriced_tokens:
            self._note_unpriced(model, cost.unpriced_tokens)
        if cost.nanos > MAX_ANSWER_NANOS:
            self._note_invalid(model, usage, cost.nanos)
            return Cost(0, cost.unpriced_tokens)
        if estimated is None:  # only what providers report teaches what answers cost
            self._recent.learn(model, usage.completion or 0, cost.nanos)
        self._add(hold, cost.nanos)
        return cost

    def settle_held(self, hold: Hold, *, estimated: str) -> Cost:
        """A request that reached the upstream and got no answer (a timeout, its client gone before the
        answer began): the provider may well have generated it whole, so it costs what admission
        expected it to (its prompt, and the output recent answers of its model produced)."""
        if not hold.open:
            return _NOTHING
        self.release(hold)
        self._observer.estimated(estimated)
        cost = Cost(min(self._recent.estimate(hold.demand), MAX_ANSWER_NANOS))
        self._add(hold, cost.nanos)
        return cost

    def _add(self, hold: Hold, cost: int) -> None:
        if cost <= 0:
            return
        window = self.window()
        user_limit = hold.user_limit.nanos if hold.user_limit is not None else None
        for key, limit in ((hold.team, None), (hold.user, user_limit)):
            if key is not None:
                current = key if key.window is window else self._key(window, key.scope, key.name)
                self._charge(current, cost, limit)
        self._sync.queued()

    def release(self, hold: Hold) -> None:
        """A request never sent upstream, or its answer settled: its estimate no longer holds budget."""
        if not hold.open:
            return
        hold.open = False
        if hold.shared:  # what the answer cost is this replica's own until written (`unwritten`)
            self._drop_later(hold.shared)
        self._release_here(hold)

    def _release_here(self, hold: Hold) -> None:
        hold.open = False
        if hold.team_held and hold.team is not None:
            self._view.release(hold.team, hold.team_held)
        if hold.user_held and hold.user is not None:
            self._view.release(hold.user, hold.user_held)

    def refuse_unknown(self) -> BudgetStoreUnavailable | None:
        """For a request whose user or team cannot be told (MongoDB down): the refusal under deny, else None."""
        if not self._any_limit:
            return None
        if self._on_store_failure is StoreFailurePolicy.DENY:
            return unknown_spender_refusal()
        self._observer.unchecked("user_unknown")
        return None

    def _judge_all(
        self,
        team_key: SpendKey | None,
        team_limit: int | None,
        user_key: SpendKey | None,
        user_limit: UserLimit | None,
        *,
        waited: bool,
    ) -> bool:
        """Raise when a budget is spent; True when a key was never read and the store should be waited for."""
        now = self._monotonic()
        team = user = _Judged.ADMITTED
        if team_key is not None and team_limit is not None:
            team = self._judge(team_key, team_limit, now, waited=waited)
        if user_key is not None and user_limit is not None:
            user = self._judge(user_key, user_limit.nanos, now, waited=waited, allowance_of=user_limit.allowance_of)
        if team is _Judged.ADMITTED and user is _Judged.ADMITTED:
            return False
        if team is _Judged.UNREAD or user is _Judged.UNREAD:
            return True
        unread = team is _Judged.UNREAD_SPEND or user is _Judged.UNREAD_SPEND
        self._observer.unchecked("spend_unread" if unread else "spend_stale")
        return False

    def _judge(
        self, key: SpendKey, limit: int, now: float, *, waited: bool, allowance_of: str | None = None
    ) -> _Judged:
        known = self._view.entry(key)
        judged = _Judged.ADMITTED
        age = now - known.read_at  # infinite when never read
        if age >= self._refresh_after:
            self._sync.want_read(key)  # read again in the background, before the figure is too old to use
            if age >= self._cache_seconds:
                if not waited and self._sync.state is not StoreState.UNAVAILABLE:
                    return _Judged.UNREAD
                if self._on_store_failure is StoreFailurePolicy.DENY:
                    raise store_refusal(self.store.database.name)
                # Decided on what this replica knows: the last figure read, or what it recorded itself.
                judged = _Judged.UNREAD_SPEND if known.stored is None else _Judged.STALE_SPEND
        spent = known.spent()
        if spent + known.held >= limit:
            self._over_budget(key, limit, spent=spent >= limit, allowance_of=allowance_of)
        return judged

    def _charge(self, key: SpendKey, cost: int, user_limit: int | None) -> None:
        self._sync.queue(key, cost)
        spent = self._view.recorded(key, cost)
        if key.scope is Scope.USER or key.name in self._team_limits:  # team labels are bounded by the file
            self._observer.spend(key.scope, key.name, spent)
        if self.alerts is not None:
            limit = self._team_limits.get(key.name) if key.scope is Scope.TEAM else user_limit
            if limit is not None:
                self.alerts.spent(key.window, key.scope, key.name, spent, limit)

    # The background (see sync.py).

    async def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Prepare the store and read the period's spend, for at most `timeout`; then run in the background."""
        with contextlib.suppress(Exception):  # its indexes only speed up and clean up: never a reason to wait
            await self._shared.prepare()
        await self._sync.start(timeout)

    async def aclose(self) -> None:
        """Stop the background tasks and write what is waiting, once more."""
        await self._sync.aclose()
        if self._dropping:
            await asyncio.gather(*self._dropping, return_exceptions=True)

    def _drop_later(self, holds: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._drop(list(holds)))
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)

    async def _drop(self, holds: list[str]) -> None:
        # A hold not taken back (the store failing) expires by itself (`shared_holds.HOLD_SECONDS`).
        with contextlib.suppress(Exception):
            await self._shared.drop(holds)

    async def flush(self) -> bool:
        """Write every waiting increment; True when none is left waiting."""
        return await self._sync.flush()

    async def refresh(self) -> bool:
        """Read the spend of every key found stale or never read, and the teams'; True when the store answered."""
        return await self._sync.refresh()

    async def report(self, top_users: int = 10, groups_of: GroupsOf | None = None) -> BudgetReport:
        """The period's spend against each budget, read from the store now (for `budgets`).

        `groups_of`: a user's groups by their email, when allowances per group member may be their limit.
        """
        window = self.window()
        teams = dict(await self.store.top(window, Scope.TEAM, max(100, len(self._team_limits))))
        teams.update(await self.store.named(window, Scope.TEAM, self._team_limits))
        users = []
        for user, spent in await self.store.top(window, Scope.USER, top_users):
            limit = self._user_limits.of(user, await groups_of(user) if groups_of is not None else ())
            nanos, allowance_of = (limit.nanos, limit.allowance_of) if limit is not None else (None, None)
            users.append(Standing(Scope.USER, user, spent, nanos, allowance_of))
        return BudgetReport(
            window,
            self.config.mode,
            [Standing(Scope.TEAM, team, spent, self._team_limits.get(team)) for team, spent in _largest_first(teams)],
            users,
        )

    def _team_keys(self, window: Window) -> Iterator[SpendKey]:
        for team in self._team_limits:
            yield self._key(window, Scope.TEAM, team)

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
        """A user's limit as far as their email tells (their groups unknown here)."""
        limit = self._user_limits.of(email)
        return limit.nanos if limit is not None else None

    def _over_budget(self, key: SpendKey, limit: int, *, spent: bool, allowance_of: str | None) -> None:
        message = over_budget_message(key, limit, spent=spent, allowance_of=allowance_of)
        if self.config.mode is Mode.WARN:
            self._observer.over_budget(key.scope, refused=False)
            self._warnings.warn(f"over-budget-{key.scope}", "over budget, forwarded (mode: warn): %s", message)
            return
        self._observer.over_budget(key.scope, refused=True)
        raise BudgetExceeded(message)

    def _observe_spend(self, key: SpendKey) -> None:
        if key.scope is Scope.TEAM and key.name not in self._team_limits:
            return  # team labels are bounded by the file
        self._observer.spend(key.scope, key.name, self._view.entry(key).spent())

    def _note_unpriced(self, model: str | None, tokens: int) -> None:
        self._observer.unpriced(tokens)
        shown = loggable(model or "-")
        if len(self._unpriced) < _UNPRICED_KEPT:
            self._unpriced.add(shown)
        self._warnings.warn(
            "unpriced",
            "neither BUDGETS_FILE nor the price catalogue prices the model %s: its %d tokens count as "
            "unpriced, not as spend (`budgets price MODEL` shows what is looked up; add an entry to `prices`, "
            "or write the model with its provider, e.g. openai/...)",
            shown,
            tokens,
        )

    def _note_invalid(self, model: str | None, usage: Usage, cost: int) -> None:
        self._observer.invalid_usage()
        self._warnings.warn(
            "invalid-usage",
            "an answer of the model %s reported usage (%s prompt, %s completion tokens) costing %s, more than "
            "any one answer can (%s): not charged; the upstream's usage or a price in BUDGETS_FILE is wrong",
            loggable(model or "-"),
            usage.prompt,
            usage.completion,
            dollars_text(cost),
            dollars_text(MAX_ANSWER_NANOS),
        )


def _largest_first(spend: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(spend.items(), key=lambda item: (-item[1], item[0]))
