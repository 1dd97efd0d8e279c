"""What budgets add to each request's CPU: `check` before forwarding, `record` and the usage scan after.

The proxy spends some 350 to 550 µs of CPU on a non-stream request (docs/benchmarks.md); budgets
must stay within 10% of that. This times the hot-path work alone, in one interpreter, with the spend
cache warm and the budget store never waited on (as on the request path): 16 users in 2 teams, a
chat completion's JSON answer scanned for its usage. `python -m bench.budgets_cost [--requests N]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from typing import Any

from pymongo import AsyncMongoClient

from portkey_user_proxy.budgets import BudgetConfig, Budgets, Price, SpendStore
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


def budgets() -> Budgets:
    config = BudgetConfig(
        prices=(Price("gpt-4o-mini*", Decimal("0.15"), Decimal("0.60")), Price("*", Decimal(5), Decimal(15))),
        teams={team: Decimal(10**6) for team in _TEAMS},
        users={"default": Decimal(10**4)},
        default_user=Decimal(10**4),
    )
    # Never connected: nothing on the request path waits on the store.
    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    return Budgets(config, SpendStore(client["portkey_user_proxy"], timeout=1.0))


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
    timed("check", lambda n: ledger.check(_USERS[n % 16], _TEAMS[n % 2]))
    timed("usage scan", scan)
    timed("record", lambda n: ledger.record(_USERS[n % 16], _TEAMS[n % 2], "gpt-4o-mini", usage))
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
