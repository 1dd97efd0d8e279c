"""What the proxy logs while it reads its settings appears in the configured format: a JSON log is JSON
from its first line, in `serve` and in the debugging commands alike."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from portkey_user_proxy.observability.logs import StartupRecords, configure_logging
from tests.support.mongo import RealMongo, StandInMongo
from tests.support.servers import Upstream, unused_port

USER_ID = "6651f0c2a1b2c3d4e5f60718"


def _env(upstream: Upstream, mongo: StandInMongo | RealMongo) -> dict[str, str]:
    # A PORTKEY_URL ending in /v1 makes the settings log a warning as they are read.
    return {**os.environ, "PORTKEY_URL": upstream.url + "/v1", "MONGO_URI": mongo.uri, "LOG_FORMAT": "json"}


def _v1_warnings(lines: list[str]) -> list[dict[str, str]]:
    entries = [json.loads(line) for line in lines if line.strip()]  # fails on any line that is not JSON
    return [entry for entry in entries if "/v1/v1" in entry["message"]]


def test_a_debugging_command_logs_the_settings_warning_as_json(
    upstream: Upstream, mongo: StandInMongo | RealMongo, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "portkey_user_proxy", "check-user", USER_ID]
    done = subprocess.run(command, env=_env(upstream, mongo), cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    (warning,) = _v1_warnings(done.stderr.splitlines())
    assert warning["level"] == "WARNING"


def test_serve_logs_the_settings_warning_once_as_json(
    upstream: Upstream, mongo: StandInMongo | RealMongo, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(unused_port())]
    server = subprocess.Popen(command, env=_env(upstream, mongo), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert server.stderr is not None
        for line in server.stderr:
            lines.append(line)
            if "Application startup complete" in line:
                break
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    assert any("Application startup complete" in line for line in lines), lines
    assert len(_v1_warnings(lines)) == 1


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("level", "shown"), [("WARNING", True), ("ERROR", False)])
def test_held_records_appear_once_logging_is_set_up_and_obey_log_level(
    level: str, shown: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with StartupRecords() as startup:
        logging.getLogger("portkey_user_proxy").warning("read while the settings load")
    assert "read while the settings load" not in capsys.readouterr().err  # not yet: no format is known

    configure_logging(level, "json")
    startup.replay()

    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == (["read while the settings load"] if shown else [])
