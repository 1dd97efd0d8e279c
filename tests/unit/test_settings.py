from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import pytest

from portkey_user_proxy.attribution.decision import UnresolvedUserPolicy
from portkey_user_proxy.settings import Settings, SettingsError, load_settings

PASSWORD = "S3cretPassw0rd"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the machine's environment or a stray `.env` reaches these tests."""
    fields = set(Settings.model_fields)
    for name in list(os.environ):
        if name.lower() in fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = load_settings()

    assert settings.portkey_url == "https://api.portkey.ai"
    assert settings.mongo_uri == "mongodb://127.0.0.1:27017/LibreChat"
    assert settings.user_id_header == "x-librechat-user-id"
    assert settings.unresolved_user_policy is UnresolvedUserPolicy.FAIL_OPEN
    assert settings.include_stream_usage is True
    assert settings.user_lookup_timeout_seconds == 1.0
    assert settings.user_cache_ttl_seconds == 600.0
    assert settings.unknown_user_cache_ttl_seconds == 60.0
    assert settings.user_cache_max_entries == 100_000
    assert settings.upstream_connect_timeout_seconds == 10.0
    assert settings.upstream_read_timeout_seconds == 600.0
    assert settings.shutdown_grace_seconds == 30.0
    assert settings.max_request_body_bytes == 64 * 1024 * 1024
    assert settings.web_concurrency == 1
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PORTKEY_URL", "http://portkey-gateway:8787", "http://portkey-gateway:8787"),
        ("MONGO_URI", f"mongodb://librechat:{PASSWORD}@mongodb:27017/LibreChat", None),
        ("MONGO_URI", "mongodb+srv://cluster0.example.net/LibreChat", None),
        ("USER_ID_HEADER", "X-LibreChat-User", "x-librechat-user"),
        ("UNRESOLVED_USER_POLICY", "fail-closed", UnresolvedUserPolicy.FAIL_CLOSED),
        ("INCLUDE_STREAM_USAGE", "false", False),
        ("USER_CACHE_TTL_SECONDS", "120", 120.0),
        ("UNKNOWN_USER_CACHE_TTL_SECONDS", "5", 5.0),
        ("USER_CACHE_MAX_ENTRIES", "10", 10),
        ("USER_LOOKUP_TIMEOUT_SECONDS", "0.25", 0.25),
        ("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "3", 3.0),
        ("UPSTREAM_READ_TIMEOUT_SECONDS", "1800", 1800.0),
        ("UPSTREAM_READ_TIMEOUT_SECONDS", "86400", 86400.0),  # the upper bounds themselves
        ("USER_LOOKUP_TIMEOUT_SECONDS", "60", 60.0),
        ("USER_CACHE_TTL_SECONDS", "2592000", 2592000.0),
        ("SHUTDOWN_GRACE_SECONDS", "0", 0.0),
        ("MAX_REQUEST_BODY_BYTES", "1048576", 1_048_576),
        ("WEB_CONCURRENCY", "4", 4),
        ("WEB_CONCURRENCY", "64", 64),
        ("LOG_LEVEL", "debug", "DEBUG"),
    ],
)
def test_environment_variables_are_read(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    settings = load_settings()

    assert getattr(settings, variable.lower()) == (value if expected is None else expected)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORTKEY_URL", "api.portkey.ai"),
        ("PORTKEY_URL", "ftp://api.portkey.ai"),
        ("PORTKEY_URL", "https://"),
        ("PORTKEY_URL", "https://api.portkey.ai?debug=1"),
        ("PORTKEY_URL", "https://api.portkey.ai/#top"),
        # Each passed, then stopped every command with a traceback when the client was built or connected.
        ("PORTKEY_URL", "http://127.0.0.1:abc"),
        ("PORTKEY_URL", "http://127.0.0.1:99999"),
        ("PORTKEY_URL", "http://127.0.0.1:0"),
        ("PORTKEY_URL", "http://[::1"),
        ("MONGO_URI", "postgres://db/LibreChat"),
        ("MONGO_URI", "127.0.0.1:27017/LibreChat"),
        ("USER_ID_HEADER", ""),
        ("USER_ID_HEADER", "x librechat user"),
        ("USER_ID_HEADER", "x-user:id"),
        # ASGI servers hand over ASCII header names only, and the proxy encodes this one as such.
        ("USER_ID_HEADER", "x-benutzer-\u20ac"),
        ("UNRESOLVED_USER_POLICY", "sometimes"),
        ("INCLUDE_STREAM_USAGE", "maybe"),
        ("USER_CACHE_TTL_SECONDS", "0"),
        ("USER_CACHE_TTL_SECONDS", "ten"),
        ("UNKNOWN_USER_CACHE_TTL_SECONDS", "-1"),
        ("USER_CACHE_MAX_ENTRIES", "0"),
        ("USER_CACHE_MAX_ENTRIES", "1.5"),
        ("USER_LOOKUP_TIMEOUT_SECONDS", "0"),
        ("USER_LOOKUP_TIMEOUT_SECONDS", "-0.5"),
        ("USER_LOOKUP_TIMEOUT_SECONDS", "1s"),
        ("USER_LOOKUP_TIMEOUT_SECONDS", "nan"),
        # A lookup must be bounded in time; the MongoDB client's millisecond timeouts cannot be infinite.
        ("USER_LOOKUP_TIMEOUT_SECONDS", "inf"),
        # Upper bounds: pymongo refuses timeouts of 1e9 ms and more, and no set-up waits for days.
        ("USER_LOOKUP_TIMEOUT_SECONDS", "1000000"),
        ("USER_LOOKUP_TIMEOUT_SECONDS", "61"),
        ("USER_CACHE_TTL_SECONDS", "1e12"),
        ("UNKNOWN_USER_CACHE_TTL_SECONDS", "2592001"),
        ("UPSTREAM_READ_TIMEOUT_SECONDS", "1e300"),
        ("REQUEST_BODY_TIMEOUT_SECONDS", "86401"),
        ("SHUTDOWN_GRACE_SECONDS", "1e9"),
        ("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "0"),
        ("UPSTREAM_READ_TIMEOUT_SECONDS", "-1"),
        ("SHUTDOWN_GRACE_SECONDS", "-1"),
        # The server's graceful-shutdown timeout is a whole number of seconds.
        ("SHUTDOWN_GRACE_SECONDS", "inf"),
        ("MAX_REQUEST_BODY_BYTES", "100"),
        ("WEB_CONCURRENCY", "0"),
        # `serve` would fork that many processes until the machine ran out of memory.
        ("WEB_CONCURRENCY", "65"),
        ("WEB_CONCURRENCY", "100000"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_value_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert f"invalid setting {variable}:" in message
    assert "errors.pydantic.dev" not in message  # a readable line, not a validation dump


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
        "x-portkey-api-key",
        "x-portkey-metadata",
        "content-type",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
        "upgrade",
    ],
)
def test_user_id_header_refuses_a_header_that_carries_a_credential_or_the_request_itself(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # The proxy consumes the identity header: Authorization would never reach Portkey, and its
    # value would be logged as a refused user id.
    monkeypatch.setenv("USER_ID_HEADER", name)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith(f"invalid setting USER_ID_HEADER: must not be {name.lower()}: ")
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "url", [f"http://portkey:{PASSWORD}@gateway:8787", f"https://{PASSWORD}@api.portkey.ai", "https://:@api.portkey.ai"]
)
def test_portkey_url_refuses_credentials_and_never_shows_them(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    # They would be dropped: requests go to the transport, which never sends a URL's user:password.
    monkeypatch.setenv("PORTKEY_URL", url)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith("invalid setting PORTKEY_URL: must not carry credentials")
    assert "PORTKEY_API_KEY" in message
    assert PASSWORD not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("name", ["authorization", "x-api-key", "cookie", "content-type", "connection"])
def test_conversation_id_header_refuses_a_header_that_carries_a_credential_or_the_request_itself(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Its value becomes the trace id Portkey shows: an API key would be on display there.
    monkeypatch.setenv("CONVERSATION_ID_HEADER", name)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith(f"invalid setting CONVERSATION_ID_HEADER: must not be {name}: ")
    assert len(message.splitlines()) == 1


def test_conversation_id_header_must_differ_from_the_user_id_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_ID_HEADER", "x-librechat-ids")
    monkeypatch.setenv("CONVERSATION_ID_HEADER", "X-LibreChat-Ids")

    with pytest.raises(SettingsError, match="invalid setting CONVERSATION_ID_HEADER: must differ from USER_ID_HEADER"):
        load_settings()


def test_every_invalid_variable_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "-1")
    monkeypatch.setenv("UNRESOLVED_USER_POLICY", "never")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    lines = str(raised.value).splitlines()
    assert len(lines) == 2
    assert any("USER_LOOKUP_TIMEOUT_SECONDS" in line for line in lines)
    assert any("UNRESOLVED_USER_POLICY" in line for line in lines)


@pytest.mark.parametrize(
    "mongo_uri",
    [
        f"postgres://librechat:{PASSWORD}@db:5432/LibreChat",
        f"mongodb://librechat:{PASSWORD}@mongodb:99999/LibreChat",  # port out of range
        f"mongodb://librechat:{PASSWORD}@/LibreChat",  # no host
        # The classic mistake: a password holding '@' that is not percent-encoded.
        f"mongodb://librechat:{PASSWORD}@x@mongodb:27017/LibreChat",
    ],
)
def test_invalid_mongo_uri_is_rejected_without_showing_the_password(
    monkeypatch: pytest.MonkeyPatch, mongo_uri: str
) -> None:
    monkeypatch.setenv("MONGO_URI", mongo_uri)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "MONGO_URI" in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_password_of_a_valid_mongo_uri_is_not_shown_when_another_setting_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONGO_URI", f"mongodb://librechat:{PASSWORD}@mongodb:27017/LibreChat")
    monkeypatch.setenv("USER_CACHE_TTL_SECONDS", "0")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://api.portkey.ai/", "https://api.portkey.ai"),
        ("http://portkey-gateway:8787//", "http://portkey-gateway:8787"),
        ("https://gateway.example.com/portkey/", "https://gateway.example.com/portkey"),
    ],
)
def test_portkey_url_trailing_slash_is_stripped(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("PORTKEY_URL", value)

    assert load_settings().portkey_url == expected


@pytest.mark.parametrize("value", ["https://api.portkey.ai?", "https://api.portkey.ai/?"])
def test_portkey_url_never_keeps_an_empty_query(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    # Request paths are appended to PORTKEY_URL: a '?' left in it would turn them into a query.
    monkeypatch.setenv("PORTKEY_URL", value)

    try:
        portkey_url = load_settings().portkey_url
    except SettingsError as exc:
        assert "PORTKEY_URL" in str(exc)
    else:
        assert portkey_url == "https://api.portkey.ai"


@pytest.mark.parametrize("value", ["https://api.portkey.ai/v1", "https://api.portkey.ai/v1/", "http://gw:8787/v1"])
def test_portkey_url_ending_in_v1_logs_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv("PORTKEY_URL", value)

    with caplog.at_level(logging.WARNING, logger="portkey_user_proxy"):
        settings = load_settings()

    assert settings.portkey_url == value.rstrip("/")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "PORTKEY_URL" in warnings[0].getMessage()
    assert "/v1/v1" in warnings[0].getMessage()


@pytest.mark.parametrize("value", ["https://api.portkey.ai", "https://gw.example.com/v1beta", "https://v1.example.com"])
def test_portkey_url_without_v1_suffix_logs_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv("PORTKEY_URL", value)

    with caplog.at_level(logging.WARNING, logger="portkey_user_proxy"):
        load_settings()

    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# LibreChat's .env, with the proxy's settings appended\n"
        "OPENAI_API_KEY=user_provided\n"
        "PORTKEY_URL=http://portkey-gateway:8787\n"
        "MONGO_URI=mongodb://mongodb:27017/LibreChat\n"
        "UNRESOLVED_USER_POLICY=fail-closed\n"
    )

    settings = load_settings()

    assert settings.portkey_url == "http://portkey-gateway:8787"
    assert settings.mongo_uri == "mongodb://mongodb:27017/LibreChat"
    assert settings.unresolved_user_policy is UnresolvedUserPolicy.FAIL_CLOSED


def test_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORTKEY_URL=http://from-dotenv:8787\n")
    monkeypatch.setenv("PORTKEY_URL", "http://from-environment:8787")

    assert load_settings().portkey_url == "http://from-environment:8787"


def test_invalid_value_in_dotenv_is_rejected_naming_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("USER_LOOKUP_TIMEOUT_SECONDS=soon\n")

    with pytest.raises(SettingsError, match="USER_LOOKUP_TIMEOUT_SECONDS"):
        load_settings()


@pytest.mark.parametrize(
    ("mongo_uri", "reason"),
    [
        # Each passes the URI parser and used to stop every command with a traceback when the client was built.
        ("mongodb+srv://cluster0.example.net:27017/LibreChat", "must not include a port number"),
        (f"mongodb://reader:{PASSWORD}@mongodb/LibreChat?authMechanism=MONGODB-X509", "Passwords are not supported"),
        ("mongodb://mongodb/LibreChat?tls=true&tlsCAFile={missing}", "not readable"),
        ("mongodb://mongodb/LibreChat?tls=true&tlsCertificateKeyFile={missing}", "not readable"),
        ("mongodb://mongodb/LibreChat?maxPoolSize=1&minPoolSize=5", "minPoolSize"),
    ],
)
def test_mongo_uri_the_client_would_refuse_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mongo_uri: str, reason: str
) -> None:
    monkeypatch.setenv("MONGO_URI", mongo_uri.format(missing=tmp_path / "missing.pem"))

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith("invalid setting MONGO_URI: ")
    assert len(message.splitlines()) == 1
    assert reason in message
    assert PASSWORD not in message


