"""A bounded soak on loopback: many users, streams and faults, then attribution and memory checked.

`python -m bench.soak` sends 10,000 chat completions (half of them streamed) for 1,000 users through
one proxy process, with a fixed number of clients at a time, as LibreChat would: the user id in the
body (and in the identity header for a third of them), a conversation header, the proxy's key.
Meanwhile MongoDB is stopped and started again, and later the upstream is killed and started again.
Users 900-999 are first seen only once MongoDB is down, and the user cache's TTL is cut to 5 s so
that cached users expire during the outage too.

Reported, and held to zero: misattributions (a `_user` that is neither the user's email nor, as the
fail-open fallback, the user's own id), proxy-made 5xx and failed requests outside the fault windows
(a request is inside a window when its lifetime overlaps it), and headers the proxy must consume
but forwarded. Also reported: the proxy's memory at each thousand requests, and MongoDB lookups per
user. The run stops at `--max-seconds` whatever happens. Run it on an otherwise idle machine: it
pins itself like `python -m bench` does, and a starved MongoDB stand-in times lookups out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from .processes import LOAD_CPU, PROXY_CPU, Service, free_port, pinned, rss_kib, wait_for_port
from .soak_mongo import user_email, user_id
from .soak_upstream import SEEN

RESULTS = Path(__file__).parent / "results"
PROXY_KEY = "soak-proxy-key-0123456789abcdef"
PORTKEY_KEY = "pk-soak-held-by-the-proxy"
CONVERSATIONS = uuid.UUID("6f1c2a9e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")
LATE_USERS = 0.1  # the share of users first seen while MongoDB is down
BACKOFF_SECONDS = 0.1  # a client's pause after a failed request, as OpenAI's SDKs do


@dataclass
class Window:
    name: str
    start: float
    end: float = float("inf")

    def overlaps(self, start: float, end: float) -> bool:
        return start <= self.end and end >= self.start


@dataclass
class Outcome:
    index: int
    user: int
    stream: bool
    start: float
    end: float = 0.0
    status: int | None = None  # None: no response at all
    proxy_made: bool = False  # an error the proxy answered itself
    complete: bool = False  # a whole completion, or a stream that reached [DONE]
    seen: dict[str, Any] | None = None
    conversation: str = ""
    error: str = ""


@dataclass
class Run:
    plan: dict[str, Any]
    windows: list[Window] = field(default_factory=list)
    memory_kib: list[tuple[int, int]] = field(default_factory=list)  # (requests done, proxy RSS)
    outcomes: list[Outcome] = field(default_factory=list)
    stopped_early: bool = False


class Services:
    """MongoDB, the upstream and the proxy as child processes, on ports fixed for the whole run."""

    def __init__(self, args: argparse.Namespace, work: Path, stack: ExitStack) -> None:
        self.args = args
        self.work = work
        self.stack = stack
        self.mongo_port, self.upstream_port, self.proxy_port = free_port(), free_port(), free_port()
        self.finds_file = work / "finds"
        self.finds_file.touch()
        self.mongo: Service | None = None
        self.upstream: Service | None = None
        self.proxy: Service | None = None
        self._starts = collections.Counter[str]()

    def start_mongo(self) -> None:
        command = [sys.executable, "-m", "bench.soak_mongo", str(self.mongo_port), str(self.args.users)]
        self.mongo = self._start("mongo", [*command, str(self.finds_file)])

    def stop_mongo(self) -> None:
        assert self.mongo is not None
        self.mongo.stop()

    def start_upstream(self) -> None:
        command = [sys.executable, "-m", "bench.soak_upstream", str(self.upstream_port), PORTKEY_KEY]
        self.upstream = self._start("upstream", command)

    def kill_upstream(self) -> None:
        assert self.upstream is not None
        self.upstream.process.kill()  # a crash, not a graceful stop: connections are reset
        self.upstream.stop()

    def start_proxy(self) -> None:
        env = {
            "PORTKEY_URL": f"http://127.0.0.1:{self.upstream_port}",
            "MONGO_URI": f"mongodb://127.0.0.1:{self.mongo_port}/LibreChat",
            "PROXY_API_KEY": PROXY_KEY,
            "PORTKEY_API_KEY": PORTKEY_KEY,
            "USER_CACHE_TTL_SECONDS": str(self.args.cache_ttl),
            "USER_LOOKUP_TIMEOUT_SECONDS": "1",
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "INFO",
        }
        command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(self.proxy_port)]
        self.proxy = Service("proxy", pinned(command, PROXY_CPU), self.work, env)
        self.stack.callback(self.proxy.stop)
        wait_for_port(self.proxy_port, self.proxy.process)

    def _start(self, name: str, command: list[str]) -> Service:
        self._starts[name] += 1
        service = Service(f"{name}-{self._starts[name]}", pinned(command, LOAD_CPU), self.work)
        self.stack.callback(service.stop)
        if service.first_line() != "ready":
            raise RuntimeError(f"{name} did not start; see {service.log_path}")
        return service


class Load:
    def __init__(self, args: argparse.Namespace, services: Services, run: Run) -> None:
        self.args = args
        self.services = services
        self.run = run
        self.started = time.monotonic()
        self.done = 0
        self._next = 0
        self._milestones: dict[float, asyncio.Event] = {0.25: asyncio.Event(), 0.6: asyncio.Event()}
        rng = random.Random(self.args.seed)
        early = int(args.users * (1 - LATE_USERS))
        self._users = [
            rng.randrange(early if index < args.requests // 4 else args.users) for index in range(args.requests)
        ]

    def now(self) -> float:
        return time.monotonic() - self.started

    async def drive(self) -> None:
        # Idle connections are dropped before the proxy's own keep-alive (5 s) ends them under a request.
        limits = httpx.Limits(
            max_connections=self.args.concurrency, max_keepalive_connections=self.args.concurrency, keepalive_expiry=2
        )
        url = f"http://127.0.0.1:{self.services.proxy_port}/v1/chat/completions"
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            faults = asyncio.create_task(self._faults())
            await asyncio.gather(*(self._client(client, url) for _ in range(self.args.concurrency)))
            await faults

    async def _client(self, client: httpx.AsyncClient, url: str) -> None:
        while self._next < self.args.requests:
            index, self._next = self._next, self._next + 1
            outcome = await self._request(client, url, index)
            self.run.outcomes.append(outcome)
            self.done += 1
            if self.done % 1000 == 0:
                assert self.services.proxy is not None
                self.run.memory_kib.append((self.done, rss_kib(self.services.proxy.pid)))
            for share, reached in self._milestones.items():
                if self.done >= share * self.args.requests:
                    reached.set()
            if outcome.status is None or outcome.proxy_made:
                await asyncio.sleep(BACKOFF_SECONDS)

    async def _request(self, client: httpx.AsyncClient, url: str, index: int) -> Outcome:
        user = self._users[index]
        stream = index % 2 == 0
        conversation = str(uuid.uuid5(CONVERSATIONS, f"{user}-{index // 50}"))
        headers = {"authorization": f"Bearer {PROXY_KEY}", "x-librechat-conversation-id": conversation}
        if index % 3 == 0:
            headers["x-librechat-user-id"] = user_id(user)
        if index % 4 == 0:
            headers["x-portkey-metadata"] = '{"_environment":"soak"}'
        body = {"model": "gpt-4o-mini", "user": user_id(user), "stream": stream, "messages": [{"role": "user"}]}
        outcome = Outcome(index, user, stream, self.now(), conversation=conversation)
        try:
            async with client.stream("POST", url, headers=headers, json=body) as response:
                outcome.status = response.status_code
                if seen := response.headers.get(SEEN.decode()):
                    outcome.seen = json.loads(seen)
                data = b"".join([chunk async for chunk in response.aiter_raw()])
            outcome.proxy_made = response.status_code >= 400 and b"portkey_user_proxy_error" in data
            done = data.endswith(b"data: [DONE]\n\n") if stream else b'"choices"' in data
            outcome.complete = response.status_code == 200 and done
        except httpx.HTTPError as exc:
            outcome.error = type(exc).__name__
        outcome.end = self.now()
        return outcome

    async def _faults(self) -> None:
        services = self.services
        await self._milestones[0.25].wait()
        await self._window("mongodb", services.stop_mongo, services.start_mongo, self.args.mongo_outage)
        await self._milestones[0.6].wait()
        await self._window("upstream", services.kill_upstream, services.start_upstream, self.args.upstream_outage)

    async def _window(self, name: str, stop: Callable[[], None], start: Callable[[], None], seconds: float) -> None:
        window = Window(name, self.now())
        self.run.windows.append(window)
        await asyncio.to_thread(stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(start)
        window.end = self.now()


def evaluate(run: Run, finds_file: Path, metrics: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    outside = [o for o in run.outcomes if not any(w.overlaps(o.start, o.end) for w in run.windows)]
    mongo = next((w for w in run.windows if w.name == "mongodb"), None)
    misattributed, fallbacks, fallbacks_outside, violations, wrong_traces = [], 0, 0, 0, 0
    for outcome in run.outcomes:
        seen = outcome.seen
        if seen is None:
            continue
        if seen["user"] not in (user_email(outcome.user), user_id(outcome.user)) or seen["body_user"] != user_id(
            outcome.user
        ):
            misattributed.append({"index": outcome.index, "user": outcome.user, "seen": seen})
        if seen["user"] == user_id(outcome.user):
            fallbacks += 1
            fallbacks_outside += mongo is None or not mongo.overlaps(outcome.start, outcome.end)
        violations += seen["authorization"] or seen["identity_header"] or seen["conversation_header"]
        violations += not seen["api_key_ok"]
        wrong_traces += seen["trace"] != outcome.conversation
    finds = collections.Counter(line.strip() for line in finds_file.read_text().splitlines() if line.strip())
    per_user = [finds.get(user_id(n), 0) for n in range(args.users)]
    duration = max((o.end for o in run.outcomes), default=0.0)
    warm = next((kib for done, kib in run.memory_kib if done == 1000), None)
    last = run.memory_kib[-1][1] if run.memory_kib else None
    return {
        "requests": len(run.outcomes),
        "duration_seconds": round(duration, 1),
        "statuses": dict(collections.Counter(str(o.status) for o in run.outcomes)),
        "windows": [asdict(w) for w in run.windows],
        "misattributions": len(misattributed),
        "misattributed_examples": misattributed[:5],
        "resolved_to_email": sum(1 for o in run.outcomes if o.seen and o.seen["user"] == user_email(o.user)),
        "fallback_to_own_id": fallbacks,
        "fallback_outside_mongodb_window": fallbacks_outside,
        "proxy_5xx_outside_windows": sum(1 for o in outside if o.proxy_made and (o.status or 0) >= 500),
        "proxy_5xx_inside_windows": sum(1 for o in run.outcomes if o.proxy_made and (o.status or 0) >= 500)
        - sum(1 for o in outside if o.proxy_made and (o.status or 0) >= 500),
        "failed_outside_windows": sum(1 for o in outside if not o.complete),
        "failed_outside_examples": [asdict(o) for o in outside if not o.complete][:5],
        "client_errors": dict(collections.Counter(o.error for o in run.outcomes if o.error)),
        "forwarded_headers_it_must_consume": violations,
        "wrong_trace_ids": wrong_traces,
        "memory_kib": {
            "idle_before": run.memory_kib[0][1] if run.memory_kib else None,
            "after_1000": warm,
            "after_all": last,
            "max": max((kib for _, kib in run.memory_kib), default=None),
            "samples": run.memory_kib,
        },
        "lookups_per_user": {
            "total": sum(per_user),
            "min": min(per_user),
            "median": statistics.median(per_user),
            "max": max(per_user),
            "users_never_looked_up": sum(1 for count in per_user if count == 0),
            "expected_at_most": int(duration / args.cache_ttl) + 2,  # one per TTL, one after the outage
        },
        "proxy_lookup_outcomes": metrics,
        "stopped_early": run.stopped_early,
    }


def verdict(summary: dict[str, Any]) -> list[str]:
    """What went wrong; empty when the soak passed."""
    problems = [
        f"{name}: {summary[name]}"
        for name in (
            "misattributions",
            "proxy_5xx_outside_windows",
            "failed_outside_windows",
            "forwarded_headers_it_must_consume",
            "wrong_trace_ids",
        )
        if summary[name]
    ]
    memory, lookups = summary["memory_kib"], summary["lookups_per_user"]
    if memory["after_1000"] and memory["after_all"] > memory["after_1000"] * 1.10:
        problems.append(f"memory grew from {memory['after_1000']} KiB to {memory['after_all']} KiB")
    if lookups["max"] > lookups["expected_at_most"]:
        problems.append(f"a user was looked up {lookups['max']} times: the cache did not hold")
    if summary["stopped_early"]:
        problems.append("the run hit --max-seconds before sending every request")
    return problems


def render(summary: dict[str, Any], problems: list[str]) -> str:
    memory, lookups = summary["memory_kib"], summary["lookups_per_user"]
    windows = ", ".join(f"{w['name']} {w['start']:.1f}-{w['end']:.1f} s" for w in summary["windows"])
    lines = [
        f"requests           {summary['requests']} in {summary['duration_seconds']} s; statuses {summary['statuses']}",
        f"fault windows      {windows}",
        f"misattributions    {summary['misattributions']}",
        f"_user              email {summary['resolved_to_email']}, own id (fail-open) {summary['fallback_to_own_id']}"
        f" ({summary['fallback_outside_mongodb_window']} outside the MongoDB window)",
        f"proxy-made 5xx     outside windows {summary['proxy_5xx_outside_windows']},"
        f" inside {summary['proxy_5xx_inside_windows']}",
        f"failed outside     {summary['failed_outside_windows']}; client errors {summary['client_errors']}",
        f"header violations  {summary['forwarded_headers_it_must_consume']};"
        f" wrong trace ids {summary['wrong_trace_ids']}",
        f"proxy RSS (KiB)    idle {memory['idle_before']}, after 1,000 {memory['after_1000']},"
        f" after all {memory['after_all']}, max {memory['max']}",
        f"lookups per user   min {lookups['min']}, median {lookups['median']}, max {lookups['max']}"
        f" (total {lookups['total']}; at most {lookups['expected_at_most']} expected)",
        f"proxy lookups      {summary['proxy_lookup_outcomes']}",
        "PASSED" if not problems else "FAILED: " + "; ".join(problems),
    ]
    return "\n".join(lines)


def lookup_outcomes(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    outcomes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "portkey_user_proxy_user_lookups_total":
                outcomes[sample.labels["outcome"]] = sample.value
    return outcomes


async def soak(args: argparse.Namespace, services: Services, run: Run) -> None:
    load = Load(args, services, run)
    try:
        async with asyncio.timeout(args.max_seconds):
            await load.drive()
    except TimeoutError:
        run.stopped_early = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=50, help="clients sending at once (default 50)")
    parser.add_argument("--mongo-outage", type=float, default=5.0, help="seconds MongoDB is down (default 5)")
    parser.add_argument("--upstream-outage", type=float, default=2.0, help="seconds the upstream is down (default 2)")
    parser.add_argument("--cache-ttl", type=float, default=5.0, help="the proxy's USER_CACHE_TTL_SECONDS (default 5)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop the run after this long (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder with the services' logs")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CPU)})

    run = Run(plan=vars(args).copy())
    work = Path(tempfile.mkdtemp(prefix="portkey-user-proxy-soak-"))
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        services = Services(args, work, stack)
        services.start_mongo()
        services.start_upstream()
        services.start_proxy()
        assert services.proxy is not None
        run.memory_kib.append((0, services.proxy.rss_kib()))
        uvloop.run(soak(args, services, run))
        summary = evaluate(run, services.finds_file, lookup_outcomes(services.proxy_port), args)
    problems = verdict(summary)
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / time.strftime("soak-%Y%m%d-%H%M%S.json")
    saved.write_text(json.dumps({"plan": run.plan, **summary}, indent=2, default=str))
    print(render(summary, problems))
    print(f"\nraw results: {saved}" + (f"; logs: {work}" if args.keep else ""))
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
