"""Many users at once: each request attributed to its own user, with as few queries as possible."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
from bson import ObjectId

from tests.support.mongo import RealMongo, StandInMongo, needs_stand_in
from tests.support.proxy import MakeProxy, RunningProxy
from tests.support.servers import Upstream


def add_users(mongo: StandInMongo | RealMongo, count: int) -> dict[str, str]:
    emails = {}
    for number in range(count):
        user_id = f"{number:024x}"
        emails[user_id] = f"user{number}@example.com"
        mongo.add_user({"_id": ObjectId(user_id), "email": emails[user_id], "name": f"User {number}"})
    return emails


async def chat_all(proxy: RunningProxy, user_ids: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(user_ids))
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30, limits=limits) as client:
        requests = [
            client.post("/v1/chat/completions", json={"user": user_id, "messages": [], "n": index})
            for index, user_id in enumerate(user_ids)
        ]
        return await asyncio.gather(*requests)


def test_300_concurrent_requests_across_many_users_are_never_misattributed(
    make_proxy: MakeProxy, upstream: Upstream, mongo: StandInMongo | RealMongo
) -> None:
    # A generous lookup timeout: this test is about who gets which email, not about a slow machine.
    proxy = make_proxy(user_lookup_timeout_seconds=30)
    emails = add_users(mongo, 60)
    user_ids = [list(emails)[index % len(emails)] for index in range(300)]

    responses = asyncio.run(chat_all(proxy, user_ids))

    assert [response.status_code for response in responses] == [200] * 300
    assert len(upstream.received) == 300
    for received in upstream.received:
        body: dict[str, Any] = received.json()
        assert received.metadata["_user"] == emails[body["user"]]
        assert body["user"] == user_ids[body["n"]]


def test_a_warm_cache_makes_no_queries(
    proxy: RunningProxy, upstream: Upstream, mongo: StandInMongo | RealMongo
) -> None:
    emails = add_users(mongo, 20)
    asyncio.run(chat_all(proxy, list(emails)))
    queries_after_warm_up = proxy.queries.finds

    asyncio.run(chat_all(proxy, list(emails) * 5))

    assert queries_after_warm_up == 20
    assert proxy.queries.finds == queries_after_warm_up


@needs_stand_in()
def test_concurrent_misses_for_one_user_share_one_query(
    make_proxy: MakeProxy, upstream: Upstream, own_mongo: StandInMongo
) -> None:
    proxy = make_proxy(mongo_uri=own_mongo.uri, user_lookup_timeout_seconds=10)
    own_mongo.gate = threading.Event()
    user_ids = ["6651f0c2a1b2c3d4e5f60718"] * 50

    async def scenario() -> list[httpx.Response]:
        requests = asyncio.ensure_future(chat_all(proxy, user_ids))
        # MongoDB holds the first query until every request has asked the directory for this user.
        assert await asyncio.to_thread(proxy.directory.wait_for_lookups, len(user_ids))
        assert own_mongo.gate is not None
        own_mongo.gate.set()
        return await requests

    responses = asyncio.run(scenario())

    assert {response.status_code for response in responses} == {200}
    assert {received.metadata["_user"] for received in upstream.received} == {"timmanik@email.com"}
    assert proxy.queries.finds == 1
