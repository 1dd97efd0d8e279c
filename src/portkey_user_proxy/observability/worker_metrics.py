"""Metrics that count every worker process: prometheus_client's multiprocess mode.

With several workers (WEB_CONCURRENCY > 1) each process writes its values to files in one
directory and every scrape, whichever worker answers it, sums them. `serve` prepares that directory
before any worker starts: PROMETHEUS_MULTIPROC_DIR when it is set, else a new temporary one, and
empties it of the previous run's files, so counters start from zero. With one worker the values
stay in memory, which is cheaper per update (see `python -m bench.metrics_cost`).

Live gauges (open streams) count only the workers alive. A worker that stops cleanly removes its
own; one that is killed (out of memory, SIGKILL, a crash) cannot, and uvicorn starts another in its
place: each scrape removes the live gauges of processes that are gone (`forget_dead_workers`), as
prometheus_client's `mark_process_dead` would for that process.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .logs import escape_for_log

ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The files of live gauges (`multiprocess_mode="live..."`), one per process: `gauge_livesum_<pid>.db`.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(?P<pid>\d+)\.db")
# Every file prometheus_client writes (values.py: `<type>_<pid>.db`, a gauge's type with its mode,
# the modes of metrics.py `Gauge._MULTIPROC_MODES`): nothing else named `.db` is its own.
_GAUGE_MODES = "(?:live)?(?:all|min|max|sum|mostrecent)"
_VALUE_FILE = re.compile(rf"(?:counter|histogram|summary|gauge_{_GAUGE_MODES})_\d+\.db")


def multiprocess_directory() -> str | None:
    return os.environ.get(ENVIRONMENT_VARIABLE) or None


@contextmanager
def shared_metrics(web_concurrency: int, configured: str | None) -> Iterator[Path | None]:
    """The directory the workers share for the life of the server, or None for one worker.

    `configured`: PROMETHEUS_MULTIPROC_DIR from the settings (the environment, or .env). Set in the
    environment before the workers start, which read it when they import prometheus_client.
    """
    if web_concurrency == 1 and multiprocess_directory() is None:
        # One process, and prometheus_client, already imported here, keeps its values in memory:
        # a directory named in .env alone has nothing to share.
        yield None
        return
    directory = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="portkey-user-proxy-metrics-"))
    _prepare(directory)
    os.environ[ENVIRONMENT_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        if configured is None:
            shutil.rmtree(directory, ignore_errors=True)


class UnusableDirectory(Exception):
    """PROMETHEUS_MULTIPROC_DIR names something the workers cannot keep their files in; one line says why."""


def _prepare(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
        empty(directory)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnusableDirectory(
            f"invalid setting {ENVIRONMENT_VARIABLE}: {escape_for_log(str(directory))} cannot hold the workers' "
            f"metric files ({reason}): name a writable directory, or unset it for a temporary one"
        ) from None


def empty(directory: Path) -> None:
    """Remove the value files a previous run left; nothing else in a directory the admin named."""
    for path in directory.iterdir():
        if _VALUE_FILE.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def forget_dead_workers(directory: Path) -> None:
    """Remove the live gauge files of processes that are no longer running."""
    for path in directory.iterdir():
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match is not None and not _running(int(match["pid"])):
            path.unlink(missing_ok=True)  # another worker's scrape may have removed it first


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the pid is another user's process now: the worker that had it is gone
    return True
