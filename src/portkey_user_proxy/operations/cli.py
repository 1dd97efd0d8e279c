"""Command line: `serve` runs the proxy, `check-user` shows how one user would be attributed, `doctor`
checks the set-up, `export-users` writes every LibreChat user as CSV, `budgets` shows the spend and
`budgets price` what a model costs, `budgets check` whether a budgets file is valid."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from pymongo.asynchronous.collection import AsyncCollection

from ..app import (
    ProxyApp,
    build_attributor,
    build_budgets,
    build_user_directory,
    create_app,
    team_choice,
    uvicorn_options,
)
from ..attribution.decision import Attribution, AttributionOutcome
from ..attribution.directory import UserDirectory, connect_users
from ..attribution.identity import identify
from ..attribution.teams import GROUPS_COLLECTION, USER_FIELDS, TeamFinder
from ..budgets import BudgetFileError, BudgetsFile, load_budget_file
from ..budgets.catalogue import Catalogue
from ..budgets.ledger import GroupsOf
from ..budgets.prices import PriceList
from ..mongodb.failures import MongoFailure, advice, classify, location
from ..observability.logs import StartupRecords, configure_logging, escape_for_log, loggable
from ..observability.worker_metrics import UnusableDirectory, shared_metrics
from ..settings import Settings, SettingsError, load_settings
from .budget_report import budgets_file_text, price_text, report_json, report_text
from .doctor import run_doctor
from .exit_codes import ExitCode, describe
from .export import BATCH_TIMEOUT_IN_LOOKUPS, UserExport

# The names earlier versions exported; the codes themselves live in exit_codes.py.
EXIT_UNKNOWN_USER = ExitCode.UNKNOWN_USER
EXIT_BAD_SETTINGS = ExitCode.BAD_SETTINGS
EXIT_MONGO_UNREACHABLE = ExitCode.MONGO_UNAVAILABLE


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader of the output left (`doctor | head`): nothing more to say, and no traceback.
        # Python would report the pipe again when it flushes stdout at exit: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # what a shell reports for a writer its reader left


def _run(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "budgets" and args.budgets_command == "check":
        return _check_budgets_file(Path(args.file))  # a file on its own: no setting is read
    budgets_problem: str | None = None
    try:
        with StartupRecords() as startup:
            settings = load_settings()
    except SettingsError as exc:
        if args.command != "doctor" or not _only_the_budgets_file(exc):
            print(exc, file=sys.stderr)
            return EXIT_BAD_SETTINGS
        # doctor reports an invalid budgets file as one failed check, and goes on with the others.
        budgets_problem = str(exc).removeprefix("invalid setting BUDGETS_FILE: ")
        with StartupRecords() as startup:
            settings = load_settings(budgets_file=None)
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        # Not here: each server process reads the settings again and says it once (app_factory).
        return _serve(settings, args.host, args.port)
    startup.replay()
    if args.command == "doctor":
        return asyncio.run(
            run_doctor(
                settings,
                show_settings=args.settings,
                webhook_test=args.webhook_test,
                budgets_problem=budgets_problem,
            )
        )
    if args.command == "export-users":
        return asyncio.run(_export_users(settings, raw=args.raw))
    if args.command == "budgets" and args.budgets_command == "price":
        return _price(settings, args.model, args.provider)
    if args.command == "budgets":
        return asyncio.run(_budgets(settings, as_json=args.json, top=args.top))
    return asyncio.run(_check_user(settings, args.user, args.metadata))


def _only_the_budgets_file(exc: SettingsError) -> bool:
    return all(line.startswith("invalid setting BUDGETS_FILE:") for line in str(exc).splitlines())


def app_factory() -> ProxyApp:
    """What each server process builds (uvicorn's worker processes start from here too)."""
    with StartupRecords() as startup:
        settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    startup.replay()
    app = create_app(settings)
    # Everything built so far lives as long as the process: keep it out of the collector's scans,
    # which otherwise stall streams for milliseconds at a time under load.
    gc.collect()
    gc.freeze()
    return app


def _serve(settings: Settings, host: str, port: int) -> int:
    try:
        with shared_metrics(settings.web_concurrency, settings.prometheus_multiproc_dir):
            return _serve_until_stopped(settings, host, port)
    except UnusableDirectory as exc:  # raised before any worker starts
        print(exc, file=sys.stderr)
        return ExitCode.BAD_SETTINGS


def _serve_until_stopped(settings: Settings, host: str, port: int) -> int:
    try:
        _run_server(settings, host, port)
    except SystemExit as exc:
        # uvicorn exits with 3 when it cannot start; 3 is MongoDB's code here, the wrong place to look.
        if exc.code not in (None, 0):
            return ExitCode.SERVER_NOT_STARTED
        raise
    return ExitCode.OK


def _run_server(settings: Settings, host: str, port: int) -> None:
    uvicorn.run(
        "portkey_user_proxy.operations.cli:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=settings.web_concurrency,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,  # the proxy writes its own access line, with the attributed user
        server_header=False,  # upstream's `server` and `date` pass through; no duplicates
        date_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
        proxy_headers=False,
        **uvicorn_options(settings),
    )


async def _check_user(settings: Settings, user: str, metadata: str | None) -> int:
    if metadata is not None and (problem := _metadata_option_problem(metadata)) is not None:
        print(f"invalid --metadata: {problem}; {_METADATA_EXAMPLE}", file=sys.stderr)
        return ExitCode.USAGE
    directory = build_user_directory(settings, teams=True, one_shot=True)
    print(f"mongodb:            {directory.location}")
    try:
        if "@" in user:
            try:
                found = await directory.find_by_email(user)
            except Exception as exc:  # any driver failure: the admin needs the cause, not a traceback
                return _mongo_failed(directory.failure_of(exc).kind, directory.location)
            if found is None:
                print(
                    f"the email {loggable(user)} is not in the users collection at {directory.location}: "
                    + _WHICH_DATABASE,
                    file=sys.stderr,
                )
                return ExitCode.UNKNOWN_USER
            user = found.id
        attributor = build_attributor(settings, directory)
        attribution = await attributor.attribute(identify(None, user))
    finally:
        await directory.close()
    header = attributor.metadata(metadata, attribution).header
    print(f"user id:            {_argument(user)}")
    print(f"attribution:        {attribution.outcome} ({attribution.reason})")
    print(f"email:              {_shown(attribution.fields.get('EMAIL', '-'))}")
    user_value = f"{_shown(attribution.user_value or '-')} (PORTKEY_USER_VALUE={settings.portkey_user_value})"
    print(f"_user sent:         {user_value}")
    print(f"team:               {_team_line(settings, attribution)}")
    print(f"x-portkey-metadata: {header if attribution.outcome is not AttributionOutcome.REJECTED else _REFUSED}")
    return _verdict(attribution, user, directory)


_METADATA_EXAMPLE = (
    "give a JSON object, as librechat.yaml's x-portkey-metadata header holds, e.g. "
    """--metadata '{"team":"{{LIBRECHAT_USER_ROLE}}"}'"""
)
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}


