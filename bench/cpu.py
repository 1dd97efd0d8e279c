"""CPU per request of one or more proxy trees side by side, and optionally a sampling profile of each.

    python -m bench.cpu now=src before=/tmp/before/src --rounds 8
    python -m bench.cpu now=src --profile /tmp/profiles      # py-spy's collapsed stacks, one file per tree
    python -m bench.cpu now=src --budgets                    # each tree with and without BUDGETS_FILE

Every tree runs as its own proxy process (one worker, warm cache) on the proxy's core at once, idle
but for its turn; each round runs wrk at 16 connections against nginx and then each tree, in an
order that rotates, so that a change is compared within rounds rather than across runs. Quicker
and steadier than a whole `python -m bench` for the one figure an optimisation is meant to move.
After each CPU run, a short run at one connection gives each target's p50 latency, shown as what
it adds over nginx's.

Beside nginx and the trees run the floors kept in `../shared/floor/` (from the project's root;
`--floors DIR` names another folder): ASGI apps under the same uvicorn (httptools, uvloop), pinned
to the same core and proxying to the same upstream, that do without any of the proxy's rules: a
no-op app, a bare pass-through, and the pass-through plus the work the proxy must do on every
request (`essentials`). Every target's CPU per request is also shown as a ratio to the essentials
floor's, round by round: what the proxy costs beyond the work it cannot skip. Without the folder
the floors are left out, and the run says so.

With `--budgets`, every tree runs with teams (TEAM_GROUPS, TEAM_METADATA_KEY) and a second time as
`LABEL+budgets`, with a budgets file too (prices, a team budget, a default and a named user budget,
all too large to refuse anything), and MongoDB is a writable stand-in (mongomock behind the wire
protocol) where the proxy reads and writes its spend: what budgets cost per request.
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
from .mongo import TEAM
from .payloads import user_email
from .processes import PROXY_CPU, Service, cpu_split, free_port, pinned, wait_for_port
from .run import Bench, Plan, Results, warm_cache
from .stats import median

CONNECTIONS = 16
# The floors beside the project (see the module's docstring): label -> the ASGI app in that folder.
FLOORS_FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "floor"
FLOORS = {
    "floor: no-op app": "noop:app",
    "floor: pass-through": "passthrough:app",
    "floor: essentials": "essentials:app",
}
ESSENTIALS = "floor: essentials"
LATENCY_SECONDS = 2.0  # the run at one connection after each CPU run
# Amounts no benchmark run can spend: every request is checked and recorded, none refused.
BUDGETS_YAML = f"""\
period: month
mode: enforce
prices:
  - {{model: "gpt-4o-mini*", input: 0.15, output: 0.60}}
  - {{model: "*", input: 5, output: 15}}
teams: {{{TEAM}: 1000000}}
users: {{default: 100000, {user_email(0)}: 200000}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trees", nargs="+", help="LABEL=SRC_FOLDER for each proxy tree to measure")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each wrk run")
    parser.add_argument("--profile", type=Path, help="record py-spy's collapsed stacks of each tree here")
    parser.add_argument("--budgets", action="store_true", help="also run each tree with budgets on (LABEL+budgets)")
    parser.add_argument("--floors", type=Path, default=FLOORS_FOLDER, help="the floors' folder (default: %(default)s)")
    args = parser.parse_args(argv)
    sources = {label: Path(src).resolve() for label, src in (tree.split("=", 1) for tree in args.trees)}
    work = Path(tempfile.mkdtemp(prefix="portkey-user-proxy-cpu-"))
    trees = _variants(sources, work if args.budgets else None)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        bench = Bench(Plan.quick(), work, stack, None, sys.executable)
        bench.writable_mongo = args.budgets
        bench.start_upstreams()
        results = Results(plan={}, machine={})
        pids, ports = {"nginx": bench.nginx_proxy_pid}, {"nginx": bench.ports["nginx_to_nginx"]}
        for label, (src, settings) in trees.items():
            bench.proxy_src = src
            proxy = stack.enter_context(bench.proxy(f"proxy-{label}", bench.ports["origin_nginx"], settings))
            warm_cache(bench, results, label, bench.ports["proxy"])
            pids[label], ports[label] = proxy.pid, bench.ports["proxy"]
        floors = _start_floors(args.floors, bench.ports["origin_nginx"], work, stack)
        for label, floor in floors.items():
            pids[label], ports[label] = floor
        rotated = [*trees, *floors]
        script = wrk.write_script(work)
        for port in ports.values():  # warm-up: connection pools and code paths
            wrk.run(script, port, CONNECTIONS, 1)
        cpu: dict[str, list[float]] = {label: [] for label in ports}
        rps: dict[str, list[float]] = {label: [] for label in ports}
        system: dict[str, list[float]] = {label: [] for label in ports}
        latency: dict[str, list[float]] = {label: [] for label in ports}
        for number in range(args.rounds):
            shift = number % len(rotated)
            for label in ["nginx", *rotated[shift:], *rotated[:shift]]:
                user, kernel = cpu_split(pids[label])
                result = wrk.run(script, ports[label], CONNECTIONS, args.seconds)
                if not result.requests:
                    raise RuntimeError(f"{label} answered no request in {args.seconds:g} s: is the machine overloaded?")
                user_after, kernel_after = cpu_split(pids[label])
                spent = user_after - user + kernel_after - kernel
                cpu[label].append(spent * 1e6 / result.requests)
                system[label].append((kernel_after - kernel) / spent if spent else 0.0)
                rps[label].append(result.rps)
                latency[label].append(wrk.run(script, ports[label], 1, LATENCY_SECONDS).p50_ms)
            print(f"  round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for label in trees:
                _profile(pids[label], ports[label], script, args.profile / f"{label}.txt", args.seconds * 2)
    if not floors:
        print(f"No floors: {args.floors} is not there, so they were left out.\n")
    print(render(cpu, system, rps, latency))
    return 0


def _start_floors(folder: Path, upstream_port: int, work: Path, stack: ExitStack) -> dict[str, tuple[int, int]]:
    """Each floor app under uvicorn on the proxy's core, proxying to `upstream_port`: label -> (pid, port)."""
    if not folder.is_dir():
        return {}
    started = {}
    for label, app in FLOORS.items():
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(folder), "--port", str(port)]
        command += ["--no-access-log", "--loop", "uvloop", "--http", "httptools"]
        name = "floor-" + app.split(":")[0]
        service = Service(name, pinned(command, PROXY_CPU), work, {"UP_PORT": str(upstream_port)})
        stack.callback(service.stop)
        wait_for_port(port, service.process)
        started[label] = (service.pid, port)
    return started


