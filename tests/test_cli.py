"""`check-user` resolves a user exactly as the proxy would; bad settings stop with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portkey_user_proxy.cli import EXIT_BAD_SETTINGS, EXIT_MONGO_UNREACHABLE, EXIT_UNKNOWN_USER, main
from tests.mongo import RealMongo, StandInMongo
from tests.servers import unused_port

USER_ID = "6651f0c2a1b2c3d4e5f60718"


pytestmark = pytest.mark.usefixtures("restore_logging")  # these tests set up logging as a process would


@pytest.fixture
def librechat_env(monkeypatch: pytest.MonkeyPatch, mongo: StandInMongo | RealMongo, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", mongo.uri)


@pytest.mark.usefixtures("librechat_env")
@pytest.mark.parametrize("who", [USER_ID, "TimManik@Email.com"])
def test_check_user_prints_the_metadata_the_proxy_would_send(who: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check-user", who, "--metadata", '{"_environment":"production","team":"{{LIBRECHAT_USER_ROLE}}"}'])

    output = capsys.readouterr().out
    metadata = json.loads(output.split("x-portkey-metadata:", 1)[1])
    assert code == 0
    assert metadata == {"_environment": "production", "team": "USER", "_user": "timmanik@email.com"}


@pytest.mark.usefixtures("librechat_env")
@pytest.mark.parametrize("who", ["ffffffffffffffffffffffff", "nobody@example.com"])
def test_check_user_fails_for_unknown_users(who: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-user", who]) == EXIT_UNKNOWN_USER
    # Names where it looked: a wrong database in MONGO_URI looks exactly like an unknown user.
    assert "is not in the users collection at 127.0.0.1:" in capsys.readouterr().err


def test_check_user_fails_when_mongodb_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.3")

    assert main(["check-user", USER_ID]) == EXIT_MONGO_UNREACHABLE
    assert "MONGO_URI" in capsys.readouterr().err


def test_invalid_settings_stop_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "-1")

    assert main(["serve"]) == EXIT_BAD_SETTINGS
    assert "USER_LOOKUP_TIMEOUT_SECONDS" in capsys.readouterr().err
