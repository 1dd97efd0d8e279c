"""With several workers, every scrape of /metrics counts every worker's requests.

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

from portkey_user_proxy.observability.worker_metrics import empty
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


@pytest.fixture
def two_workers(
    tmp_path: Path, upstream: Upstream, mongo: StandInMongo | RealMongo
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-c", _STALE_RUN], env=env, check=True)
    assert list(metrics_dir.glob("*.db"))
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


def test_emptying_keeps_what_is_not_a_metrics_file(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"\0" * 8)
    (tmp_path / "notes.txt").write_text("the admin's own file")

    empty(tmp_path)

    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
