"""Which budget warnings were sent: claimed in MongoDB, once per period, scope, name and threshold.

Before a replica sends a warning it inserts a document under a unique (period, scope, name,
threshold) index, in the budget database beside `spend`. The insert is atomic: the first replica
(or process, or run after a restart) to insert it sends the warning; the others get MongoDB's
duplicate-key error and send nothing. A TTL index removes a period's claims when its spend expires.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from .alert_message import Crossing
from .store import RETENTION

COLLECTION = "alerts"
_DUPLICATE_KEY = 11000


class AlertClaims:
    def __init__(self, database: AsyncDatabase[Any], *, timeout: float) -> None:
        self._alerts: AsyncCollection[Any] = database[COLLECTION]
        self.client = database.client
        self._timeout = timeout
        self._prepared = False

    async def claim(self, crossing: Crossing) -> bool:
        """Claim the crossing's threshold, and the lower ones it passed with it: True when this call won the threshold.

        Raises the driver's error when MongoDB failed: then nobody knows whether the warning is
        anyone's, and the caller decides.
        """
        thresholds = (*crossing.passed, crossing.threshold)  # the one to announce last
        now = datetime.now(UTC)
        documents = [_claim(crossing, threshold, now) for threshold in thresholds]
        async with asyncio.timeout(self._timeout):
            if not self._prepared:
                await self._prepare()
            try:
                await self._alerts.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                # Unordered: every document was tried; those already claimed are listed by index.
                errors = exc.details.get("writeErrors", [])
                if any(error.get("code") != _DUPLICATE_KEY for error in errors):
                    raise
                return len(documents) - 1 not in {error.get("index") for error in errors}
        return True

    async def _prepare(self) -> None:
        """The indexes (idempotent): without the unique one, two replicas could both claim a warning."""
        key = [("period", ASCENDING), ("scope", ASCENDING), ("name", ASCENDING), ("threshold", ASCENDING)]
        await self._alerts.create_index(key, unique=True, name="period_scope_name_threshold")
        await self._alerts.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at")
        self._prepared = True


def _claim(crossing: Crossing, threshold: Decimal, now: datetime) -> dict[str, object]:
    return {
        "period": crossing.window.key,
        "scope": crossing.scope.value,
        "name": crossing.name,
        "threshold": float(threshold),  # one float per decimal text: 0.8 is 0.8 on every replica
        "claimed_at": now,
        "expires_at": crossing.window.end + RETENTION,
    }
