"""Log formats: readable text by default, one JSON object per line for log shippers."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from portkey_user_proxy.logs import AccessRecord, RateLimitedWarnings, configure_logging, loggable

pytestmark = pytest.mark.usefixtures("restore_logging")  # these tests set up logging as a process would


def emit_access_line() -> None:
    record = AccessRecord("POST", "/v1/chat/completions", time.perf_counter(), status=200, user="a@b.c")
    record.attribution, record.trace_id, record.request_id = "resolved:cache_hit", "t-1", "r-1"
    record.emit()


def test_json_access_lines_carry_their_fields_as_keys(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")

    emit_access_line()

    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["logger"] == "portkey_user_proxy.access"
    assert (entry["method"], entry["path"], entry["status"], entry["user"]) == (
        "POST",
        "/v1/chat/completions",
        200,
        "a@b.c",
    )
    assert (entry["trace_id"], entry["request_id"], entry["attribution"]) == ("t-1", "r-1", "resolved:cache_hit")
    assert isinstance(entry["duration_ms"], float)


def test_text_access_lines_read_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")

    emit_access_line()

    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert '"POST /v1/chat/completions" 200 ' in line
    assert "user=a@b.c attribution=resolved:cache_hit trace=t-1 request=r-1" in line


def test_repeated_warnings_are_held_back_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    warnings = RateLimitedWarnings(interval=3600)

    for _ in range(5):
        warnings.warn("key", "same problem")
    warnings.warn("other", "another problem")

    assert [r.getMessage() for r in caplog.records] == ["same problem", "another problem"]


def test_json_lines_carry_an_iso_8601_utc_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    before = datetime.now(UTC)

    emit_access_line()

    stamp = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert abs(datetime.fromisoformat(stamp.replace("Z", "+00:00")) - before) < timedelta(minutes=1)


def test_client_values_are_logged_as_one_escaped_token() -> None:
    assert loggable("evil\nINFO forged line\x1b[31m") == "'evil\\nINFO forged line\\x1b[31m'"
    assert loggable("x" * 500) == repr("x" * 128)
