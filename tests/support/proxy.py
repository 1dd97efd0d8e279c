"""A proxy under test: the real app on a real uvicorn server, with its MongoDB queries counted."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from portkey_user_proxy import Settings, create_app
from portkey_user_proxy.app import ProxyApp
from portkey_user_proxy.attribution.directory import Lookup, UserDirectory
from portkey_user_proxy.attribution.teams import team_finder
from portkey_user_proxy.inbound.server import InboundLimits, server_options
from portkey_user_proxy.observability.metrics import Metrics
from tests.support.servers import ServerThread


class FindCounter(monitoring.CommandListener):
    """Counts the `find` commands the proxy's own driver sends: works on the stand-in and a real server."""

    def __init__(self) -> None:
        self.finds = 0
        self.by_collection: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds += 1
            self.by_collection[event.command["find"]] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class ObservedDirectory(UserDirectory):
    """The real directory, counting the lookups asked of it so a test can wait for them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lookups = 0
        self._counted = threading.Condition()

    async def find(self, object_id: str) -> Lookup:
        with self._counted:
            self.lookups += 1
            self._counted.notify_all()
        return await super().find(object_id)

    def wait_for_lookups(self, count: int, timeout: float = 10) -> bool:
        with self._counted:
            return self._counted.wait_for(lambda: self.lookups >= count, timeout)


@dataclass
class RunningProxy:
    url: str
    app: ProxyApp
    queries: FindCounter
    directory: ObservedDirectory
    server: ServerThread


def start_proxy(settings: Settings) -> RunningProxy:
    metrics = Metrics(per_user_tokens=settings.metrics_per_user_tokens)
    counter = FindCounter()
    timeout_ms = int(settings.user_lookup_timeout_seconds * 1000)
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        settings.mongo_uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, event_listeners=[counter]
    )
    database = client.get_default_database()
    directory = ObservedDirectory(
        database["users"],
        ttl=settings.user_cache_ttl_seconds,
        unknown_ttl=settings.unknown_user_cache_ttl_seconds,
        timeout=settings.user_lookup_timeout_seconds,
        max_entries=settings.user_cache_max_entries,
        observer=metrics,
        teams=team_finder(settings, database),
    )
    app = create_app(settings, directory=directory, metrics=metrics)
    # The server options `serve` uses: the same HTTP protocol and request-head bound.
    server = ServerThread(
        app,
        server_header=False,
        date_header=False,
        **server_options(settings.max_request_head_bytes, InboundLimits.of(settings)),
    )
    server.start()
    return RunningProxy(server.url, app, counter, directory, server)


MakeProxy = Callable[..., RunningProxy]
