"""Starting, pinning, watching and stopping the benchmark's processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Two cores: the load generators and the fake upstreams share one, the proxy under test (ours or
# nginx) has the other to itself. With fewer cores nothing is pinned.
LOAD_CPU = "0"
PROXY_CPU = "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(command: Sequence[str], cpu: str) -> list[str]:
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", cpu, *command]


class Service:
    """One child process, its output in a log file, stopped when the run ends."""

    def __init__(self, name: str, command: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, **(env or {})}
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def first_line(self, timeout: float = 20.0) -> str:
        """The first line the process prints (its `ready` signal)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline()
        if not line or time.monotonic() > deadline:
            raise RuntimeError(f"{self.name} did not start; see {self.log_path}")
        return line.decode().strip()

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process and all its descendants, the ones that ended included.

    nginx's worker and a supervisor's uvicorn workers are children of the pid that was started; a
    child that has ended and been waited for counts in its parent's cutime and cstime.
    """
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """`cpu_seconds`, as user time and system time (the kernel's work on the process's behalf)."""
    user = system = 0
    for fields in _stats_in_tree(pid):
        user += int(fields[11]) + int(fields[13])  # utime, cutime
        system += int(fields[12]) + int(fields[14])  # stime, cstime
    ticks = os.sysconf("SC_CLK_TCK")
    return user / ticks, system / ticks


def _stats_in_tree(root: int) -> list[list[str]]:
    """The /proc stat fields after the command name, for `root` and every process below it."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):  # ended while the folder was read
                continue
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        if pid in stats:
            found.append(stats[pid])
        pending.extend(children.get(pid, []))
    return found


def busy_share(seconds: float = 1.0) -> float:
    """The share of all CPUs' time that was not idle over `seconds`: other work skews every number."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields), idle

    total_before, idle_before = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total else 0.0


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")
