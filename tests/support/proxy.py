"""A proxy under test: the real app on a real uvicorn server, with its MongoDB queries counted."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pymongo import monitoring

from portkey_user_proxy import Settings, create_app
from portkey_user_proxy.app import ProxyApp, build_user_directory, uvicorn_options
from portkey_user_proxy.attribution.directory import Lookup, UserDirectory
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
    directory = build_user_directory(settings, metrics, listeners=(counter,), directory_class=ObservedDirectory)
    assert isinstance(directory, ObservedDirectory)
    app = create_app(settings, directory=directory, metrics=metrics)
    # The server options `serve` uses: the same HTTP protocol and request-head bound.
    server = ServerThread(
        app,
        server_header=False,
        date_header=False,
        **uvicorn_options(settings),
    )
    server.start()
    return RunningProxy(server.url, app, counter, directory, server)


MakeProxy = Callable[..., RunningProxy]


def scrape(proxy: RunningProxy) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(proxy.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
