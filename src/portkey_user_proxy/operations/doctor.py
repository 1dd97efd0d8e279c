"""`portkey-user-proxy doctor`: the set-up checked end to end, one line per check.

Each line gives a verdict (`ok`, `warn`, `FAIL`, `skip`), what was checked and, when it is not ok,
what to change; the verdicts come first, from where the settings were read (the environment and
`./.env`) to MongoDB and Portkey, and the last line sums them up. `--settings` adds the effective
settings before that line, secrets hidden and MONGO_URI without its credentials; `--webhook-test`
sends one test message to BUDGET_WEBHOOK_URL. Any FAIL makes the command exit non-zero.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.metadata
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from pymongo.asynchronous.collection import AsyncCollection

from ..answers import error_before_response
from ..app import build_budgets, upstream_client, upstream_policy
from ..attribution.directory import connect_users
from ..attribution.teams import GROUPS_COLLECTION, USER_FIELDS, TeamChoice, TeamFinder
from ..budgets import BudgetsFile, PriceList
from ..budgets.alert_message import doctor_test_body, percent
from ..budgets.webhook import BudgetWebhook
from ..mongodb.failures import MongoFailure, advice, classify, location
from ..mongodb.uri import masked_mongo_uri
from ..observability.logs import escape_for_log
from ..settings import Settings, dotenv_file
from ..upstream.client import UpstreamRequest
from .exit_codes import ExitCode

_PORTKEY_TIMEOUT_SECONDS = 10.0
_BUDGET_STORE_CHECK_SECONDS = 10.0


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but not as most set-ups want
    FAIL = "FAIL"  # attribution or forwarding cannot work until it is fixed
    SKIP = "skip"  # not checked: a check it depends on failed


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.verdict:<5} {self.name:<20} {self.detail}"


async def run_doctor(
    settings: Settings,
    *,
    show_settings: bool = False,
    webhook_test: bool = False,
    budgets_problem: str | None = None,
) -> int:
    """`webhook_test`: send a test message to BUDGET_WEBHOOK_URL and say what it answered. `budgets_problem`:
    why BUDGETS_FILE did not validate (`settings` then hold none), a failed check among the others."""
    print(f"portkey-user-proxy {importlib.metadata.version('portkey-user-proxy')} doctor")
    checks = [
        _settings_source(),
        *await _mongodb_checks(settings),
        *(await _budget_checks(settings) if budgets_problem is None else [_invalid_budgets_file(budgets_problem)]),
        *await _budget_webhook(settings, send_test=webhook_test),
        _portkey_url(settings),
        await _portkey_reachable(settings),
        *_portkey_defaults(settings),
    ]
    for check in checks:
        print(check.line())
    if show_settings:
        print("effective settings (secrets hidden):")
        for name, value in effective_settings(settings):
            print(f"      {name}={escape_for_log(value)}")  # values from .env may hold controls
    failed = sum(1 for check in checks if check.verdict is Verdict.FAIL)
    warned = sum(1 for check in checks if check.verdict is Verdict.WARN)
    # A bare "every check passed" under a warn line reads as "nothing to do".
    warnings = f", {warned} with a warning to read" if warned else ""
    print(f"{failed} check(s) failed{warnings}" if failed else f"every check passed{warnings}")
    return ExitCode.CHECKS_FAILED if failed else ExitCode.OK


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as NAME and value, with secrets hidden."""
    shown = []
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        if name == "mongo_uri":
            text = masked_mongo_uri(value)
        elif name == "portkey_url":
            text = settings.portkey_url_for_humans
        elif name == "portkey_config" and value is not None:
            text = str(settings.portkey_config_for_humans)
        elif isinstance(value, SecretStr):
            text = "(set, hidden)"
        elif value is None:
            text = "(unset)"
        elif name == "budgets_file":
            text = str(value.path)
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(getattr(value, "value", value))
        shown.append((name.upper(), text))
    return shown


def _settings_source() -> Check:
    dotenv = dotenv_file()
    if dotenv is None:
        detail = f"no .env in {Path.cwd()}: every setting comes from the environment (or its default)"
    else:
        detail = f"{dotenv} read; the environment wins over it"
    return Check(Verdict.OK, "settings from", detail)


