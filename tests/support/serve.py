"""`python -m portkey_user_proxy serve` as an admin runs it, in a process of its own, its log read line by line."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from typing import IO

from tests.support.servers import unused_port


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
