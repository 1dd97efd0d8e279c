"""What large JSON request bodies cost the proxy: peak memory, and how long `/healthz` waits meanwhile.

`python -m bench.json_bodies` starts the fake upstream and one proxy process, then sends
`--concurrent` chat completions at once, each a `--body-mib` MiB JSON body made of small objects
(many short messages: the shape that costs a JSON parser most). While they are in flight it asks
`/healthz` every 10 ms. It prints the proxy's resident memory before and at its peak (VmHWM), the
peak's growth as a multiple of the bodies' total size, the slowest and median `/healthz` answers,
and each request's status and duration.

`--proxy-src DIR` runs the proxy from another source tree (e.g. `git archive main src | tar -x -C
/tmp/before`) to compare before and after a change. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from .processes import Service, free_port, rss_kib, wait_for_port

MIB = 1024 * 1024


def small_objects_body(size: int) -> bytes:
    """A chat completion whose `messages` are short objects, `size` bytes in all."""
    head = b'{"model":"gpt-4o-mini","user":"bench-user","stream":false,"messages":['
    message = b'{"role":"user","content":"%d"},'
    parts = [head]
    total = len(head)
    number = 0
    while total < size - 64:
        part = message % number
        parts.append(part)
        total += len(part)
        number += 1
    parts.append(b'{"role":"user","content":"last"}]}')
    return b"".join(parts)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


async def probe_health(url: str, stop: asyncio.Event) -> list[float]:
    """`/healthz` answer times, one request every 10 ms until `stop`."""
    timings: list[float] = []
    async with httpx.AsyncClient(timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            await client.get(url + "/healthz")
            timings.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    return timings


async def post(client: httpx.AsyncClient, url: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    response = await client.post(url, content=body, headers={"content-type": "application/json"})
    return response.status_code, time.perf_counter() - started


async def drive(proxy_url: str, body: bytes, concurrent: int) -> tuple[list[tuple[int, float]], list[float]]:
    stop = asyncio.Event()
    health = asyncio.create_task(probe_health(proxy_url, stop))
    await asyncio.sleep(0.2)  # a few quiet samples first
    async with httpx.AsyncClient(timeout=300) as client:
        target = proxy_url + "/v1/chat/completions"
        results = await asyncio.gather(*(post(client, target, body) for _ in range(concurrent)))
    stop.set()
    return list(results), await health


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.json_bodies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-mib", type=float, default=60, help="size of each body in MiB (default 60)")
    parser.add_argument("--concurrent", type=int, default=2, help="bodies in flight at once (default 2)")
    parser.add_argument("--proxy-src", type=Path, help="run the proxy from this source tree (its src/ folder)")
    args = parser.parse_args()
    body = small_objects_body(int(args.body_mib * MIB))

    with tempfile.TemporaryDirectory(prefix="bench-json-") as work, ExitStack() as stack:
        upstream_port, proxy_port = free_port(), free_port()
        upstream = Service("upstream", [sys.executable, "-m", "bench.origin", str(upstream_port)], Path(work))
        stack.callback(upstream.stop)
        assert upstream.first_line() == "ready"
        env = {
            "PORTKEY_URL": f"http://127.0.0.1:{upstream_port}",
            "MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/LibreChat",  # never asked: the user is no ObjectId
            "MAX_REQUEST_BODY_BYTES": str(len(body) + MIB),
            "LOG_LEVEL": "WARNING",
        }
        if args.proxy_src:
            env["PYTHONPATH"] = str(args.proxy_src.resolve()) + os.pathsep + os.environ.get("PYTHONPATH", "")
        command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(proxy_port)]
        proxy = Service("proxy", command, Path(work), env)
        stack.callback(proxy.stop)
        wait_for_port(proxy_port, proxy.process)
        httpx.get(f"http://127.0.0.1:{proxy_port}/healthz")
        before = rss_kib(proxy.pid)

        results, health = asyncio.run(drive(f"http://127.0.0.1:{proxy_port}", body, args.concurrent))
        peak = peak_rss_kib(proxy.pid)

    sent_mib = len(body) * args.concurrent / MIB
    growth_mib = (peak - before) / 1024
    print(f"bodies            {args.concurrent} x {len(body) / MIB:.1f} MiB of small objects ({sent_mib:.0f} MiB)")
    print(f"proxy RSS         {before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB at peak")
    print(f"peak growth       {growth_mib:.0f} MiB = {growth_mib / sent_mib:.1f}x the bodies")
    print(
        f"/healthz          slowest {max(health) * 1000:.0f} ms, median {statistics.median(health) * 1000:.1f} ms"
        f" ({len(health)} probes)"
    )
    for status, seconds in results:
        print(f"request           {status} in {seconds:.2f} s")
    return 0 if all(status == 200 for status, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
