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

import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..dialects.usage import Usage
from ..observability.logs import RateLimitedWarnings, loggable
from .alerts import BudgetAlerts
from .estimates import Demand, RecentAnswers
from .file import BudgetConfig, Mode
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
MAX_ANSWER_NANOS = 10_000 * NANOS_PER_DOLLAR
_KEYS_KEPT = 10_000  # spend keys kept for reuse by the hot path; beyond, they are built again
_UNPRICED_KEPT = 100  # model names kept for doctor: they come from request bodies
_NOTHING = Cost(0)


class StoreFailurePolicy(enum.StrEnum):
    ALLOW = "allow"  # forward requests while spend cannot be read (the default)
    DENY = "deny"  # refuse requests that have a budget while spend cannot be read


@dataclass(slots=True, eq=False)
class Hold:
    """One admitted request: whose spend its answer adds to, and what its estimate holds of each budget."""

    team: SpendKey | None
    user: SpendKey | None
    team_held: int = 0
    user_held: int = 0
    open: bool = True  # until settled or released: the second call does nothing


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
        self._window = window_at(config.period, self._clock.now())
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
        self._user_limits = {user: nanos(limit) for user, limit in config.users.items()}
        self._default_user_limit = nanos(config.default_user) if config.default_user is not None else None
        self._any_limit = bool(self._team_limits or self._user_limits or self._default_user_limit is not None)
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
        self._view.keep_only(window)
        self._sync.keep_only(window)

    def could_have_budget(self) -> bool:
        """Whether any team or user has a budget: a request whose user cannot be told might have one."""
        return self._any_limit

    # The request path: neither awaits anything while the keys were read within the cache window.

    async def admit(self, user: str | None, team: str | None, demand: Demand) -> Hold:
        """Before forwarding: the request's hold on its budgets, or `BudgetExceeded` / `BudgetStoreUnavailable`."""
        window = self.window()
        team_key = user_key = None
        team_limit = user_limit = None
        if team is not None:
            team = self._team_name(team)
            team_key = self._key(window, Scope.TEAM, team)
            team_limit = self._team_limits.get(team)
        if user is not None:
            email = user.lower()
            user_key = self._key(window, Scope.USER, email)
            user_limit = self._user_limits.get(email, self._default_user_limit)
        hold = Hold(team_key, user_key)
        if team_limit is None and user_limit is None:
            return hold
        if self._judge_all(team_key, team_limit, user_key, user_limit, waited=False):
            await self._sync.read_first([key for key in (team_key, user_key) if key is not None], self._first_read_wait)
            # Judged again: other requests may have been admitted meanwhile.
            self._judge_all(team_key, team_limit, user_key, user_limit, waited=True)
        estimate = self._recent.estimate(demand)
        if team_limit is not None and team_key is not None:
            self._view.entry(team_key).held += estimate
            hold.team_held = estimate
        if user_limit is not None and user_key is not None:
            self._view.entry(user_key).held += estimate
            hold.user_held = estimate
        return hold

    def settle(self, hold: Hold, model: str | None, usage: Usage, *, estimated: str | None = None) -> Cost:
        """After the answer: its hold released, its usage priced and added to the spend (written in the background).

        `estimated`: why the usage is the forwarder's estimate rather than the provider's (a short label,
        counted). A hold settled or released already is not charged again.
        """
        if not hold.open:
            return _NOTHING
        self.release(hold)
        cost = self._prices.cost(model, usage)
        if estimated is not None:
            self._observer.estimated(estimated)
        if cost.unpriced_tokens:
            self._note_unpriced(model, cost.unpriced_tokens)
        if cost.nanos > MAX_ANSWER_NANOS:
            self._note_invalid(model, usage, cost.nanos)
            return Cost(0, cost.unpriced_tokens)
        if estimated is None:  # only what providers report teaches what answers cost
            self._recent.learn(model, usage.completion or 0, cost.nanos)
        if cost.nanos <= 0:
            return cost
        window = self.window()
        for key in (hold.team, hold.user):
            if key is not None:
                self._charge(key if key.window is window else self._key(window, key.scope, key.name), cost.nanos)
        self._sync.queued()
        return cost

    def release(self, hold: Hold) -> None:
        """A request never sent upstream, or its answer settled: its estimate no longer holds budget."""
        if not hold.open:
            return
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
        user_limit: int | None,
        *,
        waited: bool,
    ) -> bool:
        """Raise when a budget is spent; True when a key was never read and the store should be waited for."""
        now = self._monotonic()
        team = user = _Judged.ADMITTED
        if team_key is not None and team_limit is not None:
            team = self._judge(team_key, team_limit, now, waited=waited)
        if user_key is not None and user_limit is not None:
            user = self._judge(user_key, user_limit, now, waited=waited)
        if team is _Judged.ADMITTED and user is _Judged.ADMITTED:
            return False
        if team is _Judged.UNREAD or user is _Judged.UNREAD:
            return True
        unread = team is _Judged.UNREAD_SPEND or user is _Judged.UNREAD_SPEND
        self._observer.unchecked("spend_unread" if unread else "spend_stale")
        return False

    def _judge(self, key: SpendKey, limit: int, now: float, *, waited: bool) -> _Judged:
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
            self._over_budget(key, limit, spent=spent >= limit)
        return judged

    def _charge(self, key: SpendKey, cost: int) -> None:
        self._sync.queue(key, cost)
        spent = self._view.recorded(key, cost)
        if key.scope is Scope.USER or key.name in self._team_limits:  # team labels are bounded by the file
            self._observer.spend(key.scope, key.name, spent)
        if self.alerts is not None:
            limit = self._team_limits.get(key.name) if key.scope is Scope.TEAM else self._user_limit(key.name)
            if limit is not None:
                self.alerts.spent(key.window, key.scope, key.name, spent, limit)

    # The background (see sync.py).

    async def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Prepare the store and read the period's spend, for at most `timeout`; then run in the background."""
        await self._sync.start(timeout)

    async def aclose(self) -> None:
        """Stop the background tasks and write what is waiting, once more."""
        await self._sync.aclose()

    async def flush(self) -> bool:
        """Write every waiting increment; True when none is left waiting."""
        return await self._sync.flush()

    async def refresh(self) -> bool:
        """Read the spend of every key found stale or never read, and the teams'; True when the store answered."""
        return await self._sync.refresh()

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
        return self._user_limits.get(email, self._default_user_limit)

    def _over_budget(self, key: SpendKey, limit: int, *, spent: bool) -> None:
        message = over_budget_message(key, limit, spent=spent)
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
            "no price in BUDGETS_FILE matches the model %s: its %d tokens count as unpriced, not as spend "
            '(add a price, or a catch-all `model: "*"`)',
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
