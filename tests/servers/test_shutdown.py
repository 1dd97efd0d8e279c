"""SIGTERM: the server stops accepting, lets in-flight streams finish, then exits."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.support.mongo import RealMongo, StandInMongo
from tests.support.serve import ServeProcess
from tests.support.servers import Upstream


@pytest.fixture
def served(upstream: Upstream, mongo: StandInMongo | RealMongo, tmp_path: object) -> Iterator[ServeProcess]:
    env = {"PORTKEY_URL": upstream.url, "MONGO_URI": mongo.uri, "SHUTDOWN_GRACE_SECONDS": "20", "LOG_LEVEL": "INFO"}
    server = ServeProcess(env)
    yield server
    if server.process.poll() is None:
        server.process.kill()
    server.process.wait()
    server.close()


def test_sigterm_drains_an_open_stream_then_exits(served: ServeProcess, upstream: Upstream) -> None:
    served.wait_for_log("Application startup complete")
    body = {"user": "6651f0c2a1b2c3d4e5f60718"}
    with httpx.stream("POST", served.url + "/gated-stream", json=body, timeout=10) as response:
        events = (line for line in response.iter_lines() if line.startswith("data:"))
        assert next(events)

        served.process.send_signal(signal.SIGTERM)
        served.wait_for_log("Waiting for connections to close")
        with pytest.raises(httpx.ConnectError):
            httpx.get(served.url + "/healthz")
        for gate in upstream.gates[1:]:
            gate.set()
        rest = list(events)

    assert rest[-1] == "data: [DONE]"
    served.wait_for_log("Finished server process")
    # uvicorn re-raises the signal it handled once shutdown is complete, as process managers expect.
    assert served.process.wait(timeout=15) in (0, -signal.SIGTERM)
