"""With several workers, every scrape of /metrics counts every worker's requests, and the streams of live ones.

Runs `portkey-user-proxy serve` itself with WEB_CONCURRENCY=2: the workers are real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from portkey_user_proxy.observability.worker_metrics import empty, forget_dead_workers
from tests.support.mongo import RealMongo, StandInMongo
from tests.support.servers import Upstream, unused_port

USER_ID = "6651f0c2a1b2c3d4e5f60718"
REQUESTS = 20
REQUESTS_TOTAL = ("portkey_user_proxy_requests_total", (("route", "chat_completions"), ("status", "200")))
# A counter a previous run left behind in the directory: the new run must not count it.
_STALE_RUN = """
from prometheus_client import Counter
Counter("portkey_user_proxy_requests", "", ["route", "status"]).labels("chat_completions", "200").inc(1000)
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(params=["environment", ".env"])
def two_workers(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: Upstream, mongo: StandInMongo | RealMongo
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`serve` with two workers; PROMETHEUS_MULTIPROC_DIR given in the environment or in .env."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    subprocess.run([sys.executable, "-c", _STALE_RUN], env=_multiprocess(metrics_dir), check=True)
    assert list(metrics_dir.glob("*.db"))
    env = {**os.environ}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if request.param == "environment":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    else:
        (tmp_path / ".env").write_text(f"PROMETHEUS_MULTIPROC_DIR={metrics_dir}\n")
    port = unused_port()
    env |= {"WEB_CONCURRENCY": "2", "PORTKEY_URL": upstream.url, "MONGO_URI": mongo.uri, "LOG_LEVEL": "INFO"}
    command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_workers(server, 2)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def _wait_for_workers(server: subprocess.Popen[str], count: int) -> None:
    """Reads the server's log until each worker says it has started (uvicorn's own line)."""
    assert server.stderr is not None
    started = 0
    for line in server.stderr:
        started += "Application startup complete" in line
        if started == count:
            return
    raise AssertionError(f"the server exited with {server.wait()} before {count} workers started")


def test_every_scrape_counts_the_requests_of_every_worker(two_workers: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = two_workers
    for _ in range(REQUESTS):
        # A new connection each time, so the kernel spreads them over both workers.
        response = httpx.post(url + "/v1/chat/completions", json={"user": USER_ID, "messages": []}, timeout=10)
        assert response.status_code == 200

    scrapes = [_samples(httpx.get(url + "/metrics", timeout=10).text) for _ in range(6)]

    assert [scrape[REQUESTS_TOTAL] for scrape in scrapes] == [REQUESTS] * 6
    for scrape in scrapes:
        lookups = sum(value for (name, _), value in scrape.items() if name == "portkey_user_proxy_user_lookups_total")
        assert lookups == REQUESTS
        assert scrape[("portkey_user_proxy_open_streams", ())] == 0
        assert scrape[("portkey_user_proxy_mongodb_up", ())] == 1


# Every kind of file prometheus_client's multiprocess mode writes: each metric type, each gauge mode.
_EVERY_KIND_OF_VALUE = """
from prometheus_client import Counter, Gauge, Histogram, Summary
Counter("c", "").inc()
Histogram("h", "").observe(1)
Summary("s", "").observe(1)
for mode in Gauge._MULTIPROC_MODES:
    Gauge("g_" + mode, "", multiprocess_mode=mode).set(1)
"""


def test_emptying_removes_every_metrics_file_and_keeps_the_rest(tmp_path: Path) -> None:
    # The directory may be a shared volume: SQLite databases and other `.db` files there are someone's data.
    others = ["notes.txt", "librechat.db", "counter.db", "gauge_users_1.db", "histogram_1.db.bak", "my_counter_12.db"]
    for name in others:
        (tmp_path / name).write_text("the admin's own file")
    subprocess.run([sys.executable, "-c", _EVERY_KIND_OF_VALUE], env=_multiprocess(tmp_path), check=True)
    written = {path.name for path in tmp_path.iterdir()} - set(others)
    assert len(written) == 3 + 10  # counter, histogram, summary, and one file per gauge mode

    empty(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(others)


def _multiprocess(directory: Path) -> dict[str, str]:
    return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}


def test_a_worker_that_is_killed_stops_counting_its_open_streams(
    two_workers: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    url, server = two_workers
    with httpx.stream("POST", url + "/endless-stream", json={"user": USER_ID}, timeout=10) as stream:
        lines = stream.iter_lines()  # kept: a dropped iterator would close the stream
        assert next(lines).startswith("data:")
        assert _open_streams(url) == 1
        workers = _live_gauge_pids(tmp_path / "metrics")
        assert len(workers) == 2
        for pid in workers:  # one of them holds the stream: killed, it cannot say it is gone
            os.kill(pid, signal.SIGKILL)
        _wait_for_replacements(server, workers)

    assert _open_streams(url) == 0


def test_only_the_live_gauges_of_processes_gone_are_forgotten(tmp_path: Path) -> None:
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(exited.stdout), os.getpid()
    kept = [f"counter_{dead}.db", f"gauge_mostrecent_{dead}.db", f"gauge_livesum_{alive}.db", "notes.txt"]
    for name in [*kept, f"gauge_livesum_{dead}.db", f"gauge_liveall_{dead}.db"]:
        (tmp_path / name).write_bytes(b"")

    forget_dead_workers(tmp_path)

    # What a process counted stays counted; only what it holds right now leaves with it.
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)


def _open_streams(url: str) -> float:
    return _samples(httpx.get(url + "/metrics", timeout=10).text)[("portkey_user_proxy_open_streams", ())]


def _live_gauge_pids(directory: Path) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_livesum_*.db")}


def _wait_for_replacements(server: subprocess.Popen[str], killed: set[int]) -> None:
    """Reads the server's log until uvicorn has noticed each killed worker and started its replacement."""
    assert server.stderr is not None
    dead: set[int] = set()
    started = 0
    for line in server.stderr:
        dead |= {pid for pid in killed if f"Child process [{pid}] died" in line}
        started += "Application startup complete" in line
        if dead == killed and started == len(killed):
            return
    raise AssertionError(f"the server exited with {server.wait()} before its workers were replaced")
