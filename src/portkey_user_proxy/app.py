"""The ASGI application: the proxy's own routes on FastAPI, every other request straight to the forwarder.

Proxied requests skip FastAPI's routing and middleware: they are the hot path, and they need the raw
ASGI channel to stream both ways and to notice disconnects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from .asgi import Receive, Scope, Send
from .forwarder import Forwarder
from .health import OWN_PATHS, router
from .settings import Settings, load_settings
from .upstream import build_http_client
from .users import UserDirectory, connect_users


def build_user_directory(settings: Settings) -> UserDirectory:
    return UserDirectory(
        connect_users(settings.mongo_uri, settings.user_lookup_timeout_seconds),
        ttl=settings.user_cache_ttl_seconds,
        unknown_ttl=settings.unknown_user_cache_ttl_seconds,
        timeout=settings.user_lookup_timeout_seconds,
        max_entries=settings.user_cache_max_entries,
    )


class ProxyApp:
    def __init__(self, settings: Settings, directory: UserDirectory, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.directory = directory
        self.client = client
        self.forwarder = Forwarder(settings, directory, client)
        self.api = FastAPI(title="portkey-user-proxy", lifespan=self._lifespan, docs_url=None, redoc_url=None)
        self.api.include_router(router)
        self.api.state.directory = directory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OWN_PATHS:
            await self.forwarder(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.client.aclose()
            await self.directory.close()


def create_app(
    settings: Settings | None = None,
    *,
    directory: UserDirectory | None = None,
    client: httpx.AsyncClient | None = None,
) -> ProxyApp:
    settings = settings or load_settings()
    return ProxyApp(settings, directory or build_user_directory(settings), client or build_http_client(settings))
