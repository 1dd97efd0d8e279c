"""Holds near a budget's end, kept in MongoDB, so that every replica sees the others' requests in flight.

Far from its end a budget is decided on what each replica knows (`spend.py`): its own holds, and the
store's figure read within the cache window. Near its end that is not enough: two replicas reading
the same $10 left would each admit $10 of requests. There, each admission writes its hold first,
then reads the budget's spend and the other replicas' live holds of it, and keeps its hold only
when, with what it holds itself, the budget is not used up; otherwise it takes its hold back and the
request is refused. Two replicas racing
for the last dollars may then both refuse, never both admit past the budget: each sees the other's
hold once both are written. A hold is taken back once its answer's cost is written (`drop`), and a
replica that died with holds leaves them to expire (`HOLD_SECONDS`, a TTL index).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Int64
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from .store import COLLECTION as SPEND_COLLECTION
from .store import SpendKey

COLLECTION = "holds"
# Longer than any answer runs: a hold outliving it is one whose replica stopped without taking it back.
HOLD_SECONDS = 15 * 60


class SharedHolds:
    def __init__(self, database: AsyncDatabase[Any], *, timeout: float) -> None:
        # This process's holds are known here (`spend.py`); the store is asked for the other replicas'.
        self._writer = uuid.uuid4().hex
        self._holds = database[COLLECTION]
        self._spend = database[SPEND_COLLECTION]
        self._timeout = timeout
        self._forgetting: set[asyncio.Task[None]] = set()

    async def prepare(self) -> None:
        async with asyncio.timeout(self._timeout):
            key = [("period", ASCENDING), ("scope", ASCENDING), ("name", ASCENDING)]
            await self._holds.create_index(key, name="period_scope_name")
            await self._holds.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at")

    async def take(self, key: SpendKey, amount: int, limit: int, here: int) -> str | None:
        """The hold's id when the budget can take a request holding `amount`; None (nothing kept) when not.

        `here`: what this replica adds to the store's figure for the key, apart from this request: what
        it charged and has not written yet, and what its other requests in flight hold. The rule is
        the one each replica applies alone: a request is admitted while the budget is not used up
        without it, so the last one admitted may overshoot by its own cost.
        """
        now = datetime.now(UTC)
        hold = uuid.uuid4().hex
        document = {
            "_id": hold,
            **key.filter(),
            "writer": self._writer,
            "amount": Int64(amount),
            "expires_at": now + _HOLD_FOR,
        }
        await self._holds.insert_one(document)
        try:
            spent = await self._spent(key)
            held = await self._held(key, now)
        except BaseException:  # cancelled, timed out: the hold written must not stand for a request that is not
            self._forget(hold)
            raise
        if spent + here + held >= limit:
            self._forget(hold)
            return None
        return hold

    def _forget(self, hold: str) -> None:
        """Delete a hold in the background, so that no cancellation stops it half-way."""
        task = asyncio.get_running_loop().create_task(self._delete(hold))
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    async def _delete(self, hold: str) -> None:
        with contextlib.suppress(Exception):  # left to expire (HOLD_SECONDS) when the store cannot take it back
            async with asyncio.timeout(self._timeout):
                await self._holds.delete_one({"_id": hold})

    async def drop(self, holds: Collection[str]) -> None:
        if holds:
            async with asyncio.timeout(self._timeout):
                await self._holds.delete_many({"_id": {"$in": list(holds)}})

    async def _spent(self, key: SpendKey) -> int:
        document = await self._spend.find_one(key.filter(), {"_id": 0, "spend": 1})
        spend = document.get("spend") if document is not None else 0
        return int(spend) if isinstance(spend, int) else 0

    async def _held(self, key: SpendKey, now: datetime) -> int:
        pipeline: list[dict[str, Any]] = [
            {"$match": {**key.filter(), "writer": {"$ne": self._writer}, "expires_at": {"$gt": now}}},
            {"$group": {"_id": None, "held": {"$sum": "$amount"}}},
        ]
        async for result in await self._holds.aggregate(pipeline):
            held = result.get("held")
            return int(held) if isinstance(held, int) else 0
        return 0


_HOLD_FOR = timedelta(seconds=HOLD_SECONDS)
