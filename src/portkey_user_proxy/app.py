"""The composition root: every object the proxy runs on is built here, from `Settings`, once.

Nothing below this module reads the settings: each part gets plain values or a small frozen policy.
The ASGI application sends the proxy's own routes to FastAPI and every other request straight to the
forwarder: proxied requests are the hot path, and they need the raw ASGI channel to stream both ways
and to notice disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from pymongo import monitoring
from pymongo.asynchronous.database import AsyncDatabase

from .asgi import Receive, Scope, Send
from .attribution.decision import Attributor
from .attribution.directory import UserDirectory, connect_users
from .attribution.teams import GROUPS_COLLECTION, OwnedKeys, TeamChoice, TeamFinder
from .attribution.user_value import user_value_of
from .budgets import (
    BudgetFileError,
    BudgetMetrics,
    Budgets,
    BudgetsFile,
    SpendStore,
    StoreFailurePolicy,
    load_budget_file,
)
from .budgets.alert_claims import AlertClaims
from .budgets.alerts import CLAIM_TIMEOUT_SECONDS, BudgetAlerts
from .budgets.metrics import AlertMetrics
from .budgets.webhook import BudgetWebhook
from .forwarder import Forwarder, ForwardingPolicy
from .inbound.auth import InboundKey, RequireInboundKey
from .inbound.routes import OWN_PATHS, router
from .inbound.server import REFUSALS_STATE_KEY, InboundLimits, server_options
from .mongodb.client import mongo_client
from .observability.logs import logger
from .observability.metrics import Metrics
from .settings import Settings, load_settings, team_budgets_problem
from .upstream.client import UpstreamClient, UpstreamPolicy, build_upstream_client
from .upstream.portkey_defaults import CONFIG, PROVIDER, VIRTUAL_KEY, PortkeyDefaults
from .upstream.request import UpstreamRequestBuilder
from .upstream.traces import ConversationTrace


def build_user_directory(
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    teams: bool = False,
    one_shot: bool = False,
    listeners: tuple[monitoring.CommandListener, ...] = (),
    directory_class: type[UserDirectory] = UserDirectory,
) -> UserDirectory:
    """`teams`: look teams up even when TEAM_METADATA_KEY is unset (`check-user` shows them);
    `one_shot`: for a command that asks once (its warnings speak of no later request).

    `listeners` and `directory_class` let a caller watch the queries and the lookups (the tests do).
    """
    users = connect_users(settings.mongo_uri, settings.user_lookup_timeout_seconds, event_listeners=listeners)
    team_finder = None
    if settings.team_metadata_key is not None or teams:
        team_finder = TeamFinder(users.database[GROUPS_COLLECTION], team_choice(settings))
    return directory_class(
        users,
        ttl=settings.user_cache_ttl_seconds,
        unknown_ttl=settings.unknown_user_cache_ttl_seconds,
        timeout=settings.user_lookup_timeout_seconds,
        max_entries=settings.user_cache_max_entries,
        observer=metrics,
        teams=team_finder,
        one_shot=one_shot,
    )


# The budget store works in the background: its queries may take longer than a user lookup.
BUDGET_STORE_TIMEOUT_SECONDS = 5.0
_BUDGET_SERVER_SELECTION_SECONDS = 2.0


def build_budgets(settings: Settings, metrics: Metrics | None = None) -> Budgets | None:
    """None without BUDGETS_FILE: nothing is checked, priced or written."""
    if settings.budgets_file is None:
        return None
    client = mongo_client(settings.mongo_uri, _BUDGET_SERVER_SELECTION_SECONDS)
    store = SpendStore(client[settings.budget_database], timeout=BUDGET_STORE_TIMEOUT_SECONDS)
    observer = BudgetMetrics(metrics.registry, per_user=settings.metrics_per_user_tokens) if metrics else None
    return Budgets(
        settings.budgets_file.config,
        store,
        on_store_failure=StoreFailurePolicy(settings.budget_store_failure),
        observer=observer,
        alerts=build_budget_alerts(settings, store.database, metrics),
    )


def build_budget_alerts(
    settings: Settings, database: AsyncDatabase[Any], metrics: Metrics | None = None
) -> BudgetAlerts | None:
    """None without BUDGET_WEBHOOK_URL: no warnings. Claims live in the budget database, beside the spend."""
    if settings.budget_webhook_url is None:
        return None
    return BudgetAlerts(
        AlertClaims(database, timeout=CLAIM_TIMEOUT_SECONDS),
        BudgetWebhook(settings.budget_webhook_url.get_secret_value()),
        settings.budget_webhook_threshold_values,
        observer=AlertMetrics(metrics.registry) if metrics else None,
    )


def reload_budgets(budgets: Budgets, budgets_file: BudgetsFile, *, teams_looked_up: bool) -> bool:
    """Read BUDGETS_FILE again and apply it; a file that does not validate leaves the budgets in force."""
    try:
        config = load_budget_file(budgets_file.path)
    except BudgetFileError as exc:
        logger.warning("%s; the budgets in force are kept", exc)
        return False
    if problem := team_budgets_problem(config, teams_looked_up=teams_looked_up):
        logger.warning("invalid budgets file %s: it %s; the budgets in force are kept", budgets_file.path, problem)
        return False
    budgets.reconfigure(config)
    logger.info("read %s again: %d team and %d user budgets", budgets_file.path, len(config.teams), len(config.users))
    return True


def team_choice(settings: Settings) -> TeamChoice:
    return TeamChoice(settings.team_group_names)


def owned_keys(settings: Settings) -> OwnedKeys:
    return OwnedKeys(settings.team_metadata_key, settings.tenant_metadata_key)


def inbound_key(settings: Settings) -> InboundKey | None:
    """The key requests must carry, or None when PROXY_API_KEY is unset (the proxy is then open)."""
    key = settings.proxy_api_key
    return None if key is None else InboundKey(key.get_secret_value())


def metrics_need_the_key(settings: Settings) -> bool:
    """Whether `/metrics` asks for PROXY_API_KEY: when told to, and whenever it lists users (per-user tokens)."""
    return settings.metrics_require_proxy_api_key or settings.metrics_per_user_tokens


def inbound_limits(settings: Settings) -> InboundLimits:
    return InboundLimits(
        head_timeout=settings.request_head_timeout_seconds,
        body_timeout=settings.request_body_timeout_seconds,
        keep_alive_timeout=settings.keep_alive_timeout_seconds,
        max_connections=settings.max_connections,
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The server options `serve` runs with: the proxy's HTTP protocol, its limits and timeouts."""
    return server_options(settings.max_request_head_bytes, inbound_limits(settings))