def _portkey_url(settings: Settings) -> Check:
    target = settings.portkey_url_for_humans
    if settings.portkey_url.endswith("/v1"):
        detail = (
            f"{target} ends in /v1: request paths are appended unchanged, so LibreChat's baseURL .../v1 would "
            "reach .../v1/v1; set PORTKEY_URL to the gateway's root"
        )
        return Check(Verdict.WARN, "portkey url", detail)
    return Check(Verdict.OK, "portkey url", f"{target}: request paths (/v1/...) are appended to it")


async def _mongodb_checks(settings: Settings) -> list[Check]:
    users = connect_users(settings.mongo_uri, settings.user_lookup_timeout_seconds)
    try:
        team_groups = settings.team_group_names if settings.team_metadata_key is not None else None
        return await _mongodb_checks_with(users, settings.user_lookup_timeout_seconds, team_groups)
    finally:
        await users.database.client.close()


async def _mongodb_checks_with(
    users: AsyncCollection[Any], timeout: float, team_groups: tuple[str, ...] | None
) -> list[Check]:
    """`team_groups`: TEAM_GROUPS when TEAM_METADATA_KEY is set (each lookup then reads `groups`), else None."""
    client = users.database.client
    where = location(client, users.database.name)
    steps: list[tuple[str, Callable[[], Awaitable[Check]]]] = [
        ("mongodb reachable", lambda: _ping(users, where)),
        ("mongodb authorised", lambda: _read_users(users)),
        ("users collection", lambda: _count_users(users, where)),
        ("sample user email", lambda: _sample_email(users)),
    ]
    if team_groups is not None:
        steps.append(("groups collection", lambda: _read_groups(users, team_groups)))
        steps.append(("team lookup", lambda: _sample_team(users, team_groups)))
    checks = [Check(Verdict.OK, "mongodb target", f"{where} (host:port/database from MONGO_URI)")]
    for name, step in steps:
        if checks[-1].verdict in (Verdict.FAIL, Verdict.SKIP):
            checks.append(Check(Verdict.SKIP, name, f"needs `{checks[-1].name}`"))
            continue
        try:
            async with asyncio.timeout(timeout):
                checks.append(await step())
        except Exception as exc:  # every driver failure becomes a verdict, never a traceback
            failure = classify(exc, client)
            if name == "mongodb reachable" and failure.kind is MongoFailure.UNAUTHORIZED:
                # The driver logs in before its first command: a refused login proves the server answers.
                checks.append(Check(Verdict.OK, name, f"{where} answered, and refused the login"))
                continue
            checks.append(Check(Verdict.FAIL, name, f"{failure.kind} ({failure.detail}): {advice(failure.kind)}"))
    return checks


async def _ping(users: AsyncCollection[Any], where: str) -> Check:
    started = time.perf_counter()
    await users.database.client.admin.command("ping")
    return Check(Verdict.OK, "mongodb reachable", f"{where} answered in {_ms_since(started)}")


async def _read_users(users: AsyncCollection[Any]) -> Check:
    # `ping` needs no credentials; reading `users` is what each lookup does.
    await users.find_one({}, {"_id": 1})
    return Check(Verdict.OK, "mongodb authorised", f"reading {users.full_name} is allowed")


async def _count_users(users: AsyncCollection[Any], where: str) -> Check:
    count = await users.estimated_document_count()
    if count == 0:
        detail = (
            f"{users.full_name} is empty or absent at {where}: MONGO_URI must name LibreChat's database "
            "(the path after the host, LibreChat's own MONGO_URI has it)"
        )
        return Check(Verdict.FAIL, "users collection", detail)
    return Check(Verdict.OK, "users collection", f"{users.full_name} holds {count} user(s)")


async def _sample_email(users: AsyncCollection[Any]) -> Check:
    document = await users.find_one({}, {"email": 1})
    if document is None or not document.get("email"):
        detail = "a user without an email: such users are attributed by their id (UNRESOLVED_USER_POLICY)"
        return Check(Verdict.WARN, "sample user email", detail)
    return Check(Verdict.OK, "sample user email", "a user has an email, so `_user` will be an email")


