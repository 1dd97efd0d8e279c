"""The ASGI application: the proxy's own routes on FastAPI, every other request straight to the forwarder.

Proxied requests skip FastAPI's routing and middleware: they are the hot path, and they need the raw
ASGI channel to stream both ways and to notice disconnects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from .asgi import Receive, Scope, Send
from .attribution.directory import UserDirectory, connect_users
from .attribution.teams import team_finder
from .forwarder import Forwarder
from .inbound.auth import RequireInboundKey, inbound_key, metrics_need_the_key
from .inbound.routes import OWN_PATHS, router
from .inbound.server import REFUSALS_STATE_KEY
from .observability.metrics import Metrics
from .settings import Settings, load_settings
from .upstream.client import build_http_client


def build_user_directory(settings: Settings, metrics: Metrics | None = None, *, teams: bool = False) -> UserDirectory:
    """`teams`: look teams up even when TEAM_METADATA_KEY is unset (`check-user` shows them)."""
    users = connect_users(settings.mongo_uri, settings.user_lookup_timeout_seconds)
    return UserDirectory(
        users,
        ttl=settings.user_cache_ttl_seconds,
        unknown_ttl=settings.unknown_user_cache_ttl_seconds,
        timeout=settings.user_lookup_timeout_seconds,
        max_entries=settings.user_cache_max_entries,
        observer=metrics,
        teams=team_finder(settings, users.database, always=teams),
    )


class ProxyApp:
    def __init__(
        self, settings: Settings, directory: UserDirectory, client: httpx.AsyncClient, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.client = client
        self.metrics = metrics
        self.forwarder = Forwarder(settings, directory, client, metrics)
        self.api = FastAPI(title="portkey-user-proxy", lifespan=self._lifespan, docs_url=None, redoc_url=None)
        self.api.include_router(router)
        if (key := inbound_key(settings)) is not None and metrics_need_the_key(settings):
            self.api.add_middleware(RequireInboundKey, key=key, paths=frozenset({"/metrics"}))
        self.api.state.directory = directory
        self.api.state.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OWN_PATHS:
            await self.forwarder(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[dict[str, Any]]:
        try:
            # The server's own refusals (request_head.py) are counted with the app's errors.
            yield {REFUSALS_STATE_KEY: self.metrics.refused}
        finally:
            await self.client.aclose()
            await self.directory.close()
            self.metrics.process_ended()


def create_app(
    settings: Settings | None = None,
    *,
    directory: UserDirectory | None = None,
    client: httpx.AsyncClient | None = None,
    metrics: Metrics | None = None,
) -> ProxyApp:
    settings = settings or load_settings()
    metrics = metrics or Metrics(per_user_tokens=settings.metrics_per_user_tokens)
    directory = directory or build_user_directory(settings, metrics)
    return ProxyApp(settings, directory, client or build_http_client(settings), metrics)