def conversation_trace(settings: Settings) -> ConversationTrace | None:
    """None when CONVERSATION_ID_HEADER is empty: conversation traces are off."""
    header = settings.conversation_id_header
    return ConversationTrace(header) if header else None


def portkey_defaults(settings: Settings) -> PortkeyDefaults | None:
    """The defaults to apply, or None when none is configured (the request path then skips them)."""
    configured = (
        (VIRTUAL_KEY, settings.portkey_virtual_key),
        (PROVIDER, settings.portkey_provider),
        (CONFIG, settings.portkey_config),
    )
    routing = next(((name, value) for name, value in configured if value), None)
    api_key = settings.portkey_api_key.get_secret_value() if settings.portkey_api_key else None
    if api_key is None and routing is None:
        return None
    return PortkeyDefaults(api_key=api_key, routing=routing, allow_client_routing=settings.allow_client_portkey_routing)


def upstream_policy(settings: Settings) -> UpstreamPolicy:
    return UpstreamPolicy.for_target(
        settings.portkey_url_for_humans,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.upstream_read_timeout_seconds,
    )


def upstream_client(settings: Settings, *, timeout: float | None = None) -> UpstreamClient:
    """`timeout`: one bound for every phase in place of the settings' (`doctor` asks with one)."""
    return build_upstream_client(
        httpx.URL(settings.portkey_url),
        connect_timeout=timeout or settings.upstream_connect_timeout_seconds,
        read_timeout=timeout or settings.upstream_read_timeout_seconds,
    )