async def _read_groups(users: AsyncCollection[Any], team_groups: tuple[str, ...]) -> Check:
    groups = users.database[GROUPS_COLLECTION]
    names = [group.get("name") async for group in groups.find({}, {"_id": 0, "name": 1})]
    if not names:
        detail = (
            f"{groups.full_name} holds no group, so no team is sent: LibreChat 0.8 and later keeps its groups "
            "there (an older one has none); add groups in LibreChat, or unset TEAM_METADATA_KEY"
        )
        return Check(Verdict.WARN, "groups collection", detail)
    # A TEAM_GROUPS name no group has never becomes a team: compared as the team choice compares them.
    missing = [name for name in team_groups if TeamChoice((name,)).choose(names) is None]
    if missing:
        detail = (
            f"no group in {groups.full_name} is called {', '.join(missing)} (TEAM_GROUPS): correct the "
            "name(s) as LibreChat spells them, or no user is ever in that team"
        )
        return Check(Verdict.WARN, "groups collection", detail)
    return Check(Verdict.OK, "groups collection", f"{groups.full_name} holds {len(names)} group(s), readable")


async def _sample_team(users: AsyncCollection[Any], team_groups: tuple[str, ...]) -> Check:
    # The query each lookup makes (by member, names only), which listing the groups does not prove.
    started = time.perf_counter()
    document = await users.find_one({}, dict.fromkeys(("_id", *USER_FIELDS), 1))
    if document is None:
        return Check(Verdict.SKIP, "team lookup", "no user to read the groups of")
    team = (await TeamFinder(users.database[GROUPS_COLLECTION], TeamChoice(team_groups)).team_of(document)).team
    found = "is in a team" if team is not None else "is in no team"
    return Check(
        Verdict.OK,
        "team lookup",
        f"a sample user's groups read as each lookup reads them: {found}, in {_ms_since(started)}",
    )


async def _budget_checks(settings: Settings) -> list[Check]:
    """With BUDGETS_FILE: what the file says (it validated, or the settings would have stopped), and the store."""
    budgets = build_budgets(settings)
    if budgets is None or settings.budgets_file is None:
        return []
    checks = [_budgets_file(settings.budgets_file)]
    store = budgets.store
    client = store.database.client
    where = location(client, store.database.name)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_BUDGET_STORE_CHECK_SECONDS):
            await store.probe()
    except Exception as exc:  # every driver failure becomes a verdict, never a traceback
        failure = classify(exc, client)
        fix = (
            "the proxy's MongoDB user needs the readWrite role on BUDGET_DATABASE (and read on LibreChat's)"
            if failure.kind is MongoFailure.UNAUTHORIZED
            else advice(failure.kind)
        )
        checks.append(Check(Verdict.FAIL, "budget store", f"{where}: {failure.kind} ({failure.detail}): {fix}"))
    else:
        detail = f"{where}: indexes ready, a write read back in {_ms_since(started)}"
        checks.append(Check(Verdict.OK, "budget store", detail))
    finally:
        await store.close()
    return checks


def _invalid_budgets_file(problem: str) -> Check:
    fix = "`portkey-user-proxy budgets check FILE` lists every problem; the proxy does not start until they are fixed"
    return Check(Verdict.FAIL, "budgets file", f"{escape_for_log(problem)}: {fix}")


def _budgets_file(budgets_file: BudgetsFile) -> Check:
    config = budgets_file.config
    users = f"{len(config.users)} user(s)" + (" and a default per user" if config.default_user is not None else "")
    teams = f"{len(config.teams)} team(s)"
    if config.allowances:
        teams += f", {len(config.allowances)} allowance(s) per group member"
    summary = f"{budgets_file.path}: per {config.period}, mode {config.mode}; {teams}, {users}"
    return Check(Verdict.OK, "budgets file", f"{summary}; {_price_sources(PriceList(config.prices))}")


