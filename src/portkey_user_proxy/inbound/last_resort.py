"""The last-resort boundary: a bug met while handling one request ends that request, never the server.

Without it, an unexpected exception reaches uvicorn, which answers a plain-text 500 that LibreChat
cannot show and logs a traceback whose frames may hold request values. Here the client gets the
proxy's own JSON error when nothing has been sent yet, and a cut-short response otherwise (a
truncated stream is never mistaken for a complete one). The log names the exception's type and
where it was raised, never its message: messages can carry bodies, emails or keys.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from ..errors import INTERNAL_ERROR, ProxyError
from ..observability.logs import logger


def internal_error(exc: Exception, method: str, route: str) -> ProxyError:
    """Log `exc` without its values, and the error the client is told."""
    logger.error("internal error on %s %s: %s at %s", method, route, type(exc).__name__, _raised_at(exc))
    return INTERNAL_ERROR.error()


def _raised_at(exc: BaseException) -> str:
    # File, line and function of the innermost frame: enough to find the bug, with no value in it.
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "-"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"
