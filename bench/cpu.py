"""CPU per request of one or more proxy trees side by side, and optionally a sampling profile of each.

    python -m bench.cpu now=src before=/tmp/before/src --rounds 8
    python -m bench.cpu now=src --profile /tmp/profiles      # py-spy's collapsed stacks, one file per tree

Every tree runs as its own proxy process (one worker, warm cache) on the proxy's core at once, idle
but for its turn; each round runs wrk at 16 connections against nginx and then each tree, in an
order that rotates, so that a change is compared within rounds rather than across runs. Quicker
and steadier than a whole `python -m bench` for the one figure an optimisation is meant to move.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from . import wrk
from .processes import cpu_split
from .run import Bench, Plan, Results, warm_cache
from .stats import median

CONNECTIONS = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trees", nargs="+", help="LABEL=SRC_FOLDER for each proxy tree to measure")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each wrk run")
    parser.add_argument("--profile", type=Path, help="record py-spy's collapsed stacks of each tree here")
    args = parser.parse_args(argv)
    trees = {label: Path(src).resolve() for label, src in (tree.split("=", 1) for tree in args.trees)}
    work = Path(tempfile.mkdtemp(prefix="portkey-user-proxy-cpu-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        bench = Bench(Plan.quick(), work, stack, None, sys.executable)
        bench.start_upstreams()
        results = Results(plan={}, machine={})
        pids, ports = {"nginx": bench.nginx_proxy_pid}, {"nginx": bench.ports["nginx_to_nginx"]}
        for label, src in trees.items():
            bench.proxy_src = src
            proxy = stack.enter_context(bench.proxy(f"proxy-{label}", bench.ports["origin_nginx"]))
            warm_cache(bench, results, label, bench.ports["proxy"])
            pids[label], ports[label] = proxy.pid, bench.ports["proxy"]
        script = wrk.write_script(work)
        for port in ports.values():  # warm-up: connection pools and code paths
            wrk.run(script, port, CONNECTIONS, 1)
        cpu: dict[str, list[float]] = {label: [] for label in ports}
        rps: dict[str, list[float]] = {label: [] for label in ports}
        system: dict[str, list[float]] = {label: [] for label in ports}
        for number in range(args.rounds):
            shift = number % len(trees)
            for label in ["nginx", *list(trees)[shift:], *list(trees)[:shift]]:
                user, kernel = cpu_split(pids[label])
                result = wrk.run(script, ports[label], CONNECTIONS, args.seconds)
                if not result.requests:
                    raise RuntimeError(f"{label} answered no request in {args.seconds:g} s: is the machine overloaded?")
                user_after, kernel_after = cpu_split(pids[label])
                spent = user_after - user + kernel_after - kernel
                cpu[label].append(spent * 1e6 / result.requests)
                system[label].append((kernel_after - kernel) / spent if spent else 0.0)
                rps[label].append(result.rps)
            print(f"  round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for label in trees:
                _profile(pids[label], ports[label], script, args.profile / f"{label}.txt", args.seconds * 2)
    print(render(cpu, system, rps))
    return 0


def _profile(pid: int, port: int, script: Path, out: Path, seconds: float) -> None:
    beside = Path(sys.executable).parent / "py-spy"  # installed in the same venv (pip install py-spy)
    spy_binary = str(beside) if beside.exists() else "py-spy"
    command = [spy_binary, "record", "--nonblocking", "-r", "250", "-f", "raw", "-o", str(out)]
    spy = subprocess.Popen([*command, "-d", str(round(seconds) + 1), "-p", str(pid)], stdout=subprocess.DEVNULL)
    wrk.run(script, port, CONNECTIONS, seconds)
    spy.wait(timeout=60)


def render(cpu: dict[str, list[float]], system: dict[str, list[float]], rps: dict[str, list[float]]) -> str:
    nginx = cpu["nginx"]
    lines = [
        f"CPU per request at c={CONNECTIONS}, median over {len(nginx)} rounds (lowest to highest round):",
        "",
        "| target | CPU per request (µs) | ÷ nginx, by round | of it in the kernel | requests/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, values in cpu.items():
        ratios = [v / n for v, n in zip(values, nginx, strict=True)]
        lines.append(
            f"| {label} | {median(values):.0f} ({min(values):.0f} to {max(values):.0f}) | "
            f"x {median(ratios):.1f} ({min(ratios):.1f} to {max(ratios):.1f}) | {median(system[label]):.0%} | "
            f"{median(rps[label]):.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
