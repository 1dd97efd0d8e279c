"""What one metric update costs on the hot path, with values in memory and in multiprocess files.

Each mode runs in its own interpreter, because prometheus_client picks its value store when it is
first imported. `python -m bench.metrics_cost [--updates N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

_MEASURE = """
import sys, time
from portkey_user_proxy.observability.metrics import Metrics
metrics = Metrics()
updates = int(sys.argv[1])
counter = metrics.requests.labels("chat_completions", "200")
histogram = metrics.overhead_seconds.labels("chat_completions")
for name, update in (
    ("counter.inc", counter.inc),
    ("histogram.observe", lambda: histogram.observe(0.0004)),
    ("labels().inc", lambda: metrics.requests.labels("chat_completions", "200").inc()),
    ("gauge inc+dec", lambda: (metrics.open_streams.inc(), metrics.open_streams.dec())),
):
    started = time.perf_counter()
    for _ in range(updates):
        update()
    print(f"{name:<18} {(time.perf_counter() - started) / updates * 1e9:8.0f} ns")
"""


def run(updates: int, multiprocess_dir: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    if multiprocess_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
    command = [sys.executable, "-c", _MEASURE, str(updates)]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    parser.add_argument("--updates", type=int, default=200_000, help="updates per measurement (default 200000)")
    args = parser.parse_args(argv)
    print("in memory (WEB_CONCURRENCY=1):")
    print(run(args.updates, None))
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        print("multiprocess files (WEB_CONCURRENCY>1):")
        print(run(args.updates, directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
