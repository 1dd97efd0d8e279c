"""`export-users` writes every LibreChat user with their team as CSV; `check-user` shows the team."""

from __future__ import annotations

import asyncio
import csv
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from portkey_user_proxy.attribution.teams import TeamChoice
from portkey_user_proxy.operations.cli import main
from portkey_user_proxy.operations.exit_codes import ExitCode
from portkey_user_proxy.operations.export import HEADER, TeamIndex
from tests.support.fixtures import load_fixture
from tests.support.librechat import ADA, ADA_ON_ENTRA, NOBODY, TIM, group_document, teams_of, user_document
from tests.support.mongo import RealMongo, StandInMongo, needs_stand_in

pytestmark = [
    pytest.mark.usefixtures("restore_logging"),  # the CLI sets up logging as a process would
    pytest.mark.real_mongo,  # CI runs the export on a real MongoDB too
]

Mongo = StandInMongo | RealMongo


@pytest.fixture
def librechat(mongo: Mongo, librechat_user: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Mongo:
    """LibreChat's users (local, Entra, in no group) and groups; the CLI pointed at them, teams on."""
    mongo.add_user(
        user_document(librechat_user, ADA, "ada@corp.example", idOnTheSource=ADA_ON_ENTRA, provider="openid")
    )
    mongo.add_user(user_document(librechat_user, NOBODY, "nobody@email.com"))
    for group in load_fixture("librechat_groups.json"):
        mongo.add_group(group)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", mongo.uri)
    monkeypatch.setenv("TEAM_METADATA_KEY", "team")
    return mongo


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, str]]:
    assert main(["export-users", *args]) == 0
    captured = capsys.readouterr()
    lines = list(csv.reader(io.StringIO(captured.out, newline="")))
    assert tuple(lines[0]) == HEADER
    assert captured.err.strip() == f"exported {len(lines) - 1} users"
    return [dict(zip(HEADER, line, strict=True)) for line in lines[1:]]


