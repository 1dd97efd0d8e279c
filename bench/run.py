"""One benchmark run: start everything on loopback, measure in interleaved rounds, print the table.

Targets, measured in the same rounds (direct, nginx, proxy, repeat):
    direct   the fake upstream itself: the limit
    nginx    Debian's nginx reverse-proxying with a static `x-portkey-metadata` and `proxy_buffering off`
    proxy    portkey-user-proxy, one worker, warm user cache
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from . import nginx, report, wrk
from .clients import Connection, StreamTiming, one_stream
from .payloads import PATH, USER_COUNT, chat_body, user_id
from .processes import LOAD_CPU, PROXY_CPU, Service, busy_share, cpu_seconds, free_port, pinned, wait_for_port
from .stats import median, percentile

TARGETS = ("direct", "nginx", "proxy")
RESULTS = Path(__file__).parent / "results"
# Memory is read this long after a burst's streams end: past the upstream keep-alive (4 s).
AFTER_CLOSE_SECONDS = 6.0


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    wrk_seconds: float
    ttfe_streams: int  # sequential streams per target and round, concurrency 1
    concurrent_streams: int
    stream_events: int  # chunks per stream in the concurrent test: they outlast the arrivals
    stream_every_ms: int
    arrival_seconds: float  # the concurrent streams arrive evenly over this time
    body_repeats: dict[int, int]  # body size -> requests per target and round
    memory_streams: tuple[int, ...]

    @classmethod
    def full(cls) -> Plan:
        return cls(5, 5.0, 40, 200, 100, 20, 1.0, {1 << 20: 8, 8 << 20: 4}, (100, 500, 1000))

    @classmethod
    def quick(cls) -> Plan:
        return cls(2, 2.0, 15, 200, 100, 20, 1.0, {1 << 20: 4, 8 << 20: 2}, (100, 500))


@dataclass
class Results:
    plan: dict[str, Any]
    machine: dict[str, str]
    rounds: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # metric -> target -> per round
    memory: list[dict[str, float]] = field(default_factory=list)
    mongo_finds: dict[str, int] = field(default_factory=dict)

    def add(self, metric: str, target: str, value: float) -> None:
        self.rounds.setdefault(metric, {}).setdefault(target, []).append(value)


class Bench:
    def __init__(self, plan: Plan, work: Path, stack: ExitStack, proxy_src: Path | None, proxy_python: str) -> None:
        self.plan = plan
        self.proxy_src = proxy_src
        self.proxy_python = proxy_python
        self.work = work
        self.stack = stack
        self.finds_file = work / "mongo-finds"
        self.mongo_uri = ""
        self.ports: dict[str, int] = {}
        self.nginx_proxy_pid = 0
        self.writable_mongo = False  # mongomock behind the wire protocol: a proxy with budgets can write

    def start_upstreams(self) -> None:
        mongo_command = [sys.executable, "-m", "bench.mongo", str(self.finds_file)]
        if self.writable_mongo:
            mongo_command.append("--writable")
        mongo = self._service("mongo", pinned(mongo_command, LOAD_CPU))
        self.mongo_uri = f"mongodb://127.0.0.1:{mongo.first_line()}/LibreChat"

        self.ports["origin_nginx"] = free_port()
        config = nginx.origin_config(self.work / "nginx-origin", self.ports["origin_nginx"])
        self._await_port(self._service("nginx-origin", pinned(nginx.command(config), LOAD_CPU)), "origin_nginx")

        self.ports["origin_stream"] = free_port()
        origin = [sys.executable, "-m", "bench.origin", str(self.ports["origin_stream"])]
        self._service("origin", pinned(origin, LOAD_CPU)).first_line()

        self.ports["nginx_to_nginx"], self.ports["nginx_to_stream"] = free_port(), free_port()
        routes = {
            self.ports["nginx_to_nginx"]: self.ports["origin_nginx"],
            self.ports["nginx_to_stream"]: self.ports["origin_stream"],
        }
        config = nginx.proxy_config(self.work / "nginx-proxy", routes)
        nginx_proxy = self._service("nginx-proxy", pinned(nginx.command(config), PROXY_CPU))
        self._await_port(nginx_proxy, "nginx_to_stream")
        self.nginx_proxy_pid = nginx_proxy.pid

    @contextmanager
    def proxy(self, name: str, upstream_port: int, settings: dict[str, str] | None = None) -> Iterator[Service]:
        port = free_port()
        env = {
            "PORTKEY_URL": f"http://127.0.0.1:{upstream_port}",
            "MONGO_URI": self.mongo_uri,
            "WEB_CONCURRENCY": "1",
            **(settings or {}),
        }
        if self.proxy_src is not None:  # another checkout's code, e.g. to compare two revisions
            env["PYTHONPATH"] = str(self.proxy_src)
        command = [self.proxy_python, "-m", "portkey_user_proxy", "serve", "--host", "127.0.0.1", "--port", str(port)]
        service = Service(name, pinned(command, PROXY_CPU), self.work, env)
        try:
            wait_for_port(port, service.process)
            self.ports["proxy"] = port
            yield service
        finally:
            service.stop()

    def finds(self) -> int:
        return int(self.finds_file.read_text() or 0)

    def _service(self, name: str, command: list[str]) -> Service:
        service = Service(name, command, self.work)
        self.stack.callback(service.stop)
        return service

    def _await_port(self, service: Service, port_name: str) -> None:
        wait_for_port(self.ports[port_name], service.process)


def run(plan: Plan, bench: Bench, results: Results) -> None:
    bench.start_upstreams()
    with bench.proxy("proxy-nonstream", bench.ports["origin_nginx"]) as proxy:
        ports = {
            "direct": bench.ports["origin_nginx"],
            "nginx": bench.ports["nginx_to_nginx"],
            "proxy": proxy_port(bench),
        }
        warm_cache(bench, results, "nonstream", ports["proxy"])
        measure_nonstream(plan, bench, ports, {"nginx": bench.nginx_proxy_pid, "proxy": proxy.pid}, results)
        results.mongo_finds["nonstream_measured"] = bench.finds() - results.mongo_finds["nonstream_warm"]
    with bench.proxy("proxy-stream", bench.ports["origin_stream"]) as proxy:
        ports = {
            "direct": bench.ports["origin_stream"],
            "nginx": bench.ports["nginx_to_stream"],
            "proxy": proxy_port(bench),
        }
        start = warm_cache(bench, results, "stream", ports["proxy"])
        uvloop.run(measure_streams(plan, ports, results))
        uvloop.run(measure_bodies(plan, ports, results))
        results.mongo_finds["stream_measured"] = bench.finds() - start
    # A fresh process for each size: its baseline is not inflated by bodies or bursts measured before.
    for count in plan.memory_streams:
        with bench.proxy(f"proxy-memory-{count}", bench.ports["origin_stream"]) as proxy:
            start = warm_cache(bench, results, f"memory{count}", bench.ports["proxy"])
            uvloop.run(measure_memory(count, bench.ports["proxy"], bench.ports["origin_stream"], proxy, results))
            results.mongo_finds[f"memory{count}_measured"] = bench.finds() - start


def proxy_port(bench: Bench) -> int:
    return bench.ports["proxy"]


def warm_cache(bench: Bench, results: Results, phase: str, port: int) -> int:
    """Requests for every user through the proxy until MongoDB has answered for each of them.

    A lookup that times out (the first one on a fresh MongoDB connection can) is not cached, so the
    pass is repeated: every lookup in the measured phases must be a cache hit.
    """
    before = bench.finds()

    async def warm() -> None:
        connection = Connection(port)
        for number in range(USER_COUNT):
            status, _ = await connection.post(PATH, chat_body(user_id(number), 2048, stream=False))
            if status != 200:
                raise RuntimeError(f"warm-up request answered {status}; see the proxy log")
        connection.close()

    for _ in range(5):
        uvloop.run(warm())
        if bench.finds() - before >= USER_COUNT:
            break
        time.sleep(1)
    after = bench.finds()
    results.mongo_finds[f"{phase}_warm"] = after - before
    return after


def measure_nonstream(
    plan: Plan, bench: Bench, ports: dict[str, int], cpu_pids: dict[str, int], results: Results
) -> None:
    """wrk at 1 and 16 connections; for the targets in `cpu_pids`, the CPU their process tree spends per request."""
    script = wrk.write_script(bench.work)
    for target in TARGETS:  # warm-up: connection pools, the proxy's code paths
        wrk.run(script, ports[target], 16, 1)
    for number in range(plan.rounds):
        for connections in (1, 16):
            for target in TARGETS:
                pid = cpu_pids.get(target)
                cpu = 0.0 if pid is None else cpu_seconds(pid)
                result = wrk.run(script, ports[target], connections, plan.wrk_seconds)
                if result.errors > result.requests / 100:
                    raise RuntimeError(f"{target}: {result.errors} failed requests under wrk, more than 1%")
                results.add(f"c{connections}_errors", target, result.errors)
                if pid is not None:
                    cpu_us = (cpu_seconds(pid) - cpu) * 1e6 / result.requests
                    results.add(f"c{connections}_cpu_us_per_request", target, cpu_us)
                results.add(f"c{connections}_p50_ms", target, result.p50_ms)
                results.add(f"c{connections}_p99_ms", target, result.p99_ms)
                results.add(f"c{connections}_rps", target, result.rps)
        _progress(f"non-stream round {number + 1}/{plan.rounds}")


async def measure_streams(plan: Plan, ports: dict[str, int], results: Results) -> None:
    short = f"{PATH}?events=2&every=5"
    timed = f"{PATH}?events={plan.stream_events}&every={plan.stream_every_ms}"
    bodies = [chat_body(user_id(n % USER_COUNT), 2048, stream=True) for n in range(plan.concurrent_streams)]
    for target in TARGETS:  # warm-up
        await _concurrent_streams(ports[target], timed, bodies, plan.arrival_seconds)
    for number in range(plan.rounds):
        for target in TARGETS:
            connection = Connection(ports[target])
            firsts = [(await connection.stream(short, bodies[n])).first_event for n in range(plan.ttfe_streams)]
            connection.close()
            results.add("ttfe_c1_p50_ms", target, median(firsts) * 1000)
        for target in TARGETS:
            timings = await _concurrent_streams(ports[target], timed, bodies, plan.arrival_seconds)
            gaps = [gap for timing in timings for gap in timing.gaps]
            results.add("streams_ttfe_p99_ms", target, percentile([t.first_event for t in timings], 99) * 1000)
            results.add("streams_gap_p99_ms", target, percentile(gaps, 99) * 1000)
            results.add("streams_gap_max_ms", target, max(gaps) * 1000)
        for target in TARGETS:
            timings = await _concurrent_streams(ports[target], timed, bodies, 0.0)
            results.add("burst_ttfe_p99_ms", target, percentile([t.first_event for t in timings], 99) * 1000)
            results.add("burst_max_gap_p99_ms", target, percentile([max(t.gaps) for t in timings], 99) * 1000)
        _progress(f"stream round {number + 1}/{plan.rounds}")


async def _concurrent_streams(port: int, target: str, bodies: list[bytes], spread: float) -> list[StreamTiming]:
    """One stream per body, started evenly over `spread` seconds (all at once when 0)."""

    async def later(delay: float, body: bytes) -> StreamTiming:
        await asyncio.sleep(delay)
        return await one_stream(port, target, body)

    step = spread / len(bodies)
    return list(await asyncio.gather(*(later(n * step, body) for n, body in enumerate(bodies))))


async def measure_bodies(plan: Plan, ports: dict[str, int], results: Results) -> None:
    bodies = {size: chat_body(user_id(1), size, stream=False) for size in plan.body_repeats}
    for number in range(plan.rounds):
        for size, repeats in plan.body_repeats.items():
            for target in TARGETS:
                connection = Connection(ports[target])
                await connection.post(PATH, bodies[size])  # warm: the connection and the first allocation
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    status, _ = await connection.post(PATH, bodies[size])
                    times.append(time.perf_counter() - start)
                    if status != 200:
                        raise RuntimeError(f"{target}: a {size}-byte body was answered {status}")
                connection.close()
                results.add(f"body_{size >> 20}mib_ms", target, median(times) * 1000)
        _progress(f"body round {number + 1}/{plan.rounds}")


async def measure_memory(count: int, port: int, origin_port: int, proxy: Service, results: Results) -> None:
    """Proxy RSS with `count` slow streams open (one event a second), after they end, and after a second burst."""
    target = f"{PATH}?events=0&every=1000"
    body = chat_body(user_id(2), 2048, stream=True)

    async def burst(size: int) -> int:
        """Open `size` streams; return the RSS while they are all open, once they have all ended."""
        streams = await _open_streams(port, target, body, size)
        await asyncio.sleep(1.5)
        open_rss = max([proxy.rss_kib(), await _after(0.5, proxy), await _after(0.5, proxy)])
        ender = Connection(origin_port)
        await ender.post("/end-streams", b"")
        ender.close()
        await asyncio.gather(*streams)
        return open_rss

    await burst(50)  # warm-up: imports and first allocations on the stream path
    baseline = await _after(AFTER_CLOSE_SECONDS, proxy)
    open_rss = await burst(count)
    after = await _after(AFTER_CLOSE_SECONDS, proxy)
    await burst(count)  # the same again: a leak would grow, reused memory does not
    after_second = await _after(AFTER_CLOSE_SECONDS, proxy)
    results.memory.append(
        {
            "streams": count,
            "baseline_kib": baseline,
            "open_kib": open_rss,
            "per_stream_kib": (open_rss - baseline) / count,
            "after_kib": after,
            "after_vs_baseline": after / baseline - 1,
            "after_second_kib": after_second,
            "after_second_vs_baseline": after_second / baseline - 1,
        }
    )
    _progress(f"memory: {count} streams")


async def _open_streams(port: int, target: str, body: bytes, count: int) -> list[asyncio.Future[StreamTiming]]:
    """Open `count` streams, at most 100 connecting at a time; return once each has its first event."""
    slots = asyncio.Semaphore(100)
    streams: list[asyncio.Future[StreamTiming]] = []

    async def start_one() -> None:
        async with slots:
            first = asyncio.Event()
            stream = asyncio.ensure_future(_held_stream(Connection(port), target, body, first))
            streams.append(stream)
            waiter = asyncio.ensure_future(first.wait())
            await asyncio.wait({stream, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if stream.done():
                stream.result()  # a stream that ended before its first event: raise its error

    await asyncio.gather(*(start_one() for _ in range(count)))
    return streams


async def _held_stream(connection: Connection, target: str, body: bytes, first: asyncio.Event) -> StreamTiming:
    try:
        return await connection.stream(target, body, on_first=first.set)
    finally:
        connection.close()


async def _after(seconds: float, proxy: Service) -> int:
    await asyncio.sleep(seconds)
    return proxy.rss_kib()


def machine(proxy_python: str, proxy_src: Path | None) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    env = {**os.environ, "PYTHONPATH": str(proxy_src)} if proxy_src else None
    versions = subprocess.run(
        [
            proxy_python,
            "-c",
            "import httpx, httpcore, uvicorn; print(httpx.__version__, httpcore.__version__, uvicorn.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "proxy_python": proxy_python,
        "httpx": versions[0],
        "httpcore": versions[1],
        "uvicorn": versions[2],
        "nginx": nginx_version,
        "kernel": platform.release(),
    }


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def _missing_tools() -> list[str]:
    return [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds (about 3 minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder with configs and logs")
    parser.add_argument("--proxy-src", type=Path, help="run the proxy from this src/ folder (another checkout)")
    parser.add_argument("--proxy-python", default=sys.executable, help="run the proxy with this interpreter (a venv)")
    args = parser.parse_args(argv)
    if missing := _missing_tools():
        print(
            f"missing: {', '.join(missing)}. The benchmark compares against Debian's nginx and loads with wrk:\n"
            "    apt-get update && apt-get install -y nginx-light wrk",
            file=sys.stderr,
        )
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))

    plan = Plan.quick() if args.quick else Plan.full()
    results = Results(plan={"quick": args.quick, **asdict(plan)}, machine=machine(args.proxy_python, args.proxy_src))
    results.machine["busy_before"] = f"{busy_share():.0%}"
    work = Path(tempfile.mkdtemp(prefix="portkey-user-proxy-bench-"))
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        run(plan, Bench(plan, work, stack, args.proxy_src, args.proxy_python), results)
    results.machine["busy_after"] = f"{busy_share():.0%}"
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / time.strftime("run-%Y%m%d-%H%M%S.json")
    saved.write_text(json.dumps(asdict(results), indent=2, default=str))
    print(report.render(results))
    print(f"\nraw results: {saved}" + (f"; logs: {work}" if args.keep else ""))
    return 0
