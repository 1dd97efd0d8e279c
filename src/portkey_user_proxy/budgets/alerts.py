"""Warnings before the wall: a message to BUDGET_WEBHOOK_URL when a team or user crosses a share of its budget.

`Budgets.record` hands `BudgetAlerts.spent` each new spend figure of a key that has a budget. That
is the hot path, and it costs a dict look-up and a comparison: per key and period this replica
keeps how many thresholds it has handled and the spend at which the next one is reached. Only a
new crossing goes further, into a bounded queue (dropped and counted when full), which a
background task, started and stopped with the app, works through; no request ever waits on it.
Each crossing goes

    queued -> claimed (alert_claims.py: the first replica, process or run to claim it sends it)
           -> sent, or retried with back-off while the endpoint gives no answer, 429 or a 5xx,
              until `delivery_seconds` after the crossing; then dropped.

At most once, not at least once: a warning claimed and then not delivered stays claimed. Sending
it again, from this replica or another, would need to know that it did not reach the channel, and
a POST that timed out may well have; a warning shown twice teaches a channel to ignore it. Every
warning lost is counted (`budget_webhook_dropped_total`) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from ..mongodb.failures import advice, classify
from ..observability.logs import RateLimitedWarnings, loggable, logger
from .alert_claims import AlertClaims
from .alert_message import Crossing, percent, warning_body
from .observer import AlertObserver, NoAlertObserver
from .periods import Window
from .store import Scope
from .webhook import BudgetWebhook

DEFAULT_THRESHOLDS = "0.8,1.0"
MAX_THRESHOLDS = 10
MAX_THRESHOLD = Decimal(10)  # 1000%: a larger number is a percentage written as a fraction
QUEUE_SIZE = 1_000
# How long after a crossing its warning may still go out: long enough for a webhook's brief outage.
DELIVERY_SECONDS = 120.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0
CLAIM_TIMEOUT_SECONDS = 5.0
_MARKS_KEPT = 100_000  # keys remembered per scope; beyond, forgotten (the claims still hold)
_NEVER = sys.maxsize
_THRESHOLDS_FORMAT = "must be fractions of the budget, comma-separated, e.g. 0.8,1.0 for 80% and 100%"


def parse_thresholds(text: str) -> tuple[Decimal, ...]:
    """BUDGET_WEBHOOK_THRESHOLDS as fractions, lowest first, each once; ValueError says what is wrong."""
    try:
        values = {Decimal(part.strip()).normalize() for part in text.split(",") if part.strip()}
    except InvalidOperation:
        raise ValueError(_THRESHOLDS_FORMAT) from None
    if not values:
        raise ValueError(_THRESHOLDS_FORMAT)
    if not all(value.is_finite() and value > 0 for value in values):
        raise ValueError(_THRESHOLDS_FORMAT + "; each above 0")
    if any(value > MAX_THRESHOLD for value in values):
        raise ValueError(f"{_THRESHOLDS_FORMAT}; each at most {MAX_THRESHOLD} (a fraction: 0.8, not 80)")
    if len(values) > MAX_THRESHOLDS:
        raise ValueError(f"{_THRESHOLDS_FORMAT}; at most {MAX_THRESHOLDS} of them")
    return tuple(sorted(values))


def _boundaries(thresholds: tuple[Decimal, ...], limit_nanos: int) -> list[int]:
    """The spend at which each threshold is reached, in nanodollars (rounded up: reached means at least)."""
    if limit_nanos <= 0:  # a budget of nothing refuses from the first request: no warning to give
        return []
    return [int((threshold * limit_nanos).to_integral_value(ROUND_CEILING)) for threshold in thresholds]


class Delivery(enum.Enum):
    SENT = "sent"
    CLAIMED_ELSEWHERE = "claimed elsewhere"  # by another replica, process or run: sent (or dropped) there
    REFUSED = "refused"  # the endpoint answered a status that will not change (4xx, 3xx): dropped
    EXPIRED = "expired"  # not claimed or delivered within the delivery window: dropped
    FAULT = "fault"  # the proxy's own error, logged with its traceback: dropped


@dataclass(slots=True)
class _Mark:
    """What this replica handled of one key's period."""

    window: Window
    limit: int
    handled: int  # how many thresholds, lowest first, were queued (or found past) this period
    next_nanos: int  # the spend at which the next threshold is reached


