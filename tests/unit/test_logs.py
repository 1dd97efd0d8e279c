"""Log formats: readable text by default, one JSON object per line for log shippers."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest

from portkey_user_proxy.observability.logs import (
    _UNSAFE_IN_A_LINE,
    AccessRecord,
    RateLimitedWarnings,
    _escape,
    configure_logging,
    escape_for_log,
    loggable,
)

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


FORGERIES = [
    "/v1/x\r\n2026-11-28 06:31:13,512 INFO portkey_user_proxy.access FORGED",
    "/v1/x\n\x1b[2K\x1b[1AFORGED",
    "/v1/x\u2028FORGED\u2029",
    "/v1/x\x85FORGED\x00\x7f",
    "/v1/\ud800lone-surrogate",
    "/v1/x\u202eDEGROF\u202c\u2066FORGED\u2069\u200f\u061c",  # bidi controls reorder what a terminal shows
    "/v1/x\u200bFORGED\ufeff\U000e0041",  # zero-width and tag characters hide text
]
# Every character a line above carries that a terminal would act on rather than show.
_ACTED_ON = "\r\x1b\x00\x7f\x85\u2028\u2029\ud800\u202e\u202c\u2066\u2069\u200f\u061c\u200b\ufeff\U000e0041"


@pytest.mark.parametrize("forged", FORGERIES)
def test_text_lines_escape_what_a_client_sent_in_every_field(forged: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    record = AccessRecord(forged, forged, time.perf_counter(), status=401, user=forged)
    record.trace_id, record.request_id, record.attribution = forged, forged, "fallback:not_an_object_id"

    record.emit()

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n")  # one line, whatever the fields held
    line = err.removesuffix("\n")
    assert not any(char in line for char in _ACTED_ON)
    assert line.count("FORGED") == 5 * forged.count("FORGED")  # the text is kept, only made harmless


def test_text_lines_escape_client_values_in_warnings_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")

    RateLimitedWarnings().warn("k", "LibreChat sent the placeholder %s unresolved", "{{\r\nLIBRECHAT_USER_ID}}")

    assert capsys.readouterr().err.count("\n") == 1


def test_escapes_are_unambiguous() -> None:
    assert escape_for_log("plain /v1/chat/completions") == "plain /v1/chat/completions"
    assert escape_for_log("a\r\nb") == "a\\x0d\\x0ab"
    assert escape_for_log("a\\x0d") == "a\\\\x0d"  # a literal backslash is not mistaken for an escape
    assert escape_for_log("\u2028\ud800é") == "\\u2028\\ud800é"
    assert escape_for_log("\u202eé\U000e0041") == "\\u202eé\\U000e0041"


def test_every_format_character_is_escaped() -> None:
    # Unicode's format characters (bidi controls, zero-width ones, tags) reorder or hide a terminal's text.
    format_characters = [chr(code) for code in range(sys.maxunicode + 1) if unicodedata.category(chr(code)) == "Cf"]
    assert "\u202e" in format_characters

    assert [char for char in format_characters if escape_for_log(char) == char] == []


@pytest.mark.parametrize("forged", FORGERIES)
def test_json_lines_are_one_line_and_keep_the_values_whole(forged: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    record = AccessRecord("GET", forged, time.perf_counter(), status=401, user=forged)

    record.emit()

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n")
    line = err.removesuffix("\n")
    assert line.splitlines() == [line]  # no separator any reader splits lines at (NEL, U+2028, U+2029...)
    assert not any(char in line for char in _ACTED_ON)
    entry = json.loads(line)
    assert entry["path"] == forged
    assert entry["user"] == forged


def test_values_quoted_for_the_log_are_not_escaped_twice(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")

    RateLimitedWarnings().warn("k", "refused the user id %s", loggable("evil\nline"))

    assert capsys.readouterr().err.rstrip("\n").endswith("refused the user id 'evil\\nline'")


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("value", ["6651f0c2a1b2c3d4e5f60718", "zoë@example.com", "'\\xe9'", *FORGERIES])
def test_the_access_line_is_the_same_written_directly_or_through_logging(
    log_format: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written straight to the handler while logging is as configure_logging left it, and through
    # logging's records otherwise (here: a filter on the handler): the same bytes either way.
    monkeypatch.setattr(time, "time", lambda: 1764849600.5678)
    monkeypatch.setattr(time, "time_ns", lambda: 1764849600567800000)
    monkeypatch.setattr(time, "perf_counter", lambda: 1000.0)
    configure_logging("INFO", log_format)
    record = AccessRecord("POST", "/v1/" + value, 999.98765, status=200, user=value)
    record.attribution, record.trace_id, record.request_id = "resolved:found", value, value

    record.emit()
    direct = capsys.readouterr().err
    logging.getLogger().handlers[0].addFilter(lambda _: True)
    record.emit()
    through_logging = capsys.readouterr().err

    assert direct == through_logging
    assert direct.count("\n") == 1


def test_the_quick_check_for_plain_text_escapes_exactly_what_the_pattern_does() -> None:
    for code in range(0x300):
        text = f"a{chr(code)}b"
        expected = _UNSAFE_IN_A_LINE.sub(_escape, text)
        assert escape_for_log(text) == expected, hex(code)
