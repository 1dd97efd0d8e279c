"""Spend in MongoDB, shared by every replica: one document per period, scope and name.

The documents live in the proxy's own database (`BUDGET_DATABASE`), never in LibreChat's. Every
write is an atomic `$inc` with upsert on the unique (period, scope, name) index, so replicas never
lose each other's spend, and a new period is a new document: nothing resets anything. A TTL index
removes a period's documents a while after it ended.

Increments wait in `PendingIncrements`, merged by key, until written: an answer never waits on
MongoDB, and what could not be written during an outage is written when MongoDB is back. The queue
is bounded by its number of keys; what does not fit is dropped and counted.

**Each increment counts once**, however often its write is sent. A write that timed out, or whose
connection broke, may have been applied: it is in doubt. So increments go out in numbered batches:
each `SpendStore` (one per process) is a writer with a random id, numbers its batches 1, 2, 3, ...,
and sends a batch again, the same amounts under the same number, until MongoDB confirms it; only
then is the next batch taken (new increments wait meanwhile, never merged into one in doubt). Each
key's update is `$inc` + `$set: {"writers.<writer>": number}` filtered on
`"writers.<writer>": {"$not": {"$gte": number}}`, with upsert: once a batch is applied to a key the
filter no longer matches it, the upsert then collides with the document on the unique index, and
that duplicate-key error means "applied already". A first write of a key can also collide with
another replica's first write of it at the same instant (MongoDB retries such upserts itself only
when the filter is all equalities); so a key that collided is sent once more, and a second
collision is certain to mean "applied already". Unlike a list of recent batch ids, the number
never falls out of a window however many other replicas write meanwhile. A document keeps one
number per process that wrote it in the period (a few dozen bytes each).
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Int64
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from .money import SATURATED_NANOS
from .periods import Window

COLLECTION = "spend"
# How long a period's documents are kept after it ended: `budgets` can still be asked about it.
RETENTION = timedelta(days=31)
DEFAULT_PENDING_KEYS = 10_000
_PROBE_RETENTION = timedelta(hours=1)
_DUPLICATE_KEY = 11000
_WRITERS = "writers"  # the field holding, per writer, the number of its last batch applied to the document


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
        total = self._amounts.get(key)
        if total is not None:
            total += nanos
            self._amounts[key] = total if total < SATURATED_NANOS else SATURATED_NANOS
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


@dataclass(frozen=True, slots=True)
class Batch:
    """Increments written together: sent again as they are, under the same number, until confirmed."""

    number: int
    amounts: Mapping[SpendKey, int]


class SpendStore:
    def __init__(self, database: AsyncDatabase[Any], *, timeout: float, period_timeout: float | None = None) -> None:
        self.database = database
        self._spend: AsyncCollection[Any] = database[COLLECTION]
        self._timeout = timeout
        # Reading a whole period's documents (at start) may take longer than one batch of keys.
        self._period_timeout = period_timeout if period_timeout is not None else 6 * timeout
        # This process as a writer: a field name, so hex only (no "." or "$").
        self.writer = uuid.uuid4().hex[:16]
        self._batches = 0

    def batch(self, amounts: Mapping[SpendKey, int]) -> Batch:
        """The next batch of this writer: write it with `write` until confirmed before taking another."""
        self._batches += 1
        return Batch(self._batches, amounts)

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

    async def write(self, batch: Batch) -> dict[SpendKey, int]:
        """Add each amount of `batch` to its key's spend, once however often the batch is sent.

        Returns what MongoDB refused (not written, safe to add to a later batch); raises the driver's
        error when what was written is not known: the batch is then in doubt, to be sent again as is.
        """
        keys = [key for key, nanos in batch.amounts.items() if nanos > 0]
        if not keys:
            return {}
        now = datetime.now(UTC)
        operations = [self._increment(key, batch, now) for key in keys]
        async with asyncio.timeout(self._timeout):
            failed = await self._bulk(operations)
            collided = [index for index, code in failed.items() if code == _DUPLICATE_KEY]
            if collided:  # applied already, or another replica's first write of the key at the same instant
                again = await self._bulk([operations[index] for index in collided])
                for index in collided:
                    del failed[index]
                failed.update({collided[position]: code for position, code in again.items() if code != _DUPLICATE_KEY})
        return {keys[index]: batch.amounts[keys[index]] for index in failed}

    def _increment(self, key: SpendKey, batch: Batch, now: datetime) -> UpdateOne:
        applied = f"{_WRITERS}.{self.writer}"
        return UpdateOne(
            {**key.filter(), applied: {"$not": {"$gte": batch.number}}},
            {
                # Clamped: an amount bson cannot encode would fail the whole batch, every key's spend with it.
                "$inc": {"spend": Int64(min(batch.amounts[key], SATURATED_NANOS))},
                "$set": {"updated_at": now, applied: batch.number},
                "$setOnInsert": {"expires_at": key.window.end + RETENTION},
            },
            upsert=True,
        )

    async def _bulk(self, operations: list[UpdateOne]) -> dict[int, int]:
        """The operations that failed, by index, with MongoDB's error code."""
        try:
            await self._spend.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            # Unordered: every operation ran, and those that failed are listed by index.
            return {error["index"]: error.get("code", 0) for error in exc.details.get("writeErrors", [])}
        return {}

    async def period_spend(self, window: Window, limit: int) -> dict[SpendKey, int] | None:
        """Every key's stored spend in `window`, in one query; None when there are more than `limit` keys."""
        projection = {"_id": 0, "scope": 1, "name": 1, "spend": 1}
        found: dict[SpendKey, int] = {}
        async with asyncio.timeout(self._period_timeout):
            async for document in self._spend.find({"period": window.key}, projection).limit(limit + 1):
                scope, name = document.get("scope"), document.get("name")
                if scope not in _SCOPES or not isinstance(name, str):
                    continue
                key = SpendKey(window, Scope(scope), name)
                # Summed: documents written before the unique index existed may share a key.
                found[key] = found.get(key, 0) + _nanos(document.get("spend"))
                if len(found) > limit:
                    return None
        return found

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


_SCOPES = frozenset(scope.value for scope in Scope)


def _nanos(value: object) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