def _metadata_option_problem(text: str) -> str | None:
    """What is wrong with the --metadata argument, in words about the command line; None when it is usable."""
    if not text.strip():
        return None  # as a request without the header
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at character {exc.pos + 1})"
    except (ValueError, RecursionError):
        return "not valid JSON"
    if not isinstance(parsed, dict):
        return f"{_JSON_KINDS.get(type(parsed), 'null')} in JSON, not an object"
    return None


# Under fail-closed nothing goes to Portkey: showing the header a request would never carry misleads.
_REFUSED = "- (not sent: UNRESOLVED_USER_POLICY=fail-closed refuses the request)"

_UNIDENTIFIED = {
    AttributionOutcome.FALLBACK: 'and sends `_user` "unidentified" (UNRESOLVED_USER_POLICY=fail-open)',
    AttributionOutcome.REJECTED: "and refuses the request with 403 (UNRESOLVED_USER_POLICY=fail-closed)",
}
# Nobody found is most often a MONGO_URI naming another database than LibreChat's.
_WHICH_DATABASE = "is that LibreChat's database? (MONGO_URI names it after the host)"


def _verdict(attribution: Attribution, user: str, directory: UserDirectory) -> int:
    """The exit code for a check-user result, with what to change on stderr."""
    reason = attribution.reason
    if attribution.outcome is AttributionOutcome.RESOLVED:
        return ExitCode.OK
    if reason == "not_an_object_id":
        print(
            f"{loggable(user)} is not a LibreChat user id (24 hex characters): the proxy never asks MongoDB "
            f"about it, {_UNIDENTIFIED[attribution.outcome]}",
            file=sys.stderr,
        )
        return ExitCode.NOT_AN_OBJECT_ID
    if reason in ("placeholder", "no_identity"):
        given = (
            f"{loggable(user.strip())} is a LibreChat placeholder that was never filled in: a request carrying it"
            if reason == "placeholder"
            else "no user id was given (the argument is empty or blank): a request without one"
        )
        print(
            f"{given} names no user, so the proxy never asks MongoDB {_UNIDENTIFIED[attribution.outcome]}; "
            "give check-user a user id (24 hex characters) or an email",
            file=sys.stderr,
        )
        return ExitCode.NO_USER_ID
    if reason == "no_email":
        print(f"the user {_argument(user)} exists at {directory.location} but has no email", file=sys.stderr)
        return ExitCode.NO_EMAIL
    if reason == "not_found":
        print(
            f"the user {_argument(user)} is not in the users collection at {directory.location}: {_WHICH_DATABASE}",
            file=sys.stderr,
        )
        return ExitCode.UNKNOWN_USER
    kind = MongoFailure(reason) if reason in tuple(MongoFailure) else MongoFailure.UNREACHABLE
    return _mongo_failed(kind, directory.location)