def _variants(sources: dict[str, Path], budgets_work: Path | None) -> dict[str, tuple[Path, dict[str, str]]]:
    """Each tree as it is; with `budgets_work`, each tree with teams, and again with budgets on too.

    Teams are a feature of their own (a group read per user, cached): both variants resolve them,
    so that the difference is what BUDGETS_FILE adds.
    """
    if budgets_work is None:
        return {label: (src, {}) for label, src in sources.items()}
    budgets_file = budgets_work / "budgets.yaml"
    budgets_file.write_text(BUDGETS_YAML)
    teams = {"TEAM_GROUPS": TEAM, "TEAM_METADATA_KEY": "_team"}
    trees = {label: (src, teams) for label, src in sources.items()}
    budgets = {**teams, "BUDGETS_FILE": str(budgets_file)}
    trees.update({f"{label}+budgets": (src, budgets) for label, src in sources.items()})
    return trees


def _profile(pid: int, port: int, script: Path, out: Path, seconds: float) -> None:
    beside = Path(sys.executable).parent / "py-spy"  # installed in the same venv (pip install py-spy)
    spy_binary = str(beside) if beside.exists() else "py-spy"
    command = [spy_binary, "record", "--nonblocking", "-r", "250", "-f", "raw", "-o", str(out)]
    spy = subprocess.Popen([*command, "-d", str(round(seconds) + 1), "-p", str(pid)], stdout=subprocess.DEVNULL)
    wrk.run(script, port, CONNECTIONS, seconds)
    spy.wait(timeout=60)


def render(
    cpu: dict[str, list[float]],
    system: dict[str, list[float]],
    rps: dict[str, list[float]],
    latency: dict[str, list[float]],
) -> str:
    nginx = cpu["nginx"]
    floor = cpu.get(ESSENTIALS)
    lines = [
        f"CPU per request at c={CONNECTIONS}, median over {len(nginx)} rounds (lowest to highest round):",
        "",
        "| target | CPU per request (µs) | ÷ nginx, by round | "
        + ("÷ essentials floor, by round | " if floor else "")
        + "of it in the kernel | requests/s | p50 at c=1, over nginx (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if floor else ""),
    ]
    for label, values in cpu.items():
        added = [p50 - direct for p50, direct in zip(latency[label], latency["nginx"], strict=True)]
        lines.append(
            f"| {label} | {median(values):.0f} ({min(values):.0f} to {max(values):.0f}) | "
            f"{_ratio(values, nginx, 1)} | "
            + (f"{_ratio(values, floor, 2)} | " if floor else "")
            + f"{median(system[label]):.0%} | "
            f"{median(rps[label]):.0f} | {median(added):+.2f} ({min(added):+.2f} to {max(added):+.2f}) |"
        )
    lines.extend(_budgets_lines(cpu, latency))
    return "\n".join(lines)


def _ratio(values: list[float], base: list[float], digits: int) -> str:
    """The median of the rounds' ratios, with the lowest and highest round's."""
    ratios = [v / b for v, b in zip(values, base, strict=True)]
    return f"x {median(ratios):.{digits}f} ({min(ratios):.{digits}f} to {max(ratios):.{digits}f})"


def _budgets_lines(cpu: dict[str, list[float]], latency: dict[str, list[float]]) -> list[str]:
    """For each tree run both ways: budgets on ÷ off, CPU and added p50, median of the rounds' ratios."""
    lines = []
    for label in cpu:
        off = label.removesuffix("+budgets")
        if off == label or off not in cpu:
            continue
        cpu_ratios = [on / base for on, base in zip(cpu[label], cpu[off], strict=True)]
        nginx = latency["nginx"]
        added_on = [p - n for p, n in zip(latency[label], nginx, strict=True)]
        added_off = [p - n for p, n in zip(latency[off], nginx, strict=True)]
        lines.append(
            f"\n{label} ÷ {off}: CPU per request x {median(cpu_ratios):.3f} "
            f"({min(cpu_ratios):.3f} to {max(cpu_ratios):.3f} by round); "
            f"added p50 at c=1 {median(added_on):+.3f} ms against {median(added_off):+.3f} ms"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
