"""A mongodb+srv:// URI whose DNS lookup fails is named as a DNS failure, with the host as the URI gives it."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.resolver
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous import srv_resolver

from portkey_user_proxy.mongodb.failures import Failure, MongoFailure, classify, location

ATLAS = "mongodb+srv://reader:secret@cluster0.example.mongodb.net/LibreChat"


@pytest.fixture
def dns_without_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the resolver answers for a cluster name that does not exist; no query leaves the machine.
    async def nxdomain(*args: Any, **kwargs: Any) -> None:
        raise dns.resolver.NXDOMAIN()  # type: ignore[no-untyped-call]

    monkeypatch.setattr(srv_resolver, "_resolve", nxdomain)


async def _lookup_through(uri: str) -> tuple[Failure, str]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        with pytest.raises(Exception) as raised:
            await client["LibreChat"]["users"].find_one({})
        return classify(raised.value, client), location(client, "LibreChat")
    finally:
        await client.close()


def test_a_failed_srv_lookup_is_named_as_dns_not_left_to_mongodbs_log(dns_without_the_record: None) -> None:
    failure, where = asyncio.run(_lookup_through(ATLAS))

    assert failure.kind is MongoFailure.UNREACHABLE
    assert "DNS lookup of mongodb+srv://'s SRV record failed (NXDOMAIN)" in failure.detail
    assert "MongoDB's own log" not in failure.detail
    assert where == "cluster0.example.mongodb.net (SRV)/LibreChat"
    assert "secret" not in failure.detail + where
