"""Logging set-up, the one access line per request, and warnings that must not flood the log."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from ..dialects import OTHER_ROUTE

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
access_logger = logging.getLogger("portkey_user_proxy.access")
logger = logging.getLogger("portkey_user_proxy")
# Libraries whose INFO and DEBUG lines carry secrets: httpx logs each upstream URL whole (PORTKEY_URL
# credentials, query strings), pymongo's debug lines hold MongoDB replies (emails). The access line
# says what an operator needs, without them.
QUIET_LIBRARIES = ("httpx", "httpcore", "pymongo")


def configure_logging(level: str, log_format: str = "text") -> None:
    """One format for the proxy's lines and uvicorn's (start-up, shutdown, server errors)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    _access_lines.handler = handler


class StartupRecords(logging.Handler):
    """Holds what the proxy logs while its settings are read, before logging knows LOG_LEVEL and
    LOG_FORMAT, and hands it on once it does: a JSON log never starts with a plain-text line."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._propagate = logger.propagate

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> StartupRecords:
        self._propagate, logger.propagate = logger.propagate, False
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger.removeHandler(self)
        logger.propagate = self._propagate

    def replay(self) -> None:
        for record in self.records:
            source = logging.getLogger(record.name)
            if source.isEnabledFor(record.levelno):  # LOG_LEVEL applies to them too
                source.handle(record)


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
    request_id: str = "-"
    resolved: bool = False  # `user` is a person the directory found (per-user metrics count only those)
    route: str = OTHER_ROUTE  # the metrics' `route` label, classified once per request (not in the access line)

    def emit(self) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        duration_ms = round((time.perf_counter() - self.started) * 1000, 1)
        if not _access_lines.write(self, duration_ms):
            extra = {"access": self.fields(duration_ms)}
            access_logger.info(_ACCESS_MESSAGE, *self.arguments(duration_ms), extra=extra)

    def arguments(self, duration_ms: float) -> tuple[object, ...]:
        """The arguments of `_ACCESS_MESSAGE`."""
        return (
            self.method,
            self.path,
            self.status,
            duration_ms,
            self.user,
            self.attribution,
            self.trace_id,
            self.request_id,
        )

    def fields(self, duration_ms: float) -> dict[str, object]:
        """The keys a JSON access line carries besides its message."""
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "user": self.user,
            "attribution": self.attribution,
            "trace_id": self.trace_id,
            "request_id": self.request_id,
            "duration_ms": duration_ms,
        }


_ACCESS_MESSAGE = '"%s %s" %d %.1fms user=%s attribution=%s trace=%s request=%s'


class _AccessLines:
    """The access line written straight to the handler `configure_logging` installed, in the very bytes
    its formatter writes, without a `LogRecord` and the logging machinery around it per request.

    Only while logging is as `configure_logging` left it: one handler, no filters, the access line
    propagating to it. Anything else (a test's capture handler, an embedding application's set-up)
    gets the access line through `logging` as before.
    """

    __slots__ = ("_second", "_second_text", "handler")

    def __init__(self) -> None:
        self.handler: logging.StreamHandler[TextIO] | None = None
        self._second = -1
        self._second_text = ""

    def write(self, record: AccessRecord, duration_ms: float) -> bool:
        """Write the line; False when logging is set up otherwise (or the write failed), so `logging` must."""
        handler = self.handler
        if handler is None or not self._only_path_to(handler):
            return False
        created = time.time()
        formatter = handler.formatter
        if type(formatter) is JsonFormatter:
            message = _ACCESS_MESSAGE % record.arguments(duration_ms)
            line = formatter.access_line(created, message, record.fields(duration_ms))
        elif type(formatter) is TextFormatter and formatter.line_format == _TEXT_FORMAT:
            line = f"{self._asctime(created)} INFO {access_logger.name} {_text_message(record.arguments(duration_ms))}"
        else:
            return False
        try:
            with handler.lock or contextlib.nullcontext():  # None only before createLock, never here
                handler.stream.write(line + handler.terminator)
                handler.flush()
        except Exception:
            return False  # `logging` tries again and reports the failure its own way
        return True

    @staticmethod
    def _only_path_to(handler: logging.Handler) -> bool:
        root = access_logger.root
        return (
            len(root.handlers) == 1
            and root.handlers[0] is handler
            and not handler.filters
            and handler.level <= logging.INFO
            and not root.filters
            and all(not each.handlers and not each.filters and each.propagate for each in (access_logger, logger))
        )

    def _asctime(self, created: float) -> str:
        # logging.Formatter.formatTime: local time, then milliseconds after a comma.
        second = int(created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        return f"{self._second_text},{int((created - second) * 1000):03d}"


_access_lines = _AccessLines()


def _text_message(arguments: tuple[object, ...]) -> str:
    """The access line's message as `TextFormatter` writes it: formatted once, and escaped only when it must be.

    The format itself holds nothing to escape, and each argument appears in the message as it is, so
    a message without an unsafe character is the escaped one already.
    """
    message = _ACCESS_MESSAGE % arguments
    if _safe_in_a_line(message):
        return message
    return _ACCESS_MESSAGE % _escaped_args(arguments)


# Unicode's format characters (category Cf, as of Unicode 15): the bidi controls (U+061C, U+200E/F,
# U+202A-E, U+2066-9) that reorder what a terminal shows, zero-width ones and tags that hide text.
_FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
# What could end, fake or rearrange a text log line, or fail to encode: C0/C1 controls (CR, LF, ESC...),
# Unicode's line and paragraph separators, format characters, lone surrogates; and the backslash, so
# an escape is never ambiguous.
_UNSAFE_IN_A_LINE = re.compile(rf"[\x00-\x1f\x7f-\x9f\u2028\u2029{_FORMAT_CHARACTERS}\ud800-\udfff\\]")


def escape_for_log(text: str) -> str:
    """`text` as it may appear inside one text log line: unsafe characters as `\\xNN` / `\\uNNNN` escapes."""
    if _safe_in_a_line(text):
        return text
    return _UNSAFE_IN_A_LINE.sub(_escape, text)


def _safe_in_a_line(text: str) -> bool:
    # The common case first, some ten times quicker than the pattern's search: printable ASCII
    # (no C0 control, no DEL) without a backslash holds nothing to escape.
    if text.isascii() and text.isprintable() and "\\" not in text:
        return True
    return _UNSAFE_IN_A_LINE.search(text) is None


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


class TextFormatter(logging.Formatter):
    """Readable lines whose arguments, where client-supplied values go, cannot break or forge a line."""

    def __init__(self, line_format: str = _TEXT_FORMAT) -> None:
        super().__init__(line_format)
        self.line_format = line_format  # the access line is written without `logging` in the proxy's own

    def format(self, record: logging.LogRecord) -> str:
        if record.args:
            record = logging.makeLogRecord({**record.__dict__, "args": _escaped_args(record.args)})
        return super().format(record)


def _escaped_args(args: tuple[object, ...] | Mapping[str, object]) -> tuple[object, ...] | dict[str, object]:
    if isinstance(args, Mapping):
        return {key: _escaped_arg(value) for key, value in args.items()}
    return tuple(_escaped_arg(value) for value in args)


def _escaped_arg(value: object) -> object:
    if type(value) is str:  # the common case first: one check instead of a union's
        return escape_for_log(value)
    # Numbers keep their type, so that `%d` and `%.1f` still apply to them; quoted text is safe already.
    if isinstance(value, int | float | _Quoted):
        return value
    return escape_for_log(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers; access lines carry their fields as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "access", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _json_line(entry)

    def access_line(self, created: float, message: str, fields: dict[str, object]) -> str:
        """What `format` makes of the access line's record, from its parts."""
        entry: dict[str, object] = {
            "time": iso_utc(created),
            "level": "INFO",
            "logger": access_logger.name,
            "message": message,
        }
        entry.update(fields)
        return _json_line(entry)


