"""What a MongoDB outage costs each request: latency for users the proxy has not cached yet.

Starts the fake upstream and one proxy process whose MONGO_URI points at a port nothing listens on
(a stopped MongoDB container), then sends chat completions one after another, each for a user the
proxy has never seen, and prints the latency percentiles. `python -m bench.outage [--requests N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from .processes import Service, free_port, wait_for_port


def measure(requests: int, lookup_timeout: float, work: Path) -> list[float]:
    upstream_port, proxy_port, mongo_port = free_port(), free_port(), free_port()
    with ExitStack() as stack:
        upstream = Service("upstream", [sys.executable, "-m", "bench.origin", str(upstream_port)], work)
        stack.callback(upstream.stop)
        if upstream.first_line() != "ready":
            raise RuntimeError("the fake upstream did not start")
        env = {
            "PORTKEY_URL": f"http://127.0.0.1:{upstream_port}",
            "MONGO_URI": f"mongodb://127.0.0.1:{mongo_port}/LibreChat",
            "USER_LOOKUP_TIMEOUT_SECONDS": str(lookup_timeout),
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(proxy_port)]
        proxy = Service("proxy", command, work, env)
        stack.callback(proxy.stop)
        wait_for_port(proxy_port, proxy.process)
        latencies = []
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", timeout=30) as client:
            for number in range(requests):
                body = {"user": f"{0x6F0000000000000000000000 + number:024x}", "model": "m", "messages": []}
                started = time.perf_counter()
                response = client.post("/v1/chat/completions", json=body)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
        return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__)
    parser.add_argument("--requests", type=int, default=30, help="requests, each for a new user (default 30)")
    parser.add_argument("--lookup-timeout", type=float, default=1.0, help="USER_LOOKUP_TIMEOUT_SECONDS (default 1)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as work:
        latencies = sorted(measure(args.requests, args.lookup_timeout, Path(work)))
    ms = [value * 1000 for value in latencies]
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(
        f"MongoDB down, {len(ms)} requests for uncached users: median {statistics.median(ms):.1f} ms, "
        f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms, total {sum(ms) / 1000:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