@pytest.mark.parametrize("separator", ["&", ";"])  # pymongo separates options with either
def test_mongo_uri_error_that_quotes_a_secret_option_leaves_pymongo_words_out(
    monkeypatch: pytest.MonkeyPatch, separator: str
) -> None:
    # pymongo names an unknown auth property by its text: here the admin pasted a token in its place.
    monkeypatch.setenv(
        "MONGO_URI",
        f"mongodb://mongodb/LibreChat?authMechanism=MONGODB-AWS{separator}authMechanismProperties={PASSWORD}:x",
    )

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "invalid setting MONGO_URI: is not a valid MongoDB URI" in str(raised.value)
    assert PASSWORD not in str(raised.value)


@pytest.mark.skipif(
    importlib.util.find_spec("pymongo_auth_aws") is not None or importlib.util.find_spec("kerberos") is not None,
    reason="pymongo's auth extras are installed here",
)
@pytest.mark.parametrize(
    ("mongo_uri", "missing"),
    [
        (
            "mongodb://mongodb/LibreChat?authSource=$external&authMechanism=MONGODB-AWS",
            "authMechanism=MONGODB-AWS needs pymongo[aws]",
        ),
        (
            f"mongodb://reader:{PASSWORD}@mongodb/LibreChat?authMechanism=MONGODB-AWS",
            "authMechanism=MONGODB-AWS needs pymongo[aws]",
        ),
        (
            "mongodb://reader%40EXAMPLE.COM@mongodb/LibreChat?authMechanism=GSSAPI",
            "authMechanism=GSSAPI needs pymongo[gssapi]",
        ),
    ],
)
def test_mongo_uri_with_an_auth_mechanism_whose_package_is_missing_is_refused(
    monkeypatch: pytest.MonkeyPatch, mongo_uri: str, missing: str
) -> None:
    # pymongo builds the client, and fails only when it logs in: every lookup would fail.
    monkeypatch.setenv("MONGO_URI", mongo_uri)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith(f"invalid setting MONGO_URI: {missing}")
    assert "not installed" in message
    assert len(message.splitlines()) == 1
    assert PASSWORD not in message
