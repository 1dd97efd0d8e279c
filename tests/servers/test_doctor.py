"""`doctor`: one line per check, a verdict and what to change; non-zero exit when a check fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from portkey_user_proxy.operations.cli import main
from portkey_user_proxy.operations.exit_codes import ExitCode
from tests.support.chat_webhook import ChatWebhook
from tests.support.fixtures import load_fixture
from tests.support.mongo import RealMongo, StandInMongo, needs_stand_in
from tests.support.servers import Upstream, unused_port

pytestmark = pytest.mark.usefixtures("restore_logging")  # `main` sets up logging as a process would


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mongo: StandInMongo | RealMongo, upstream: Upstream
) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", mongo.uri)
    monkeypatch.setenv("PORTKEY_URL", upstream.url)
    monkeypatch.setenv("PORTKEY_API_KEY", "pk-doctor-secret-0123")
    monkeypatch.setenv("PORTKEY_PROVIDER", "@openai-prod")
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "2")
    return monkeypatch


def verdicts(output: str) -> dict[str, str]:
    """Check name -> verdict, from the lines that start with one."""
    found = {}
    for line in output.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("ok", "warn", "FAIL", "skip"):
            found[rest.strip()[:20].strip()] = verdict
    return found


def test_a_sound_set_up_passes_every_check(environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.OK
    assert set(verdicts(output).values()) == {"ok"}
    assert "holds 1 user(s)" in output
    assert "answered HTTP" in output
    assert "PORTKEY_PROVIDER=@openai-prod" in output  # the `portkey routing` check
    assert "pk-doctor-secret-0123" not in output
    assert "groups collection" not in verdicts(output)  # TEAM_METADATA_KEY unset: `groups` is never read
    assert output.rstrip().endswith("every check passed")


def test_doctor_leads_with_its_verdicts_and_lists_settings_on_request(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    # A title, then verdicts only: nothing to scroll past before the first check.
    assert all(line.split(" ", 1)[0] in ("ok", "warn", "FAIL", "skip") for line in lines[1:-1])
    assert not any("PORTKEY_API_KEY=" in line for line in lines)

    main(["doctor", "--settings"])
    lines = capsys.readouterr().out.splitlines()
    listed = lines.index("effective settings (secrets hidden):")
    assert max(index for index, line in enumerate(lines) if line.split(" ", 1)[0] == "ok") < listed
    assert "      PORTKEY_API_KEY=(set, hidden)" in lines[listed:]
    assert "pk-doctor-secret-0123" not in "\n".join(lines)
    assert lines[-1] == "every check passed"


def test_doctor_says_which_env_file_it_read(
    environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor"])
    assert f"ok    settings from        no .env in {tmp_path}" in capsys.readouterr().out

    (tmp_path / ".env").write_text("UNRESOLVED_USER_POLICY=fail-open\n")
    main(["doctor"])
    assert f"ok    settings from        {tmp_path / '.env'} read" in capsys.readouterr().out


@pytest.mark.parametrize(("url_path", "verdict"), [("/v1", "warn"), ("", "ok")])
def test_doctor_checks_that_portkey_url_does_not_end_in_v1(
    environment: pytest.MonkeyPatch, upstream: Upstream, capsys: pytest.CaptureFixture[str], url_path: str, verdict: str
) -> None:
    environment.setenv("PORTKEY_URL", upstream.url + url_path)

    main(["doctor"])

    output = capsys.readouterr().out
    assert verdicts(output)["portkey url"] == verdict
    assert ("would reach .../v1/v1" in output) is (verdict == "warn")


def test_teams_on_check_that_groups_can_be_read(
    environment: pytest.MonkeyPatch, mongo: StandInMongo | RealMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    for group in load_fixture("librechat_groups.json"):
        mongo.add_group(group)
    environment.setenv("TEAM_METADATA_KEY", "team")
    environment.setenv("TEAM_GROUPS", "engineering,Finance")

    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.OK
    assert verdicts(output)["groups collection"] == "ok"
    assert "groups holds 2 group(s)" in output
    assert verdicts(output)["team lookup"] == "ok"
    assert "a sample user's groups read as each lookup reads them: is in a team" in output


@needs_stand_in()
def test_teams_on_fail_when_groups_cannot_be_read(
    environment: pytest.MonkeyPatch, mongo: StandInMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    mongo.add_group(load_fixture("librechat_groups.json")[0])
    mongo.refused_collections.add("groups")
    environment.setenv("TEAM_METADATA_KEY", "team")

    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.CHECKS_FAILED
    found = verdicts(output)
    assert found["users collection"] == "ok"
    assert found["groups collection"] == "FAIL"
    assert found["team lookup"] == "skip"
    assert "code 13 Unauthorized" in output
    assert "MONGO_URI needs a user" in output


def test_teams_on_warn_when_there_are_no_groups(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("TEAM_METADATA_KEY", "team")

    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.OK
    assert verdicts(output)["groups collection"] == "warn"
    assert "unset TEAM_METADATA_KEY" in output


def test_team_groups_no_group_is_called_are_named(
    environment: pytest.MonkeyPatch, mongo: StandInMongo | RealMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    for group in load_fixture("librechat_groups.json"):
        mongo.add_group(group)
    environment.setenv("TEAM_METADATA_KEY", "team")
    environment.setenv("TEAM_GROUPS", "Engineering,Finanse")

    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.OK
    assert verdicts(output)["groups collection"] == "warn"
    assert "is called Finanse (TEAM_GROUPS)" in output


@needs_stand_in()
def test_mongodb_refusing_reads_fails_the_authorised_check(
    environment: pytest.MonkeyPatch, mongo: StandInMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    mongo.refuse_reads = True

    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.CHECKS_FAILED
    found = verdicts(output)
    assert found["mongodb reachable"] == "ok"
    assert found["mongodb authorised"] == "FAIL"
    assert found["users collection"] == "skip"
    assert "code 13 Unauthorized" in output
    assert "MONGO_URI needs a user" in output


@needs_stand_in()
def test_wrong_credentials_fail_without_being_shown(
    environment: pytest.MonkeyPatch, mongo: StandInMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("MONGO_URI", mongo.uri.replace("mongodb://", "mongodb://reader:mongo-secret@"))

    code = main(["doctor"])

    captured = capsys.readouterr()
    assert code == ExitCode.CHECKS_FAILED
    assert verdicts(captured.out)["mongodb authorised"] == "FAIL"
    assert "AuthenticationFailed" in captured.out
    for secret in ("mongo-secret", "reader"):
        assert secret not in captured.out + captured.err


def test_a_wrong_database_name_fails_the_users_check(
    environment: pytest.MonkeyPatch, mongo: StandInMongo | RealMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    head, _, options = mongo.uri.partition("?")
    environment.setenv("MONGO_URI", head.rsplit("/", 1)[0] + "/librechat_typo" + (f"?{options}" if options else ""))

    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.CHECKS_FAILED
    assert verdicts(output)["users collection"] == "FAIL"
    assert "librechat_typo.users is empty or absent" in output


def test_unreachable_services_fail_and_missing_defaults_warn(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")
    environment.setenv("PORTKEY_URL", f"http://127.0.0.1:{unused_port()}")
    environment.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.3")
    environment.delenv("PORTKEY_API_KEY")
    environment.delenv("PORTKEY_PROVIDER")

    code = main(["doctor"])

    output = capsys.readouterr().out
    found = verdicts(output)
    assert code == ExitCode.CHECKS_FAILED
    assert found["mongodb reachable"] == "FAIL"
    assert found["sample user email"] == "skip"
    assert found["portkey reachable"] == "FAIL"
    assert found["portkey api key"] == "warn"
    assert found["portkey routing"] == "warn"
    assert "check PORTKEY_URL" in output
    assert output.rstrip().endswith("2 check(s) failed, 2 with a warning to read")


def test_passing_with_a_warning_says_so_in_the_summary(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.delenv("PORTKEY_PROVIDER")  # works when librechat.yaml routes: a warning, not a failure

    code = main(["doctor"])

    output = capsys.readouterr().out
    assert code == ExitCode.OK
    assert verdicts(output)["portkey routing"] == "warn"
    assert output.rstrip().endswith("every check passed, 1 with a warning to read")


@pytest.mark.parametrize(
    "uri",
    [
        # `;` separates options as `&` does, and the `/` before the options is optional.
        "mongodb://u:p@127.0.0.1:{port}/LibreChat?authSource=admin;appName=x;tlsCertificateKeyFilePassword=topsecret",
        "mongodb://u:p@127.0.0.1:{port}?tls=true&tlsCertificateKeyFilePassword=topsecret",
    ],
)
def test_doctor_settings_never_show_a_secret_option(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    environment.setenv("MONGO_URI", uri.format(port=unused_port()))
    environment.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.2")  # nothing listens there: the check fails fast

    main(["doctor", "--settings"])

    output = capsys.readouterr().out
    assert "topsecret" not in output
    assert "tlsCertificateKeyFilePassword=(hidden)" in output
    assert "(credentials hidden)@127.0.0.1" in output


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        ("pc-librechat-1a2b3c", "PORTKEY_CONFIG=pc-librechat-1a2b3c"),
        ('{"provider":"openai","api_key":"sk-provider-secret-0123"}', "PORTKEY_CONFIG=(inline config, hidden)"),
    ],
)
def test_doctor_shows_a_config_id_and_hides_an_inline_config(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config: str, shown: str
) -> None:
    # An inline config holds the provider's API key; a saved config's id is what the admin looks for.
    environment.delenv("PORTKEY_PROVIDER")
    environment.setenv("PORTKEY_CONFIG", config)

    main(["doctor", "--settings"])

    output = capsys.readouterr().out
    assert "sk-provider-secret-0123" not in output
    assert output.count(shown) == 2  # the settings and the `portkey routing` check


def test_doctor_settings_escape_what_a_terminal_would_act_on(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A value pasted into .env can carry a control or a bidi override that would rewrite the listing.
    environment.setenv("MONGO_URI", f"mongodb://127.0.0.1:{unused_port()}/LibreChat")
    environment.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.2")  # nothing listens there: the check fails fast
    environment.setenv("TEAM_GROUPS", "Sales\u202e\x1b[2J")

    main(["doctor", "--settings"])

    output = capsys.readouterr().out
    assert "\u202e" not in output and "\x1b" not in output
    assert "TEAM_GROUPS=Sales\\u202e\\x1b[2J" in output


def test_webhook_test_sends_one_message_and_says_what_the_webhook_answered(
    environment: pytest.MonkeyPatch, chat_webhook: ChatWebhook, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("BUDGET_WEBHOOK_URL", chat_webhook.url)

    assert main(["doctor", "--webhook-test", "--settings"]) == ExitCode.OK

    output = capsys.readouterr().out
    host = chat_webhook.url.split("/services/")[0]
    assert f"ok    budget webhook       {host}/(hidden) answered HTTP 200 (ok) to a test message in " in output
    assert "      BUDGET_WEBHOOK_URL=(set, hidden)" in output
    assert "webhook-secret-path" not in output
    assert len(chat_webhook.bodies) == 1
    assert chat_webhook.bodies[0]["test"] is True
    assert "doctor --webhook-test" in chat_webhook.bodies[0]["text"]


def test_webhook_test_fails_when_the_webhook_refuses_or_cannot_be_reached(
    environment: pytest.MonkeyPatch, chat_webhook: ChatWebhook, capsys: pytest.CaptureFixture[str]
) -> None:
    chat_webhook.statuses = [404]
    chat_webhook.answer_body = b"no_service"
    environment.setenv("BUDGET_WEBHOOK_URL", chat_webhook.url)

    assert main(["doctor", "--webhook-test"]) == ExitCode.CHECKS_FAILED

    output = capsys.readouterr().out
    assert "/(hidden) answered HTTP 404 (no_service) to a test message: check BUDGET_WEBHOOK_URL" in output
    assert "FAIL  budget webhook" in output

    environment.setenv("BUDGET_WEBHOOK_URL", f"http://127.0.0.1:{unused_port()}/services/webhook-secret-path")
    assert main(["doctor", "--webhook-test"]) == ExitCode.CHECKS_FAILED
    output = capsys.readouterr().out
    assert "FAIL  budget webhook" in output and "/(hidden) did not answer (ConnectError" in output
    assert "webhook-secret-path" not in output


def test_doctor_sends_nothing_to_the_webhook_unless_asked(
    environment: pytest.MonkeyPatch, chat_webhook: ChatWebhook, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("BUDGET_WEBHOOK_URL", chat_webhook.url)

    main(["doctor"])

    output = capsys.readouterr().out
    assert "warn  budget webhook" in output and "BUDGETS_FILE is unset, so there is no budget to warn about" in output
    assert chat_webhook.bodies == []

    environment.delenv("BUDGET_WEBHOOK_URL")
    assert main(["doctor", "--webhook-test"]) == ExitCode.CHECKS_FAILED
    assert (
        "FAIL  budget webhook       BUDGET_WEBHOOK_URL is unset: there is no webhook to test" in capsys.readouterr().out
    )
