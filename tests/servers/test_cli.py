"""`check-user` resolves a user exactly as the proxy would; bad settings stop with a clear message."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId

from portkey_user_proxy.operations.cli import EXIT_BAD_SETTINGS, EXIT_MONGO_UNREACHABLE, EXIT_UNKNOWN_USER, main
from portkey_user_proxy.operations.exit_codes import ExitCode
from tests.support.mongo import RealMongo, StandInMongo, needs_stand_in
from tests.support.servers import bound_socket, unused_port

USER_ID = "6651f0c2a1b2c3d4e5f60718"
OTHER_ID = "0123456789abcdef01234567"


pytestmark = [
    pytest.mark.usefixtures("restore_logging"),  # these tests set up logging as a process would
    pytest.mark.real_mongo,  # user lookups, as check-user makes them: CI runs them on a real MongoDB too
]


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
    err = capsys.readouterr().err
    assert "is not in the users collection at 127.0.0.1:" in err
    assert "is that LibreChat's database?" in err  # by id or by email alike


def test_check_user_fails_when_mongodb_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.3")

    assert main(["check-user", USER_ID]) == EXIT_MONGO_UNREACHABLE
    err = capsys.readouterr().err
    assert "MONGO_URI" in err
    assert err.count("MongoDB at ") == 1  # said once, by the command: no server-style warning of retries
    assert "asked again" not in err


def test_invalid_settings_stop_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "-1")

    assert main(["serve"]) == EXIT_BAD_SETTINGS
    assert "USER_LOOKUP_TIMEOUT_SECONDS" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["serve", "--port", "{taken}"], ["check-user", USER_ID], ["doctor"], ["export-users"]]
)
def test_a_mongo_uri_the_driver_refuses_stops_every_command_as_an_invalid_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    # The parser accepts it; the driver refused it later, with a traceback and exit 1 ("unknown user"),
    # and under WEB_CONCURRENCY=2 uvicorn restarted the failing workers for ever.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", "mongodb://reader:mongo-secret@mongodb/LibreChat?authMechanism=MONGODB-X509")
    monkeypatch.setenv("WEB_CONCURRENCY", "2")

    with bound_socket() as taken:  # were the settings passed, `serve` would stop at once, on the port
        code = main([part.format(taken=taken.getsockname()[1]) for part in command])

    assert code == EXIT_BAD_SETTINGS
    captured = capsys.readouterr()
    assert captured.err.startswith("invalid setting MONGO_URI: ")
    assert "mongo-secret" not in captured.out + captured.err


@pytest.mark.parametrize("command", [["serve", "--port", "{taken}"], ["doctor"]])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORTKEY_URL", "http://127.0.0.1:abc"),  # httpx refused it when the client was built
        ("PORTKEY_URL", "http://127.0.0.1:99999"),  # the connection refused it, in doctor and on each request
        ("PORTKEY_URL", "http://portkey:url-secret@127.0.0.1:8787"),  # the credentials were silently dropped
        # httpx refused these when the client was built (SOCKS needs httpx[socks], not installed), or on connecting.
        ("ALL_PROXY", "socks5://127.0.0.1:1080"),
        ("HTTPS_PROXY", "ftp://user:proxy-secret@127.0.0.1:21"),
        ("HTTPS_PROXY", "http://user:proxy-secret@127.0.0.1:99999"),
        ("USER_LOOKUP_TIMEOUT_SECONDS", "1000000"),  # pymongo refused it when the client was built
    ],
)
def test_a_start_up_value_the_clients_refuse_stops_serve_and_doctor_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: list[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):  # only the one given applies
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.2")
    monkeypatch.setenv(variable, value)

    with bound_socket() as taken:  # were the settings passed, `serve` would stop at once, on the port
        code = main([part.format(taken=taken.getsockname()[1]) for part in command])

    assert code == EXIT_BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.startswith(f"invalid setting {variable}: ")
    assert len(err.splitlines()) == 1
    assert "secret" not in err


def test_too_many_workers_is_an_invalid_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Checked with doctor, which never forks: `serve` would fork them all before anything else failed.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.2")
    monkeypatch.setenv("WEB_CONCURRENCY", "100000")

    assert main(["doctor"]) == EXIT_BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.startswith("invalid setting WEB_CONCURRENCY: ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("given_in", ["environment", ".env"])
@pytest.mark.parametrize("inside_a_file", [False, True])
def test_serve_with_a_metrics_directory_that_is_a_file_stops_naming_the_variable(
    tmp_path: Path, inside_a_file: bool, given_in: str
) -> None:
    (tmp_path / "metrics").write_text("")
    directory = str(tmp_path / "metrics" / "workers" if inside_a_file else tmp_path / "metrics")
    env = {**os.environ, "WEB_CONCURRENCY": "2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if given_in == "environment":
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:  # .env.example lists it: a value in .env counts as one in the environment
        (tmp_path / ".env").write_text(f"PROMETHEUS_MULTIPROC_DIR={directory}\n")
    command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(unused_port())]

    server = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        _, err = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it ignored the setting and serves: stop it and its workers
        server.terminate()
        server.communicate(timeout=30)
        raise AssertionError("serve started with an unusable PROMETHEUS_MULTIPROC_DIR") from None

    assert server.returncode == EXIT_BAD_SETTINGS
    assert err.startswith("invalid setting PROMETHEUS_MULTIPROC_DIR: ")
    assert len(err.splitlines()) == 1


def test_version_and_exit_codes_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.strip() == f"portkey-user-proxy {importlib.metadata.version('portkey-user-proxy')}"

    with pytest.raises(SystemExit):
        main(["--help"])
    assert listed_codes(capsys.readouterr().out) == set(ExitCode)


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        ("serve", {0, 2, 8, 64}),
        ("check-user", {0, 1, 2, 3, 4, 5, 6, 9, 64}),
        ("doctor", {0, 2, 7, 64}),
        ("export-users", {0, 2, 3, 4, 64}),
    ],
)
def test_each_commands_help_lists_the_exit_codes_it_can_return(
    capsys: pytest.CaptureFixture[str], command: str, codes: set[int]
) -> None:
    # `serve --help` listing "5 the user exists but has no email" sends a script's author astray.
    with pytest.raises(SystemExit):
        main([command, "--help"])

    assert listed_codes(capsys.readouterr().out) == codes


def listed_codes(help_text: str) -> set[int]:
    """The codes under `exit codes:` in a --help text."""
    section = help_text.split("exit codes:\n", 1)[1]
    return {
        int(line.split()[0]) for line in section.splitlines() if line.startswith("  ") and line.split()[0].isdigit()
    }


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_that_cannot_start_exits_with_its_own_code(
    mongo: StandInMongo | RealMongo, tmp_path: Path, workers: str
) -> None:
    # uvicorn's own code for this, 3, means "MongoDB unreachable" in this table: the admin would
    # look at MongoDB while the port is what is wrong.
    env = {**os.environ, "MONGO_URI": mongo.uri, "WEB_CONCURRENCY": workers}
    with bound_socket() as taken:
        command = [sys.executable, "-m", "portkey_user_proxy", "serve", "--port", str(taken.getsockname()[1])]
        done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == ExitCode.SERVER_NOT_STARTED
    assert "address already in use" in done.stderr.lower()
    assert "Traceback" not in done.stderr


def test_a_usage_error_exits_apart_from_an_invalid_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "-1")  # the command line is read first

    with pytest.raises(SystemExit) as usage:
        main(["check-user"])

    assert usage.value.code == ExitCode.USAGE != EXIT_BAD_SETTINGS
    assert "ID_OR_EMAIL" in capsys.readouterr().err


@pytest.mark.usefixtures("librechat_env")
@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (
            "{bad",
            "invalid --metadata: not valid JSON (Expecting property name enclosed in double quotes at character 2)",
        ),
        ('["team"]', "invalid --metadata: an array in JSON, not an object"),
        ("null", "invalid --metadata: null in JSON, not an object"),
    ],
)
def test_check_user_says_what_is_wrong_with_its_metadata_option(
    capsys: pytest.CaptureFixture[str], given: str, problem: str
) -> None:
    # About the command line the admin typed, not the proxy's words for a request's header ("replaced").
    assert main(["check-user", USER_ID, "--metadata", given]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(problem + "; give a JSON object")
    assert "replaced" not in err
    assert "x-portkey-metadata is not" not in err


def test_check_user_does_not_blame_mongodb_for_an_id_that_is_not_an_object_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")  # never asked

    assert main(["check-user", "alice"]) == ExitCode.NOT_AN_OBJECT_ID
    captured = capsys.readouterr()
    assert "not a LibreChat user id" in captured.err
    assert "MongoDB at" not in captured.err
    assert "attribution:        fallback (not_an_object_id)" in captured.out


@pytest.mark.parametrize(
    ("policy", "consequence", "metadata"),
    [
        ("fail-open", 'sends `_user` "unidentified"', '{"_user":"unidentified"}'),
        ("fail-closed", "refuses the request with 403", "- (not sent: UNRESOLVED_USER_POLICY=fail-closed"),
    ],
)
def test_check_user_says_what_a_request_naming_no_object_id_gets(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    policy: str,
    consequence: str,
    metadata: str,
) -> None:
    # The admin reads this to learn what Portkey will show: never the raw value, and nothing when refused.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")  # never asked
    monkeypatch.setenv("UNRESOLVED_USER_POLICY", policy)

    assert main(["check-user", "alice"]) == ExitCode.NOT_AN_OBJECT_ID
    captured = capsys.readouterr()
    assert consequence in captured.err
    assert "as it is" not in captured.err
    assert f"x-portkey-metadata: {metadata}" in captured.out


@pytest.mark.usefixtures("librechat_env")
def test_check_user_tells_a_user_without_email_from_an_unknown_user(
    mongo: StandInMongo | RealMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    mongo.add_user({"_id": ObjectId(OTHER_ID), "username": "no-email", "role": "USER"})

    assert main(["check-user", OTHER_ID]) == ExitCode.NO_EMAIL
    assert "exists at" in (err := capsys.readouterr().err) and "but has no email" in err


@needs_stand_in()
@pytest.mark.usefixtures("librechat_env")
def test_check_user_names_a_refusal_and_never_the_credentials(
    monkeypatch: pytest.MonkeyPatch, mongo: StandInMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONGO_URI", mongo.uri.replace("mongodb://", "mongodb://reader:mongo-secret@"))

    assert main(["check-user", USER_ID]) == ExitCode.MONGO_UNAUTHORIZED
    captured = capsys.readouterr()
    assert "unauthorized" in captured.err
    assert "MONGO_URI needs a user" in captured.err
    for secret in ("mongo-secret", "reader"):
        assert secret not in captured.out + captured.err


@pytest.mark.usefixtures("librechat_env")
@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("{{LIBRECHAT_USER_ID}}", "'{{LIBRECHAT_USER_ID}}' is a LibreChat placeholder that was never filled in"),
        ("", "no user id was given"),
        ("   ", "no user id was given"),
    ],
)
def test_check_user_names_a_missing_id_and_does_not_blame_mongodb(
    capsys: pytest.CaptureFixture[str], given: str, problem: str
) -> None:
    # What docs/troubleshooting.md sends an admin to check when `_user` is "unidentified".
    assert main(["check-user", given]) == ExitCode.NO_USER_ID
    err = capsys.readouterr().err
    assert err.startswith(problem)
    assert "MongoDB at" not in err
    assert "unreachable" not in err


@pytest.mark.usefixtures("librechat_env")
def test_check_user_escapes_what_it_read_from_mongodb(
    mongo: StandInMongo | RealMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    # Users choose their own email text in some set-ups, and group names come from a directory sync:
    # neither may send the admin's terminal control sequences.
    mongo.add_user({"_id": ObjectId(OTHER_ID), "email": "eve\x1b]0;pwned\x07@example.com", "role": "USER"})
    mongo.add_group({"name": "Sales\x1b[2J\u202e", "memberIds": [OTHER_ID], "source": "local"})

    assert main(["check-user", OTHER_ID]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "email:              'eve\\x1b]0;pwned\\x07@example.com'" in out
    assert "team:               'Sales\\x1b[2J\\u202e'" in out


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    # `portkey-user-proxy doctor | head -1`: the pipe closes while doctor is still writing.
    env = {**os.environ, "MONGO_URI": "mongodb://127.0.0.1:1/LibreChat", "USER_LOOKUP_TIMEOUT_SECONDS": "0.2"}
    env["PORTKEY_URL"] = "http://127.0.0.1:1"
    command = f"{shlex.quote(sys.executable)} -m portkey_user_proxy doctor --settings | head -c 1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.returncode == 141


@pytest.mark.usefixtures("librechat_env")
@pytest.mark.parametrize("around", ["\u2028", "\x85", "\r\n\x0b", "\u3000"])
@pytest.mark.parametrize("known", [False, True])
def test_check_user_escapes_the_argument_it_names(
    mongo: StandInMongo | RealMongo, capsys: pytest.CaptureFixture[str], around: str, known: bool
) -> None:
    # The id is read with the whitespace around it stripped; what the messages show is the argument as given.
    mongo.add_user({"_id": ObjectId(OTHER_ID), "username": "no-email", "role": "USER"})
    given = (OTHER_ID if known else "ffffffffffffffffffffffff") + around

    assert main(["check-user", given]) == (ExitCode.NO_EMAIL if known else EXIT_UNKNOWN_USER)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert output.isascii()
    assert not any(char in output for char in "\r\x0b")
    assert ascii(given) in captured.err  # shown escaped, so the admin sees what was there
