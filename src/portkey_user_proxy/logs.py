"""Logging set-up, the one access line per request, and warnings that must not flood the log."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

access_logger = logging.getLogger("portkey_user_proxy.access")
logger = logging.getLogger("portkey_user_proxy")


def configure_logging(level: str) -> None:
    """One format for the proxy's lines and uvicorn's (start-up, shutdown, server errors)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


@dataclass(slots=True)
class AccessRecord:
    """What the access line says about one request. Never headers, keys or bodies."""

    method: str
    path: str
    started: float
    status: int = 0
    user: str = "-"
    attribution: str = "-"
    trace_id: str = "-"

    def emit(self) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        duration_ms = (time.perf_counter() - self.started) * 1000
        access_logger.info(
            '"%s %s" %d %.1fms user=%s attribution=%s trace=%s',
            self.method,
            self.path,
            self.status,
            duration_ms,
            self.user,
            self.attribution,
            self.trace_id,
        )


class RateLimitedWarnings:
    """At most one warning per key per interval, with a count of those held back."""

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        suffix = f" ({held} more since the last such warning)" if held else ""
        logger.warning(message + suffix, *args)
