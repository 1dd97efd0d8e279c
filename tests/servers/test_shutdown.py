"""SIGTERM: the server stops accepting, lets in-flight streams finish, then exits."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import httpx
import pytest

from tests.support.mongo import RealMongo, StandInMongo
from tests.support.servers import Upstream, unused_port


class ServeProcess:
    """`python -m portkey_user_proxy serve` as an admin runs it, with its log read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._reader.start()

    def close(self) -> None:
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def wait_for_log(self, text: str, timeout: float = 15) -> None:
        while True:
            line = self._lines.get(timeout=timeout)
            if text in line:
                return


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