@dataclass(frozen=True, slots=True)
class _Queued:
    crossing: Crossing
    deadline: float  # monotonic: given up after


class BudgetAlerts:
    def __init__(
        self,
        claims: AlertClaims,
        webhook: BudgetWebhook,
        thresholds: tuple[Decimal, ...],
        *,
        observer: AlertObserver | None = None,
        queue_size: int = QUEUE_SIZE,
        delivery_seconds: float = DELIVERY_SECONDS,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._claims = claims
        self.webhook = webhook
        self._thresholds = thresholds
        self._observer: AlertObserver = observer or NoAlertObserver()
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(queue_size)
        self._delivery_seconds = delivery_seconds
        self._first_retry_seconds = first_retry_seconds
        self._monotonic = monotonic
        self._teams: dict[str, _Mark] = {}
        self._users: dict[str, _Mark] = {}
        self._task: asyncio.Task[None] | None = None
        self._delivering = False
        self._warnings = RateLimitedWarnings()

    # The hot path: called by `Budgets.record`, never awaits.

    def spent(self, window: Window, scope: Scope, name: str, spent_nanos: int, limit_nanos: int) -> None:
        """A key's spend in `window` is now `spent_nanos` of `limit_nanos`: a warning when it crossed a threshold."""
        marks = self._teams if scope is Scope.TEAM else self._users
        mark = marks.get(name)
        if mark is not None and spent_nanos < mark.next_nanos and mark.window is window and mark.limit == limit_nanos:
            return
        self._cross(marks, mark, window, scope, name, spent_nanos, limit_nanos)

    def _cross(
        self,
        marks: dict[str, _Mark],
        mark: _Mark | None,
        window: Window,
        scope: Scope,
        name: str,
        spent_nanos: int,
        limit_nanos: int,
    ) -> None:
        handled = mark.handled if mark is not None and mark.window == window else 0
        boundaries = _boundaries(self._thresholds, limit_nanos)
        reached = bisect_right(boundaries, spent_nanos)
        if reached > handled:
            passed = self._thresholds[handled : reached - 1]
            threshold = self._thresholds[reached - 1]
            self._queue_crossing(Crossing(window, scope, name, threshold, spent_nanos, limit_nanos, passed))
            handled = reached
        if mark is None and len(marks) >= _MARKS_KEPT:
            marks.clear()
        next_nanos = boundaries[handled] if handled < len(boundaries) else _NEVER
        marks[name] = _Mark(window, limit_nanos, handled, next_nanos)

    def _queue_crossing(self, crossing: Crossing) -> None:
        try:
            self._queue.put_nowait(_Queued(crossing, self._monotonic() + self._delivery_seconds))
        except asyncio.QueueFull:
            self._observer.warnings_dropped(1)
            self._warnings.warn(
                "budget-webhook-queue",
                "dropped a budget warning: %d wait to be sent to the budget webhook %s already (it is slow or failing)",
                self._queue.qsize(),
                self.webhook.where,
            )

    # The background: claiming and sending.

    async def start(self) -> None:
        self._task = asyncio.create_task(self._deliver_queued())

    async def settled(self) -> None:
        """Until every warning queued so far is sent, claimed elsewhere or dropped."""
        await self._queue.join()

    async def aclose(self) -> None:
        """Stop sending; what is still waiting is dropped, counted and said."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        left = self._queue.qsize() + (1 if self._delivering else 0)
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        if self._delivering:
            self._queue.task_done()
            self._delivering = False
        if left:
            self._observer.warnings_dropped(left)
            logger.warning("stopped with %d budget warnings not sent to the webhook %s", left, self.webhook.where)
        await self.webhook.aclose()

    async def _deliver_queued(self) -> None:
        while True:
            queued = await self._queue.get()
            self._delivering = True
            try:
                delivery, detail = await self._deliver(queued)
            except Exception:  # a fault here must not stop every later warning
                logger.exception("a budget warning could not be delivered")
                delivery, detail = Delivery.FAULT, "see the error logged before"
            self._delivering = False
            self._report(queued.crossing, delivery, detail)
            self._queue.task_done()

    async def _deliver(self, queued: _Queued) -> tuple[Delivery, str]:
        """Claim the crossing, then send it: what became of it, and why when it was dropped."""
        if self._monotonic() >= queued.deadline:  # never claimed: another replica may still send it
            waited = f"it waited in the queue over {self._delivery_seconds:.0f} s"
            return Delivery.EXPIRED, f"{waited}: the webhook {self.webhook.where} is slow or failing"
        failure = ""
        for delay in self._delays():
            try:
                if not await self._claims.claim(queued.crossing):
                    return Delivery.CLAIMED_ELSEWHERE, ""
                break
            except Exception as exc:  # the budget store failed: nobody knows whose warning it is yet
                found = classify(exc, self._claims.client)
                failure = f"the budget store failed: {found.kind} ({found.detail}); {advice(found.kind)}"
            if not await self._wait(delay, queued.deadline):
                return Delivery.EXPIRED, f"not claimed {self._window_words()}, never sent unclaimed: {failure}"
        return await self._send(queued)

    async def _send(self, queued: _Queued) -> tuple[Delivery, str]:
        body = warning_body(queued.crossing)
        for delay in self._delays():
            answer = await self.webhook.post(body)
            if answer.delivered:
                return Delivery.SENT, ""
            self._observer.attempt_failed()
            if not answer.worth_retrying:
                return Delivery.REFUSED, (
                    f"the webhook {self.webhook.where} answered {answer.describe()}, and would again: "
                    "check BUDGET_WEBHOOK_URL (`doctor --webhook-test`)"
                )
            if not await self._wait(answer.retry_after or delay, queued.deadline):
                return Delivery.EXPIRED, (
                    f"not delivered {self._window_words()} to the webhook {self.webhook.where}; "
                    f"its last attempt: {answer.describe()}"
                )
        raise AssertionError("unreachable: the delays never end")

    def _window_words(self) -> str:
        return f"within {self._delivery_seconds:.0f} s of the crossing"

    async def _wait(self, seconds: float, deadline: float) -> bool:
        """Sleep before the next try; False when that try would come after the deadline."""
        if self._monotonic() + seconds >= deadline:
            return False
        await asyncio.sleep(seconds)
        return True

    def _delays(self) -> Iterator[float]:
        delay = self._first_retry_seconds
        while True:
            yield delay
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _report(self, crossing: Crossing, delivery: Delivery, detail: str) -> None:
        # The name is the one value here a user chose (an email): quoted and escaped as an argument.
        scope, name, share = crossing.scope.value, loggable(crossing.name), percent(crossing.threshold)
        if delivery is Delivery.SENT:
            self._observer.warning_sent()
            logger.info(
                "budget warning sent to %s: %s %s at %s of its budget (%s)",
                self.webhook.where,
                scope,
                name,
                share,
                crossing.window.key,
            )
        elif delivery is Delivery.CLAIMED_ELSEWHERE:
            logger.debug("budget warning for %s %s at %s already claimed by another replica or run", scope, name, share)
        else:
            self._observer.warnings_dropped(1)
            self._warnings.warn(
                "budget-webhook", "budget warning for %s %s at %s dropped: %s", scope, name, share, detail
            )