def _mongo_failed(kind: MongoFailure, where: str, detail: str = "") -> int:
    print(f"MongoDB at {where}: {kind}{detail}; {advice(kind)}", file=sys.stderr)
    return ExitCode.MONGO_UNAUTHORIZED if kind is MongoFailure.UNAUTHORIZED else ExitCode.MONGO_UNAVAILABLE


class _Parser(argparse.ArgumentParser):
    """A usage error exits with its own code, never the one an invalid setting gets."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def _argument(value: str) -> str:
    """A command-line value as printed: as given when plain ASCII, else quoted and escaped (stray
    whitespace and controls are stripped before the id is read, but the admin must see they were there)."""
    return value if value.isascii() and value.isprintable() else loggable(value)


def _shown(value: str) -> str:
    """A value read from MongoDB (the users' own text) as the terminal may show it: escaped unless printable."""
    return value if value.isprintable() else loggable(value)


def _team_line(settings: Settings, attribution: Attribution) -> str:
    team = _shown(attribution.team or "-")
    if settings.team_metadata_key is None:
        return f"{team} (not sent: TEAM_METADATA_KEY is unset)"
    return f"{team} (TEAM_METADATA_KEY={settings.team_metadata_key})"


async def _export_users(settings: Settings, *, raw: bool) -> int:
    # socketTimeoutMS bounds each round trip, so each batch (find, then every getMore) on its own,
    # whatever the number of users; timeoutMS would bound the whole export's cursor instead.
    batch_timeout_ms = math.ceil(settings.user_lookup_timeout_seconds * BATCH_TIMEOUT_IN_LOOKUPS * 1000)
    users = connect_users(settings.mongo_uri, settings.user_lookup_timeout_seconds, socketTimeoutMS=batch_timeout_ms)
    database = users.database
    # Teams only when the admin asked for them: a `groups` LibreChat never filled, or one the proxy's
    # MongoDB user may not read, must not stop an export that has no use for it.
    teams_wanted = settings.team_metadata_key is not None or bool(settings.team_group_names)
    export = UserExport(database, team_choice(settings) if teams_wanted else None, raw=raw)
    where = location(database.client, database.name)
    try:
        await export.write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): that is its choice, not a failure worth a traceback.
        _silence_stdout()
        return ExitCode.OK
    except Exception as exc:  # any driver failure: the admin needs the cause, not a traceback
        stopped = f" (stopped after {export.rows} users: the output is incomplete)" if export.rows else ""
        detail = f" reading `{export.reading}`{stopped}"
        if export.reading == GROUPS_COLLECTION:
            detail += " for the team column (TEAM_METADATA_KEY or TEAM_GROUPS is set; unset both to export without it)"
        return _mongo_failed(classify(exc, database.client).kind, where, detail)
    finally:
        await database.client.close()
    # An empty export is most often a MONGO_URI naming another database than LibreChat's.
    nobody = "" if export.rows else f": {where} holds no users; {_WHICH_DATABASE}"
    print(f"exported {export.rows} users{nobody}", file=sys.stderr)
    return ExitCode.OK