def build_attributor(settings: Settings, directory: UserDirectory) -> Attributor:
    return Attributor(
        directory,
        settings.unresolved_user_policy,
        user_value_of(settings.portkey_user_value, settings.user_hash_secret),
        owned_keys(settings),
    )


def build_forwarder(
    settings: Settings,
    directory: UserDirectory,
    client: UpstreamClient,
    metrics: Metrics,
    budgets: Budgets | None = None,
) -> Forwarder:
    policy = ForwardingPolicy(
        identity_header=settings.user_id_header.encode("latin-1"),
        body_limit=settings.max_request_body_bytes,
        write_timeout=settings.response_write_timeout_seconds,
        inbound_key=inbound_key(settings),
        portkey_url=httpx.URL(settings.portkey_url),
        max_upstream_requests=settings.max_concurrent_upstream_requests,
    )
    attributor = build_attributor(settings, directory)
    builder = UpstreamRequestBuilder(
        stream_usage=settings.include_stream_usage,
        conversation_trace=conversation_trace(settings),
        portkey_defaults=portkey_defaults(settings),
    )
    return Forwarder(policy, attributor, builder, client, upstream_policy(settings), metrics, budgets)


class ProxyApp:
    def __init__(
        self,
        settings: Settings,
        directory: UserDirectory,
        client: UpstreamClient,
        metrics: Metrics,
        budgets: Budgets | None = None,
    ) -> None:
        self.directory = directory
        self.client = client
        self.metrics = metrics
        self.budgets = budgets
        self._budgets_file = settings.budgets_file
        self._teams_looked_up = settings.team_metadata_key is not None
        self.forwarder = build_forwarder(settings, directory, client, metrics, budgets)
        self.api = FastAPI(title="portkey-user-proxy", lifespan=self._lifespan, docs_url=None, redoc_url=None)
        self.api.include_router(router)
        if (key := inbound_key(settings)) is not None and metrics_need_the_key(settings):
            self.api.add_middleware(RequireInboundKey, key=key, paths=frozenset({"/metrics"}))
        self.api.state.directory = directory
        self.api.state.budgets = budgets
        self.api.state.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OWN_PATHS:
            await self.forwarder(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    def reload_budgets(self) -> bool:
        """What SIGHUP does: BUDGETS_FILE read again and applied, or the budgets in force kept."""
        if self.budgets is None or self._budgets_file is None:
            return False
        return reload_budgets(self.budgets, self._budgets_file, teams_looked_up=self._teams_looked_up)

    def _reload_budgets_on_hangup(self) -> None:
        # One worker: this process reads the file again. With several, uvicorn's supervisor restarts
        # the workers on SIGHUP, and each reads it at its start. Outside the main thread (tests) or
        # without SIGHUP (Windows), the file is read at start only.
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload_budgets)

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if self.budgets is not None:
            await self.budgets.start()  # bounded: a budget store that is down does not stop the start
            if self.budgets.alerts is not None:
                await self.budgets.alerts.start()
            self._reload_budgets_on_hangup()
        try:
            # The server's own refusals (inbound/server.py) are counted with the app's errors.
            yield {REFUSALS_STATE_KEY: self.metrics.refused}
        finally:
            await self.client.aclose()
            await self.directory.close()
            if self.budgets is not None:
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
                    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                await self.budgets.aclose()  # writes the increments still waiting, once more
                if self.budgets.alerts is not None:
                    await self.budgets.alerts.aclose()
                await self.budgets.store.close()
            self.metrics.process_ended()


def create_app(
    settings: Settings | None = None,
    *,
    directory: UserDirectory | None = None,
    client: UpstreamClient | None = None,
    metrics: Metrics | None = None,
    budgets: Budgets | None = None,
) -> ProxyApp:
    settings = settings or load_settings()
    metrics = metrics or Metrics(per_user_tokens=settings.metrics_per_user_tokens)
    directory = directory or build_user_directory(settings, metrics)
    budgets = budgets or build_budgets(settings, metrics)
    return ProxyApp(settings, directory, client or upstream_client(settings), metrics, budgets)
