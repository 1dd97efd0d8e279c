"""Compare saved runs side by side: `python -m bench.compare LABEL=bench/results/run-X.json ...`.

Each column is one run (for instance the same harness on two revisions, or two interpreters); each
row is what the proxy adds over direct in that run, or its own figure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .stats import median

Medians = dict[str, dict[str, float]]


def _adds(metric: str) -> Callable[[Medians, dict[str, Any]], str]:
    return lambda m, _: f"{m[metric]['proxy'] - m[metric]['direct']:+.2f}" if metric in m else "-"


def _rps(m: Medians, _: dict[str, Any]) -> str:
    rps = m["c16_rps"]
    return f"{rps['proxy']:.0f} ({rps['proxy'] / rps['nginx']:.3f} x nginx)"


def _cpu(m: Medians, _: dict[str, Any]) -> str:
    cpu = m.get("c16_cpu_us_per_request", {})
    if "proxy" not in cpu:
        return "-"
    if "nginx" not in cpu:  # runs saved before nginx's CPU was measured
        return f"{cpu['proxy']:.0f}"
    return f"{cpu['proxy']:.0f} ({cpu['proxy'] / cpu['nginx']:.1f} x nginx)"


def _memory(streams: int) -> Callable[[Medians, dict[str, Any]], str]:
    def cell(_: Medians, raw: dict[str, Any]) -> str:
        found = [m for m in raw["memory"] if m["streams"] == streams]
        return f"{found[0]['per_stream_kib']:.1f}" if found else "-"

    return cell


ROWS: tuple[tuple[str, Callable[[Medians, dict[str, Any]], str]], ...] = (
    ("non-stream c=1: added p50 (ms)", _adds("c1_p50_ms")),
    ("non-stream c=16: added p99 (ms)", _adds("c16_p99_ms")),
    ("non-stream c=16: requests/s", _rps),
    ("non-stream c=16: proxy CPU per request (µs)", _cpu),
    ("stream c=1: added p50 time to first event (ms)", _adds("ttfe_c1_p50_ms")),
    ("200 concurrent streams: added p99 time to first event (ms)", _adds("streams_ttfe_p99_ms")),
    ("200 concurrent streams: added p99 gap (ms)", _adds("streams_gap_p99_ms")),
    ("200 streams at once: added p99 time to first event (ms)", _adds("burst_ttfe_p99_ms")),
    ("200 streams at once: added p99 of each stream's max gap (ms)", _adds("burst_max_gap_p99_ms")),
    ("1 MiB body: added (ms)", _adds("body_1mib_ms")),
    ("RSS per stream, 500 open (KiB)", _memory(500)),
)


def render(runs: dict[str, dict[str, Any]]) -> str:
    medians = {
        label: {metric: {t: median(v) for t, v in by_target.items()} for metric, by_target in raw["rounds"].items()}
        for label, raw in runs.items()
    }
    lines = ["| | " + " | ".join(runs) + " |", "| --- |" + " ---: |" * len(runs)]
    for name, cell in ROWS:
        lines.append(f"| {name} | " + " | ".join(cell(medians[label], runs[label]) for label in runs) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or any("=" not in arg for arg in argv):
        print(__doc__, file=sys.stderr)
        return 2
    runs = {label: json.loads(Path(path).read_text()) for label, path in (arg.split("=", 1) for arg in argv)}
    print(render(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
