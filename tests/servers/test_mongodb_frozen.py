"""A frozen MongoDB (connections accepted, nothing answered): every waiter is answered within the lookup timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from portkey_user_proxy.attribution.directory import LookupOutcome, UserDirectory, connect_users
from tests.support.mongo import FrozenMongo
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream

TIMEOUT = 0.3
SLACK = 0.5  # generous: the point is "bounded by the timeout", not the exact figure
USERS = [f"{n:024x}" for n in range(1, 9)]

Run = Callable[[Coroutine[Any, Any, list[float]]], list[float]]


@pytest.fixture
def frozen() -> Iterator[FrozenMongo]:
    mongo = FrozenMongo().start()
    yield mongo
    mongo.stop()


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_every_lookup_is_answered_within_the_timeout(frozen: FrozenMongo, run: Run) -> None:
    async def lookups() -> list[float]:
        directory = UserDirectory(
            connect_users(frozen.uri, TIMEOUT), ttl=60, unknown_ttl=10, timeout=TIMEOUT, max_entries=100
        )

        async def timed(object_id: str) -> float:
            started = time.perf_counter()
            lookup = await directory.find(object_id)
            assert lookup.user is None and lookup.mongo_failed
            return time.perf_counter() - started

        try:
            seconds = await asyncio.gather(*(timed(object_id) for object_id in USERS))
            started = time.perf_counter()
            assert await directory.readiness() is not None
            return [*seconds, time.perf_counter() - started]
        finally:
            await directory.close()

    assert max(run(lookups())) < TIMEOUT + SLACK


def test_requests_reach_the_upstream_within_the_timeout(
    make_proxy: MakeProxy, upstream: Upstream, frozen: FrozenMongo
) -> None:
    proxy = make_proxy(mongo_uri=frozen.uri, user_lookup_timeout_seconds=TIMEOUT)

    def chat(user: str) -> int:
        response = httpx.post(proxy.url + "/v1/chat/completions", json={"user": user, "messages": []}, timeout=10)
        return response.status_code

    with ThreadPoolExecutor(len(USERS)) as pool:
        assert set(pool.map(chat, USERS)) == {200}

    # The proxy's own measure, from receiving each request to sending it upstream (the clients' own
    # time, on a loaded machine, says little): every one within the timeout and a bucket's slack.
    metrics = httpx.get(proxy.url + "/metrics", timeout=10).text
    overhead = {
        sample.labels["le"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "portkey_user_proxy_overhead_seconds_bucket"
    }
    assert overhead["0.5"] == len(USERS)
    assert {received.metadata["_user"] for received in upstream.received} == set(USERS)  # each its raw id


def test_outcome_names_the_frozen_server_unreachable(frozen: FrozenMongo) -> None:
    async def lookup() -> LookupOutcome:
        directory = UserDirectory(
            connect_users(frozen.uri, TIMEOUT), ttl=60, unknown_ttl=10, timeout=TIMEOUT, max_entries=100
        )
        try:
            return (await directory.find(USERS[0])).outcome
        finally:
            await directory.close()

    assert asyncio.run(lookup()) is LookupOutcome.UNREACHABLE  # no hello answered: no server was ever reached