def _price_sources(prices: PriceList) -> str:
    catalogue = prices.catalogue
    assert catalogue is not None  # the bundled one
    own = f"{len(prices.prices)} price(s) of its own"
    catch_all = prices.price_of("\x00a model no glob names")
    if catch_all is not None:
        # A deliberate choice (one flat price), but the admin should know the catalogue then prices nothing.
        unused = f"the catalogue ({catalogue.describe()}) is never used"
        return f'{own}, with a catch-all (`model: "{catch_all.model}"`): {unused}'
    known = f"{catalogue.model_count} models of {catalogue.provider_count} providers"
    return f"{own}, over the catalogue {catalogue.describe()}, which knows {known}"


async def _budget_webhook(settings: Settings, *, send_test: bool) -> list[Check]:
    """With BUDGET_WEBHOOK_URL: where warnings go (its secret path hidden), and with `send_test`, what it answers."""
    url = settings.budget_webhook_url
    if url is None:
        if send_test:
            return [Check(Verdict.FAIL, "budget webhook", "BUDGET_WEBHOOK_URL is unset: there is no webhook to test")]
        return []
    webhook = BudgetWebhook(url.get_secret_value())
    if not send_test:
        if settings.budgets_file is None:
            detail = f"{webhook.where}: BUDGETS_FILE is unset, so there is no budget to warn about"
            return [Check(Verdict.WARN, "budget webhook", detail)]
        shares = ", ".join(percent(threshold) for threshold in settings.budget_webhook_threshold_values)
        detail = f"{webhook.where}: a warning at {shares} of each budget; `doctor --webhook-test` sends a test message"
        return [Check(Verdict.OK, "budget webhook", detail)]
    started = time.perf_counter()
    try:
        answer = await webhook.post(doctor_test_body())
    finally:
        await webhook.aclose()
    # The endpoint's own words may hold controls.
    said = f"answered {answer.describe()}" if answer.status is not None else f"did not answer ({answer.problem})"
    said = escape_for_log(said)
    if answer.delivered:
        detail = f"{webhook.where} {said} to a test message in {_ms_since(started)}: see it in the channel"
        return [Check(Verdict.OK, "budget webhook", detail)]
    detail = (
        f"{webhook.where} {said} to a test message: check BUDGET_WEBHOOK_URL against the URL the chat app gave "
        "for its incoming webhook, and that the proxy can reach it"
    )
    return [Check(Verdict.FAIL, "budget webhook", detail)]


async def _portkey_reachable(settings: Settings) -> Check:
    target = settings.portkey_url_for_humans
    started = time.perf_counter()
    client = upstream_client(settings, timeout=_PORTKEY_TIMEOUT_SECONDS)
    try:
        response = await client.send(UpstreamRequest("GET", httpx.URL(settings.portkey_url + "/"), [], None))
        await response.aclose()
    except httpx.HTTPError as exc:
        reason = error_before_response(exc, upstream_policy(settings)).message
        return Check(Verdict.FAIL, "portkey reachable", f"{reason} ({type(exc).__name__}: {str(exc)[:160]})")
    finally:
        await client.aclose()
    # Any HTTP answer shows the connection, TLS included, works: the root path need not exist.
    detail = f"{target} answered HTTP {response.status_code} in {_ms_since(started)}"
    return Check(Verdict.OK, "portkey reachable", detail)


def _portkey_defaults(settings: Settings) -> list[Check]:
    if settings.portkey_api_key is not None:
        key = Check(Verdict.OK, "portkey api key", "PORTKEY_API_KEY is set: sent when a request carries none")
    else:
        detail = "PORTKEY_API_KEY is unset: every request must carry x-portkey-api-key (librechat.yaml headers)"
        key = Check(Verdict.WARN, "portkey api key", detail)
    defaults = {
        "PORTKEY_VIRTUAL_KEY": settings.portkey_virtual_key,
        "PORTKEY_PROVIDER": settings.portkey_provider,
        "PORTKEY_CONFIG": settings.portkey_config_for_humans,
    }
    chosen = [f"{name}={value}" for name, value in defaults.items() if value]
    if chosen:
        routing = Check(Verdict.OK, "portkey routing", f"{chosen[0]}: used when a request names no route")
    else:
        detail = (
            "no routing default: every request must name x-portkey-virtual-key, -provider or -config "
            "(librechat.yaml headers), or set one of " + ", ".join(defaults)
        )
        routing = Check(Verdict.WARN, "portkey routing", detail)
    return [key, routing]


def _ms_since(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"