def _json_line(entry: dict[str, object]) -> str:
    line = json.dumps(entry, ensure_ascii=False, default=str)
    if line.isascii() and "\x7f" not in line:  # the common case: nothing `_RAW_IN_JSON` matches
        return line
    return _RAW_IN_JSON.sub(_json_escape, line)


# What `json.dumps(ensure_ascii=False)` leaves raw that a log shipper may take for a line end (NEL,
# U+2028, U+2029) or fail to encode (lone surrogates), the other C1 controls, and the format
# characters that rearrange or hide a terminal's text. In JSON text they can only occur inside
# strings, where a `\uNNNN` escape (a surrogate pair beyond U+FFFF) stands for the same character.
_RAW_IN_JSON = re.compile(rf"[\x7f-\x9f\u2028\u2029{_FORMAT_CHARACTERS}\ud800-\udfff]")


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def iso_utc(timestamp: float) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-11-30T11:20:00.123Z: log shippers parse it as is."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Quoted(str):
    """Text made safe for a log line already: the text formatter leaves it as it is."""

    __slots__ = ()


def loggable(value: str, limit: int = 128) -> str:
    """A client-controlled value as one quoted, ASCII-only token: no forged lines, no terminal escapes."""
    return _Quoted(ascii(value[:limit]))


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
