"""Spend in MongoDB, shared by every replica: one document per period, scope and name.

The documents live in the proxy's own database (`BUDGET_DATABASE`), never in LibreChat's. Every
write is an atomic `$inc` with upsert on the unique (period, scope, name) index, so replicas never
lose each other's spend, and a new period is a new document: nothing resets anything. A TTL index
removes a period's documents a while after it ended.

Increments wait in `PendingIncrements`, merged by key, until written: an answer never waits on
MongoDB, and what could not be written during an outage is written when MongoDB is back. The queue
is bounded by its number of keys; what does not fit is dropped and counted.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Int64
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from .periods import Window

COLLECTION = "spend"
# How long a period's documents are kept after it ended: `budgets` can still be asked about it.
RETENTION = timedelta(days=31)
DEFAULT_PENDING_KEYS = 10_000
_PROBE_RETENTION = timedelta(hours=1)


class Scope(enum.StrEnum):
    TEAM = "team"
    USER = "user"


@dataclass(frozen=True, slots=True)
class SpendKey:
    window: Window
    scope: Scope
    name: str
    # Computed once: every answer looks its keys up several times (spend, pending increments).
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.window, self.scope, self.name)))

    def __hash__(self) -> int:
        return self._hash

    def filter(self) -> dict[str, str]:
        return {"period": self.window.key, "scope": self.scope.value, "name": self.name}


class PendingIncrements:
    """Nanodollars not yet written, merged by key, for at most `max_keys` keys."""

    def __init__(self, max_keys: int = DEFAULT_PENDING_KEYS) -> None:
        self._max_keys = max_keys
        self._amounts: dict[SpendKey, int] = {}
        self.dropped = 0  # increments that found the queue full, since start

    def __len__(self) -> int:
        return len(self._amounts)

    def add(self, key: SpendKey, nanos: int) -> bool:
        """Queue `nanos` for `key`; False when the queue is full and the increment was dropped."""
        if key in self._amounts:
            self._amounts[key] += nanos
            return True
        if len(self._amounts) >= self._max_keys:
            self.dropped += 1
            return False
        self._amounts[key] = nanos
        return True

    def take(self) -> dict[SpendKey, int]:
        """Everything queued, leaving the queue empty."""
        taken, self._amounts = self._amounts, {}
        return taken

    def restore(self, amounts: Mapping[SpendKey, int]) -> int:
        """Queue again what could not be written; returns how many increments did not fit."""
        before = self.dropped
        for key, nanos in amounts.items():
            self.add(key, nanos)
        return self.dropped - before


class SpendStore:
    def __init__(self, database: AsyncDatabase[Any], *, timeout: float) -> None:
        self.database = database
        self._spend: AsyncCollection[Any] = database[COLLECTION]
        self._timeout = timeout

    async def close(self) -> None:
        await self.database.client.close()

    async def prepare(self) -> None:
        """Create the indexes (idempotent): one document per key, and old periods expire."""
        async with asyncio.timeout(self._timeout):
            key = [("period", ASCENDING), ("scope", ASCENDING), ("name", ASCENDING)]
            await self._spend.create_index(key, unique=True, name="period_scope_name")
            await self._spend.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at")

    async def probe(self) -> None:
        """Prepare the indexes, write a document and read it back: what `doctor` asks of the store."""
        await self.prepare()
        now = datetime.now(UTC)
        key = {"period": "doctor", "scope": "probe", "name": "doctor"}  # no scope the budgets read
        async with asyncio.timeout(self._timeout):
            await self._spend.update_one(
                key, {"$set": {"checked_at": now, "expires_at": now + _PROBE_RETENTION}}, upsert=True
            )
            if await self._spend.find_one(key, {"_id": 1}) is None:
                raise RuntimeError("the document written was not read back")

    async def write(self, amounts: Mapping[SpendKey, int]) -> dict[SpendKey, int]:
        """Add each amount to its key's spend; returns what was not written (all of it when MongoDB failed).

        Raises nothing for a write MongoDB refused; raises the driver's error when nothing is known
        to be written, so the caller can say why.
        """
        keys = [key for key, nanos in amounts.items() if nanos]
        if not keys:
            return {}
        now = datetime.now(UTC)
        operations = [
            UpdateOne(
                key.filter(),
                {
                    "$inc": {"spend": Int64(amounts[key])},
                    "$set": {"updated_at": now},
                    "$setOnInsert": {"expires_at": key.window.end + RETENTION},
                },
                upsert=True,
            )
            for key in keys
        ]
        try:
            async with asyncio.timeout(self._timeout):
                await self._spend.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            # Unordered: every operation ran, and those that failed are listed by index.
            failed = {error["index"] for error in exc.details.get("writeErrors", [])}
            return {keys[index]: amounts[keys[index]] for index in failed}
        return {}

    async def spend_of(self, keys: Collection[SpendKey]) -> dict[SpendKey, int]:
        """The stored spend of each key, 0 for a key with none."""
        found = dict.fromkeys(keys, 0)
        if not keys:
            return found
        by_filter = {(key.window.key, key.scope.value, key.name): key for key in keys}
        clauses = [{"period": period, "scope": scope, "name": name} for period, scope, name in by_filter]
        projection = {"_id": 0, "period": 1, "scope": 1, "name": 1, "spend": 1}
        async with asyncio.timeout(self._timeout):
            # Bounded by the number of keys asked, which the caller bounds.
            async for document in self._spend.find({"$or": clauses}, projection):
                key = by_filter.get((document.get("period"), document.get("scope"), document.get("name")))
                if key is not None:
                    # Summed: documents written before the unique index existed may share a key.
                    found[key] += _nanos(document.get("spend"))
        return found

    async def top(self, window: Window, scope: Scope, limit: int) -> list[tuple[str, int]]:
        """The period's largest spenders of a scope, largest first: (name, nanodollars)."""
        query = {"period": window.key, "scope": scope.value}
        projection = {"_id": 0, "name": 1, "spend": 1}
        async with asyncio.timeout(self._timeout):
            cursor = self._spend.find(query, projection).sort("spend", DESCENDING).limit(limit)
            return [(str(document.get("name")), _nanos(document.get("spend"))) async for document in cursor]

    async def named(self, window: Window, scope: Scope, names: Collection[str]) -> dict[str, int]:
        """The period's spend of each of `names` in a scope, 0 for a name with none."""
        keys = [SpendKey(window, scope, name) for name in names]
        return {key.name: nanos for key, nanos in (await self.spend_of(keys)).items()}


def _nanos(value: object) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
