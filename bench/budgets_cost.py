"""What budgets add to each request's CPU: `admit` before forwarding, `settle` and the usage scan after.

The proxy spends some 350 to 550 µs of CPU on a non-stream request (docs/benchmarks.md); budgets
must stay within 10% of that. This times the hot-path work alone, in one interpreter, with the spend
cache warm (every key read, and never older than the cache window) and the budget store never waited
on: 16 users in 2 teams, a chat completion's JSON answer scanned for its usage.
`python -m bench.budgets_cost [--requests N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any

from pymongo import AsyncMongoClient

from portkey_user_proxy.budgets import BudgetConfig, Budgets, Demand, Hold, Price, SpendStore
from portkey_user_proxy.budgets.store import SpendKey
from portkey_user_proxy.dialects import dialect_for
from portkey_user_proxy.dialects.usage import UsageScanner

_USERS = [f"user{number}@example.com" for number in range(16)]
_TEAMS = ["Finance", "Engineering"]
_ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 164, "total_tokens": 976},
    }
).encode()


_DEMAND = Demand("gpt-4o-mini", 812, 1024)


class _ReadOnce(SpendStore):
    """A store that answers the start's read of the period (nothing spent) and never anything else."""

    async def prepare(self) -> None:
        pass

    async def period_spend(self, window: Any, limit: int) -> dict[SpendKey, int]:
        return {}

    async def spend_of(self, keys: Any) -> dict[SpendKey, int]:
        return dict.fromkeys(keys, 0)


def budgets() -> Budgets:
    config = BudgetConfig(
        prices=(Price("gpt-4o-mini*", Decimal("0.15"), Decimal("0.60")), Price("*", Decimal(5), Decimal(15))),
        teams={team: Decimal(10**6) for team in _TEAMS},
        users={"default": Decimal(10**4)},
        default_user=Decimal(10**4),
    )
    # Never connected: nothing on the request path waits on the store. The clock the spend view reads
    # never moves, so every key read stays fresh.
    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    ledger = Budgets(config, _ReadOnce(client["portkey_user_proxy"], timeout=1.0), monotonic=lambda: 0.0)

    async def read_every_key() -> None:
        await ledger.start()  # the period read, then each key read at its first request
        for user, team in zip(_USERS, _TEAMS * 8, strict=True):
            ledger.release(await ledger.admit(user, team, _DEMAND))
        await ledger.aclose()

    asyncio.run(read_every_key())
    return ledger


def admitted(admission: Coroutine[Any, Any, Hold]) -> Hold:
    """A coroutine that awaits nothing, run to its end as `await` would, without an event loop's turn."""
    try:
        admission.send(None)
    except StopIteration as done:
        hold: Hold = done.value
        return hold
    raise RuntimeError("admit awaited: a key was not fresh")


def measure(requests: int) -> dict[str, float]:
    ledger = budgets()
    dialect = dialect_for("/v1/chat/completions")
    phases: dict[str, float] = {}

    def timed(name: str, step: Any) -> None:
        started = time.process_time()
        for number in range(requests):
            step(number)
        phases[name] = (time.process_time() - started) / requests * 1e6

    def scan(_: int) -> None:
        scanner = UsageScanner()
        scanner.feed(_ANSWER)
        dialect.usage(scanner.reported)

    usage = dialect.usage({"prompt_tokens": 812, "completion_tokens": 164, "total_tokens": 976})
    assert usage is not None
    held: list[Hold] = []
    timed("admit", lambda n: held.append(admitted(ledger.admit(_USERS[n % 16], _TEAMS[n % 2], _DEMAND))))
    timed("usage scan", scan)
    timed("settle", lambda n: ledger.settle(held[n], "gpt-4o-mini", usage))
    phases["total"] = sum(phases.values())
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.budgets_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000, help="requests per measurement (default 100000)")
    args = parser.parse_args(argv)
    for name, micros in measure(args.requests).items():
        print(f"{name:<11} {micros:6.2f} µs CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