async def _budgets(settings: Settings, *, as_json: bool, top: int) -> int:
    budgets = build_budgets(settings)
    if budgets is None:
        print("BUDGETS_FILE is unset: no budgets, and no spend is kept", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    database = budgets.store.database
    where = location(database.client, database.name)
    users = connect_users(settings.mongo_uri, settings.user_lookup_timeout_seconds)
    groups_of = _groups_of(users, settings) if budgets.config.allowances else None
    try:
        report = await budgets.report(top_users=top, groups_of=groups_of)
    except Exception as exc:  # any driver failure: the admin needs the cause, not a traceback
        return _mongo_failed(classify(exc, database.client).kind, where)
    finally:
        await budgets.store.close()
        await users.database.client.close()
    print(report_json(report, where) if as_json else report_text(report, where))
    return ExitCode.OK


def _groups_of(users: AsyncCollection[Any], settings: Settings) -> GroupsOf:
    """A user's groups by their email, read as each lookup reads them: whose allowance may be their limit."""
    finder = TeamFinder(users.database[GROUPS_COLLECTION], team_choice(settings))

    async def groups_of(email: str) -> tuple[str, ...]:
        user = await users.find_one({"email": email}, dict.fromkeys(("_id", *USER_FIELDS), 1))
        return (await finder.team_of(user)).groups if user is not None else ()

    return groups_of


def _price(settings: Settings, model: str, provider: str | None) -> int:
    budgets_file = settings.budgets_file
    prices = PriceList(budgets_file.config.prices if budgets_file is not None else ())
    catalogue = prices.catalogue
    assert catalogue is not None  # the bundled one
    if provider is not None and catalogue.provider_id(provider) is None:
        print(
            f"invalid --provider: the catalogue ({catalogue.describe()}) knows no provider {_argument(provider)}; "
            "give one of its ids, e.g. openai, anthropic, google, aws, azure, mistral",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    quote = prices.quote(model, provider)
    if quote is None:
        print(_unpriced(model, provider, catalogue, budgets_file), file=sys.stderr)
        return ExitCode.UNPRICED_MODEL
    print(price_text(_argument(model), quote, prices, budgets_file.path if budgets_file is not None else None))
    return ExitCode.OK


def _unpriced(model: str, provider: str | None, catalogue: Catalogue, budgets_file: BudgetsFile | None) -> str:
    where = f" under the provider {_argument(provider)}" if provider is not None else ""
    known = f"the catalogue ({catalogue.describe()}) has no token price for it{where}"
    if budgets_file is None:
        problem, fix = f"{known}, and BUDGETS_FILE is unset", "set BUDGETS_FILE to a file with a price for it"
    else:
        problem = f"no entry of the budgets file {budgets_file.path} matches it, and {known}"
        fix = "add a price for it to the file's `prices`"
    if provider is None:
        fix += " (or look it up under a provider of the catalogue with --provider)"
    unpriced = "its answers count as unpriced tokens, never as spend"
    return f"no price for the model {_argument(model)}: {problem}; {unpriced}: {fix}"


def _check_budgets_file(path: Path) -> int:
    try:
        config = load_budget_file(path)
    except BudgetFileError as exc:
        problems = "\n".join(f"  {escape_for_log(problem)}" for problem in exc.problems)
        print(f"invalid budgets file {exc.source}: {len(exc.problems)} problem(s)\n{problems}", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    print(budgets_file_text(path, config))
    return ExitCode.OK


def _silence_stdout() -> None:
    # Python's advice for SIGPIPE: point stdout at devnull so the flush at exit does not fail again.
    with contextlib.suppress(OSError, ValueError):  # not a real file (tests): nothing to silence
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more: {text!r}")
    return number


def _parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + describe()
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="portkey-user-proxy", description=__doc__, epilog=epilog, formatter_class=formatter)
    version = importlib.metadata.version("portkey-user-proxy")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        # Each command's --help lists the codes it can end with; the top-level --help lists them all.
        own_codes = "exit codes:\n" + describe(name)
        return commands.add_parser(
            name, help=summary, description=description, epilog=own_codes, formatter_class=formatter
        )

    serve = command("serve", "run the proxy", "Run the proxy (settings from the environment and ./.env).")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    check = command(
        "check-user",
        "resolve a user as the proxy would and print the metadata",
        "Resolve a user as the proxy would and print the metadata it would send.",
    )
    check.add_argument("user", metavar="ID_OR_EMAIL", help="a LibreChat user id (24 hex characters) or email")
    check.add_argument("--metadata", help="an x-portkey-metadata value to merge, as LibreChat would send it")
    doctor = command(
        "doctor",
        "check the set-up: settings, MongoDB, Portkey; one line per check",
        "Check the set-up, one line per check with a verdict and what to change.",
    )
    doctor.add_argument(
        "--settings", action="store_true", help="list the effective settings too (secrets hidden) after the checks"
    )
    doctor.add_argument(
        "--webhook-test",
        action="store_true",
        help="send one test message to BUDGET_WEBHOOK_URL and say what it answered",
    )
    export = command(
        "export-users",
        "write every LibreChat user as CSV (id,email,name,username,role,provider,team)",
        "Write every LibreChat user as CSV on stdout, with their team, in id order.",
    )
    export.add_argument(
        "--raw",
        action="store_true",
        help="write values as stored (by default, cells starting with = + - @ get a leading ' for spreadsheets)",
    )
    budgets = command(
        "budgets",
        "show the period's spend against each team's and user's budget (BUDGETS_FILE)",
        "Show the current period's spend against each budget: every team, and the users who spent most.",
    )
    budgets.add_argument("--json", action="store_true", help="write the report as JSON")
    budgets.add_argument("--top", type=_positive, default=10, metavar="N", help="how many users to list (default 10)")
    budgets_commands = budgets.add_subparsers(dest="budgets_command", metavar="{price,check}")
    price = budgets_commands.add_parser(
        "price",
        help="show what a model is charged at, and whether the budgets file or the catalogue says so",
        description="Show the prices a model's answers are charged at (USD per 1M input, output, cache-read and "
        "cache-write tokens) and where they come from: an entry of the budgets file, or the catalogue of published "
        "prices (genai-prices, bundled with the proxy). Without BUDGETS_FILE, the catalogue's.",
        epilog="exit codes:\n" + describe("budgets price"),
        formatter_class=formatter,
    )
    check_file = budgets_commands.add_parser(
        "check",
        help="check a budgets file: every problem at once, or the limits and prices it sets",
        description="Check a budgets file without starting the proxy: every problem at once, each with its key and "
        "what would be valid; for a valid file, the limits it sets and the price that applies to each model it "
        "names. Reads no setting: the file given is checked on its own.",
        epilog="exit codes:\n" + describe("budgets check"),
        formatter_class=formatter,
    )
    check_file.add_argument("file", metavar="FILE", help="the budgets file, e.g. budgets.yaml")
    price.add_argument("model", metavar="MODEL", help="as requests name it: gpt-4o, openai/gpt-4o, @openai-prod/gpt-4o")
    price.add_argument(
        "--provider",
        metavar="P",
        help="look the model up under this provider of the catalogue (openai, aws, azure, ...); the proxy "
        "itself finds the provider from the model's name alone",
    )
    return parser