def test_an_empty_export_names_the_database_it_read(
    mongo: Mongo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A MONGO_URI naming another database reads no users: the admin must learn where it looked.
    mongo.reset()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", mongo.uri)

    assert main(["export-users"]) == ExitCode.OK
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [",".join(HEADER)]
    database = mongo.uri.split("?")[0].rsplit("/", 1)[1]
    assert "exported 0 users: " in captured.err
    assert f"/{database} holds no users; is that LibreChat's database?" in captured.err


@pytest.mark.usefixtures("librechat")
def test_every_user_is_one_row_with_their_team(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _export(capsys)

    assert [row["id"] for row in rows] == sorted([TIM, ADA, NOBODY])
    by_id = {row["id"]: row for row in rows}
    assert by_id[TIM] == {
        "id": TIM,
        "email": "timmanik@email.com",
        "name": "Tim Manik",
        "username": "timmanik",
        "role": "USER",
        "provider": "local",
        "team": "Engineering",
    }
    assert (by_id[ADA]["provider"], by_id[ADA]["team"]) == ("openid", "Engineering")
    assert by_id[NOBODY]["team"] == ""


@pytest.mark.usefixtures("librechat")
def test_team_groups_apply_to_the_export(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEAM_METADATA_KEY")  # TEAM_GROUPS alone asks for teams in the export
    monkeypatch.setenv("TEAM_GROUPS", "Finance")

    teams = {row["id"]: row["team"] for row in _export(capsys)}

    assert teams == {TIM: "Finance", ADA: "", NOBODY: ""}


def test_cells_a_spreadsheet_would_run_as_formulas_are_made_inert(
    librechat: Mongo, librechat_user: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "bbbbbbbbbbbbbbbbbbbbbbbb"
    name = '=HYPERLINK("http://evil.example","click")'
    librechat.add_user({**user_document(librechat_user, hostile, "h@email.com"), "name": name, "username": "-1+1"})

    escaped = {row["id"]: row for row in _export(capsys)}[hostile]
    raw = {row["id"]: row for row in _export(capsys, "--raw")}[hostile]

    assert (escaped["name"], escaped["username"]) == ("'" + name, "'-1+1")
    assert (raw["name"], raw["username"]) == (name, "-1+1")


def test_users_beyond_one_batch_are_all_written_in_order(
    librechat: Mongo, librechat_user: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    extra = [f"{n:024x}" for n in range(1, 2501)]
    for object_id in extra:
        librechat.add_user(user_document(librechat_user, object_id, f"u{object_id}@email.com"))

    ids = [row["id"] for row in _export(capsys)]

    assert ids == sorted([TIM, ADA, NOBODY, *extra])


def test_export_that_cannot_read_mongodb_writes_nothing_and_says_why(
    own_mongo: StandInMongo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", own_mongo.uri)
    own_mongo.refuse_reads = True  # a MongoDB user without read access to LibreChat's database

    assert main(["export-users"]) == ExitCode.MONGO_UNAUTHORIZED
    captured = capsys.readouterr()
    assert captured.out == ""  # no header and no rows: nothing that could pass for a (short) export
    assert f"MongoDB at {own_mongo.uri.removeprefix('mongodb://')}: unauthorized reading `users`;" in captured.err
    assert "MONGO_URI" in captured.err


@needs_stand_in()
def test_without_teams_the_export_never_reads_groups(
    librechat: StandInMongo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A MongoDB user allowed to read `users` alone is enough when no team is wanted.
    monkeypatch.delenv("TEAM_METADATA_KEY")
    librechat.refused_collections.add("groups")

    rows = _export(capsys)

    assert [row["team"] for row in rows] == ["", "", ""]


@needs_stand_in()
def test_export_that_cannot_read_groups_names_groups(
    librechat: StandInMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    librechat.refused_collections.add("groups")

    assert main(["export-users"]) == ExitCode.MONGO_UNAUTHORIZED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unauthorized reading `groups` for the team column" in captured.err
    assert "reading `users`" not in captured.err


def test_export_that_fails_half_way_says_after_how_many_users(
    own_mongo: StandInMongo,
    librechat_user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", own_mongo.uri)
    for n in range(1, 1501):
        own_mongo.add_user(user_document(librechat_user, f"{n:024x}", f"u{n}@email.com"))
    own_mongo.refuse_more = True

    assert main(["export-users"]) == ExitCode.MONGO_UNAUTHORIZED
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1 + 1000  # the header and the first batch
    assert "unauthorized reading `users` (stopped after 1000 users: the output is incomplete)" in captured.err


def test_the_export_and_the_proxy_agree_on_every_users_team(
    librechat: Mongo, librechat_user: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tenants = {"dddddddddddddddddddddddd": "corp", "eeeeeeeeeeeeeeeeeeeeeeee": "acme"}
    for object_id, tenant in tenants.items():
        librechat.add_user(user_document(librechat_user, object_id, f"{tenant}@email.com", tenantId=tenant))
    librechat.add_group(group_document("Corp team", *tenants, tenantId="corp"))
    librechat.add_group(group_document("aardvarks", TIM, ADA))  # ADA is listed by source id: not a member

    exported = {row["id"]: row["team"] or None for row in _export(capsys)}
    ids = sorted(exported)
    looked_up = dict(zip(ids, asyncio.run(teams_of(librechat, *ids)), strict=True))

    assert exported == looked_up
    assert exported[TIM] == "aardvarks"


def test_a_members_best_group_wins_whatever_order_groups_come_in() -> None:
    groups = [group_document("Sales", TIM), group_document("Finance", TIM), group_document("Engineering", TIM)]
    for ordering in (groups, groups[::-1]):
        index = TeamIndex(TeamChoice(["Finance", "Sales"]))
        for group in ordering:
            index.add(group)
        assert index.team_of({"_id": ObjectId(TIM)}) == "Finance"


# --- check-user -------------------------------------------------------------------------------


@pytest.mark.usefixtures("librechat")
def test_check_user_shows_the_team_even_when_it_is_not_sent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEAM_METADATA_KEY")

    assert main(["check-user", TIM]) == 0

    output = capsys.readouterr().out
    assert "team:               Engineering (not sent: TEAM_METADATA_KEY is unset)" in output
    assert '"team"' not in output.split("x-portkey-metadata:", 1)[1]


@pytest.mark.usefixtures("librechat")
def test_check_user_shows_the_team_it_sends(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_METADATA_KEY", "team")

    assert main(["check-user", "ada@corp.example"]) == 0

    output = capsys.readouterr().out
    assert "team:               Engineering (TEAM_METADATA_KEY=team)" in output
    assert '"team":"Engineering"' in output.split("x-portkey-metadata:", 1)[1]


def _main_within(seconds: float, argv: list[str]) -> int:
    """`main(argv)`'s exit code; fails the test, instead of hanging it, when the command has not ended in time."""
    result: list[int] = []
    command = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    command.start()
    command.join(timeout=seconds)
    assert not command.is_alive(), f"{argv[0]} still waiting after {seconds} s"
    return result[0]


@pytest.mark.parametrize(
    ("frozen", "reading"),
    [("find", "`users`"), ("getMore", "`users` (stopped after 1000 users: the output is incomplete)")],
)
def test_export_from_a_mongodb_that_stops_answering_ends_and_says_so(
    own_mongo: StandInMongo,
    librechat_user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    frozen: str,
    reading: str,
) -> None:
    # The server answers `hello` (so the driver sees it up) and then never answers the read.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGO_URI", own_mongo.uri)
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.05")  # each batch is given ten of these
    for n in range(1, 1501):
        own_mongo.add_user(user_document(librechat_user, f"{n:024x}", f"u{n}@email.com"))
    own_mongo.unanswered.add(frozen)

    assert _main_within(15, ["export-users"]) == ExitCode.MONGO_UNAVAILABLE
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == (0 if frozen == "find" else 1 + 1000)
    assert f": timeout reading {reading};" in captured.err


@needs_stand_in()
def test_export_whose_groups_read_stops_answering_names_groups(
    librechat: StandInMongo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "0.05")
    librechat.unanswered.add("find")

    assert _main_within(15, ["export-users"]) == ExitCode.MONGO_UNAVAILABLE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "timeout reading `groups` for the team column" in captured.err
