"""MongoDB queries bounded by a deadline that holds whatever the driver does with a cancelled query.

`asyncio.timeout` cancels the query at its deadline and then waits for it to end, and the driver may
take its time there (closing a connection to a frozen server, for one): the waiter then waits past
the lookup timeout. Here each query runs as a task of its own; at the deadline the waiter gets
`TimeoutError` at once, and the query is cancelled and left to end on its own. Queries left behind
are bounded: while too many have not ended yet, a new query fails at once instead of adding to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

MOST_ABANDONED = 32  # a driver holding this many cancelled queries is stuck: asking more only adds to them


class QueryDeadline:
    def __init__(self, most_abandoned: int = MOST_ABANDONED) -> None:
        self._most_abandoned = most_abandoned
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def abandoned(self) -> int:
        """Queries given up on that the driver has not finished cancelling yet."""
        return len(self._abandoned)

    async def run(self, query: Coroutine[Any, Any, T], seconds: float) -> T:
        """The query's result, or `TimeoutError` once `seconds` have passed, whatever the query does then."""
        if len(self._abandoned) >= self._most_abandoned:
            query.close()
            raise TimeoutError("too many abandoned queries have not ended")
        task = asyncio.create_task(query)
        try:
            await asyncio.wait((task,), timeout=max(seconds, 0.0))
        finally:
            if not task.done():  # the deadline passed, or the waiter itself was cancelled
                self._abandon(task)
        if not task.done() or task.cancelled():
            raise TimeoutError
        return task.result()

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody waits for any more is not worth a log line
