"""LibreChat's people and groups for the team tests: a local user, an Entra user, one in no group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from portkey_user_proxy.attribution.directory import UserDirectory
from portkey_user_proxy.attribution.teams import TeamChoice, TeamFinder
from tests.support.mongo import RealMongo, StandInMongo

TIM = "6651f0c2a1b2c3d4e5f60718"  # local user: listed by `_id` in Finance and in Engineering
ADA = "0123456789abcdef01234567"  # Entra user: listed by `idOnTheSource` in Engineering
ADA_ON_ENTRA = "3f2b7c1e-9a4d-4e8b-b0c2-5d6e7f8a9b0c"
NOBODY = "aaaaaaaaaaaaaaaaaaaaaaaa"  # in no group
TTL = 600.0
UNKNOWN_TTL = 60.0

Mongo = StandInMongo | RealMongo


def user_document(template: Mapping[str, Any], object_id: str, email: str, **fields: Any) -> dict[str, Any]:
    return {**template, "_id": ObjectId(object_id), "email": email, "username": email.split("@")[0], **fields}


def group_document(name: str, *members: str, **fields: Any) -> dict[str, Any]:
    return {"_id": ObjectId(), "name": name, "memberIds": list(members), "source": "local", **fields}


def team_directory(client: AsyncMongoClient[Any], preferred: tuple[str, ...] = ()) -> UserDirectory:
    database = client.get_default_database()
    return UserDirectory(
        database["users"],
        ttl=TTL,
        unknown_ttl=UNKNOWN_TTL,
        timeout=5.0,
        max_entries=100,
        teams=TeamFinder(database["groups"], TeamChoice(preferred)),
    )


async def teams_of(mongo: Mongo, *ids: str, preferred: tuple[str, ...] = ()) -> list[str | None]:
    directory = team_directory(AsyncMongoClient(mongo.uri, serverSelectionTimeoutMS=5000), preferred)
    try:
        lookups = [await directory.find(object_id) for object_id in ids]
    finally:
        await directory.close()
    return [lookup.user.team if lookup.user else None for lookup in lookups]
