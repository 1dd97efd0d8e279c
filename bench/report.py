"""The table: per-target medians over rounds, what the proxy adds, and each target met or missed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .stats import median

if TYPE_CHECKING:
    from .run import Results


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    label: str
    target: str = ""
    # Given the medians by target, whether the target is met.
    check: Callable[[dict[str, float]], bool] | None = None


def _added(limit: float) -> Callable[[dict[str, float]], bool]:
    return lambda m: m["proxy"] - m["direct"] <= limit


CPU_RATIO_CONNECTIONS = 16
CPU_RATIO_TARGET = 5.0  # proxy CPU per request ÷ nginx's, at CPU_RATIO_CONNECTIONS
RSS_PER_STREAM_KIB = 16

ROWS = (
    Row("c1_p50_ms", "non-stream, c=1: p50 latency (ms)", "added ≤ 0.5 ms", _added(0.5)),
    Row("c1_p99_ms", "non-stream, c=1: p99 latency (ms)"),
    Row("c16_p50_ms", "non-stream, c=16: p50 latency (ms)"),
    Row("c16_p99_ms", "non-stream, c=16: p99 latency (ms)"),
    Row("c16_rps", "non-stream, c=16: requests/s", "≥ 0.20 x nginx", lambda m: m["proxy"] >= 0.2 * m["nginx"]),
    Row("ttfe_c1_p50_ms", "stream, c=1: p50 time to first event (ms)"),
    Row("streams_ttfe_p99_ms", "200 concurrent streams: p99 time to first event (ms)", "added ≤ 50 ms", _added(50)),
    Row("streams_gap_p99_ms", "200 concurrent streams: p99 gap between chunks (ms)", "added ≤ 20 ms", _added(20)),
    Row("streams_gap_max_ms", "200 concurrent streams: max gap between chunks (ms)"),
    Row("burst_ttfe_p99_ms", "200 streams started at once: p99 time to first event (ms)", "added ≤ 50 ms", _added(50)),
    Row(
        "burst_max_gap_p99_ms",
        "200 streams started at once: p99 of each stream's max gap (ms)",
        "added ≤ 20 ms",
        _added(20),
    ),
    Row("body_1mib_ms", "1 MiB JSON body: median latency (ms)", "added ≤ 4 ms", _added(4)),
    Row("body_8mib_ms", "8 MiB JSON body: median latency (ms)"),
)


def medians(results: Results) -> dict[str, dict[str, float]]:
    return {metric: {t: median(v) for t, v in by_target.items()} for metric, by_target in results.rounds.items()}


def render(results: Results) -> str:
    table = medians(results)
    machine = results.machine
    rounds = results.plan["rounds"]
    lines = [
        f"Machine: {machine['nproc']} CPUs, {machine['cpu']}, Linux {machine['kernel']}; Python {machine['python']}, "
        f"httpx {machine['httpx']}, httpcore {machine['httpcore']}, uvicorn {machine['uvicorn']}, "
        f"nginx {machine['nginx']}",
        f"CPU busy with other work just before the run: {machine.get('busy_before', '?')}, just after: "
        f"{machine.get('busy_after', '?')} (anything but ~0% skews the numbers).",
        f"Medians over {rounds} interleaved rounds (direct, nginx, proxy, repeat).",
        "",
        "| metric | direct | nginx | proxy | nginx adds | proxy adds | target | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in ROWS:
        m = table.get(row.metric)
        if m is None:
            continue
        if row.metric.endswith("rps"):
            adds = f"x {m['nginx'] / m['direct']:.2f}", f"x {m['proxy'] / m['direct']:.2f}"
        else:
            adds = f"{m['nginx'] - m['direct']:+.2f}", f"{m['proxy'] - m['direct']:+.2f}"
        result = "" if row.check is None else ("met" if row.check(m) else "**missed**")
        if row.metric == "c16_rps":
            result += f" ({m['proxy'] / m['nginx']:.2f} x nginx)"
        values = " | ".join(_number(m[t]) for t in ("direct", "nginx", "proxy"))
        lines.append(f"| {row.label} | {values} | {adds[0]} | {adds[1]} | {row.target} | {result} |")
    lines += _cpu(results) + _memory(results) + _checks(results, table)
    return "\n".join(lines)


def _cpu(results: Results) -> list[str]:
    """CPU per request of nginx and the proxy, each measured around its own wrk runs, and their ratio by round."""
    rows = []
    for connections in (1, 16):
        by_target = results.rounds.get(f"c{connections}_cpu_us_per_request", {})
        if "proxy" not in by_target:
            continue
        proxy, nginx = by_target["proxy"], by_target.get("nginx")
        ratio, target, verdict = "-", "", ""
        if nginx:
            ratios = [p / n for p, n in zip(proxy, nginx, strict=True)]
            ratio = f"x {median(ratios):.1f} ({min(ratios):.1f} to {max(ratios):.1f})"
            if connections == CPU_RATIO_CONNECTIONS:
                target = f"≤ {CPU_RATIO_TARGET:g} x nginx"
                verdict = "met" if median(ratios) <= CPU_RATIO_TARGET else "**missed**"
        rows.append(f"| c={connections} | {_spread(nginx)} | {_spread(proxy)} | {ratio} | {target} | {verdict} |")
    if not rows:
        return []
    return [
        "",
        "CPU per non-stream request: user + system time of the process and its children over each wrk run, "
        "divided by the requests answered; median over rounds, lowest and highest round in brackets:",
        "",
        "| connections | nginx (µs) | proxy (µs) | proxy ÷ nginx | target | result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        *rows,
    ]


def _spread(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{median(values):.0f} ({min(values):.0f} to {max(values):.0f})"


def _memory(results: Results) -> list[str]:
    if not results.memory:
        return []
    lines = [
        "",
        "Proxy memory, a fresh process for each size (RSS read 6 s after the streams end):",
        "",
        "| slow streams open | baseline | open | per stream | after | vs baseline | after a 2nd burst | target |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in results.memory:
        per_stream_ok = m["per_stream_kib"] <= RSS_PER_STREAM_KIB
        returned_ok = m["after_vs_baseline"] <= 0.10
        verdict = f"{'met' if per_stream_ok else '**missed**'} / {'met' if returned_ok else '**missed**'}"
        lines.append(
            f"| {m['streams']:.0f} | {_mib(m['baseline_kib'])} | {_mib(m['open_kib'])} | "
            f"{m['per_stream_kib']:.1f} KiB | {_mib(m['after_kib'])} | {m['after_vs_baseline']:+.1%} | "
            f"{_mib(m['after_second_kib'])} ({m['after_second_vs_baseline']:+.1%}) | "
            f"≤ {RSS_PER_STREAM_KIB} KiB, ≤ +10%: {verdict} |"
        )
    return lines


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _checks(results: Results, table: dict[str, dict[str, float]]) -> list[str]:
    finds = results.mongo_finds
    lines = [""]
    if "c16_rps" in table:
        rps = table["c16_rps"]
        lines.append(
            f"Fake upstream headroom: direct serves {rps['direct'] / rps['proxy']:.0f}x the proxy's requests/s "
            f"({rps['direct']:.0f} vs {rps['proxy']:.0f})."
        )
    failed = {
        f"{target} at {metric.split('_')[0].replace('c', 'c=')}": int(sum(counts))
        for metric, by_target in results.rounds.items()
        if metric.endswith("_errors")
        for target, counts in by_target.items()
        if sum(counts)
    }
    if failed:
        lines.append(
            "Failed requests under wrk (status or socket errors): " + ", ".join(f"{k}: {v}" for k, v in failed.items())
        )
    measured = sum(count for phase, count in finds.items() if phase.endswith("_measured"))
    warm = sum(count for phase, count in finds.items() if phase.endswith("_warm"))
    verdict = "met" if measured == 0 else "**missed**"
    lines.append(f"MongoDB finds: {warm} while warming the cache, {measured} during the measured phases ({verdict}).")
    return lines


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 1000 else f"{value:.2f}"
