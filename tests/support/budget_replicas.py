"""Budgets as a proxy replica builds them, over a real driver, with a clock and cache window the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from portkey_user_proxy.budgets import (
    BudgetConfig,
    BudgetMetrics,
    Budgets,
    Mode,
    Period,
    Price,
    SpendStore,
    StoreFailurePolicy,
    window_at,
)
from portkey_user_proxy.budgets.alert_claims import AlertClaims
from portkey_user_proxy.budgets.alerts import DELIVERY_SECONDS, BudgetAlerts
from portkey_user_proxy.budgets.metrics import AlertMetrics
from portkey_user_proxy.budgets.sync import PERIOD_READ_LIMIT
from portkey_user_proxy.budgets.webhook import BudgetWebhook
from tests.support.mongomock_server import WritableMongo

CONFIG = BudgetConfig(
    prices=(Price("*", Decimal("1"), Decimal("2")),),  # $1 per 1M input tokens, $2 per 1M output tokens
    teams={"Finance": Decimal("500")},
    users={"alice@example.com": Decimal("200")},
)
CACHE_SECONDS = 5.0


@dataclass
class ManualClock:
    instant: datetime = field(default_factory=lambda: datetime(2026, 12, 4, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.instant


@dataclass
class Ticks:
    """A monotonic clock that moves only when the test says."""

    seconds: float = 1000.0

    def __call__(self) -> float:
        return self.seconds


@dataclass
class Replica:
    budgets: Budgets
    clock: ManualClock
    ticks: Ticks
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@asynccontextmanager
async def replica(
    mongo: WritableMongo,
    config: BudgetConfig = CONFIG,
    *,
    mode: Mode | None = None,
    on_store_failure: StoreFailurePolicy = StoreFailurePolicy.ALLOW,
    max_pending: int = 100,
    clock: ManualClock | None = None,
    per_user: bool = False,
    webhook_url: str | None = None,
    thresholds: tuple[Decimal, ...] = (Decimal("0.8"), Decimal("1")),
    delivery_seconds: float = DELIVERY_SECONDS,
    store_timeout: float = 5.0,
    period_read_limit: int = PERIOD_READ_LIMIT,
) -> AsyncIterator[Replica]:
    """`webhook_url`: budget warnings go there, retried a hundredth of a second apart for `delivery_seconds`."""
    if mode is not None:
        config = replace(config, mode=mode)
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo.address, serverSelectionTimeoutMS=2000)
    registry = CollectorRegistry()
    warnings = (
        alerts(client[mongo.database], webhook_url, thresholds, registry, delivery_seconds) if webhook_url else None
    )
    ticks = Ticks()
    clock = clock or ManualClock()
    budgets = Budgets(
        config,
        SpendStore(client[mongo.database], timeout=store_timeout),
        on_store_failure=on_store_failure,
        observer=BudgetMetrics(registry, per_user=per_user),
        clock=clock,
        cache_seconds=CACHE_SECONDS,
        max_pending=max_pending,
        monotonic=ticks,
        alerts=warnings,
        period_read_limit=period_read_limit,
    )
    try:
        yield Replica(budgets, clock, ticks, registry)
    finally:
        await client.close()


def alerts(
    database: AsyncDatabase[Any],
    url: str,
    thresholds: tuple[Decimal, ...],
    registry: CollectorRegistry,
    delivery_seconds: float,
) -> BudgetAlerts:
    return BudgetAlerts(
        AlertClaims(database, timeout=5.0),
        BudgetWebhook(url),
        thresholds,
        observer=AlertMetrics(registry),
        delivery_seconds=delivery_seconds,
        first_retry_seconds=0.01,
    )


def spent_elsewhere(
    mongo: WritableMongo, scope: str, name: str, dollars: int, clock: ManualClock | None = None
) -> None:
    """Spend another replica wrote in this month: `dollars` added to the document of `scope` and `name`."""
    period = window_at(Period.MONTH, (clock or ManualClock()).now()).key
    with mongo.client() as client:
        client[mongo.database]["spend"].update_one(
            {"period": period, "scope": scope, "name": name}, {"$inc": {"spend": dollars * 10**9}}, upsert=True
        )


def stored_spend(mongo: WritableMongo) -> dict[tuple[str, str, str], int]:
    """Every spend document, by (period, scope, name), read with a client of its own."""
    with mongo.client() as client:
        return {
            (document["period"], document["scope"], document["name"]): document["spend"]
            for document in client[mongo.database]["spend"].find()
        }
