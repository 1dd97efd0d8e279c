from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bson import json_util
from pymongo import AsyncMongoClient, monitoring

from portkey_user_proxy import Settings, create_app
from portkey_user_proxy.app import ProxyApp
from portkey_user_proxy.logs import QUIET_LIBRARIES
from portkey_user_proxy.metrics import Metrics
from portkey_user_proxy.request_head import InboundLimits, server_options
from portkey_user_proxy.teams import team_finder
from portkey_user_proxy.users import Lookup, UserDirectory
from tests.mongo import RealMongo, StandInMongo, real_mongo_uri
from tests.providers import ProviderUpstream
from tests.servers import ServerThread, Upstream

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> Any:
    return json_util.loads((FIXTURES / name).read_text())


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that set up logging as a whole process would: the test process gets its own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    library_levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    root.handlers[:], root.level = handlers, level
    for name, library_level in library_levels.items():
        logging.getLogger(name).setLevel(library_level)


@pytest.fixture
def librechat_user() -> dict[str, Any]:
    user: dict[str, Any] = load_fixture("librechat_user.json")
    return user


@pytest.fixture(scope="session")
def shared_mongo() -> Iterator[StandInMongo | RealMongo]:
    # One server for the session: stopping mockupdb takes a second.
    uri = real_mongo_uri()
    database: StandInMongo | RealMongo = RealMongo(uri) if uri else StandInMongo().start()
    yield database
    database.stop()


@pytest.fixture
def mongo(shared_mongo: StandInMongo | RealMongo, librechat_user: dict[str, Any]) -> StandInMongo | RealMongo:
    """LibreChat's database holding the fixture user, and nothing else."""
    shared_mongo.reset()
    shared_mongo.add_user(librechat_user)
    return shared_mongo


@pytest.fixture
def own_mongo(librechat_user: dict[str, Any]) -> Iterator[StandInMongo]:
    """A stand-in of the test's own, to stop, restart or slow down."""
    database = StandInMongo().start()
    database.add_user(librechat_user)
    yield database
    database.stop()


@pytest.fixture(scope="session")
def shared_upstream() -> Iterator[Upstream]:
    app = Upstream()
    server = ServerThread(app).start()
    app.url = server.url
    yield app
    server.stop()


@pytest.fixture
def upstream(shared_upstream: Upstream) -> Upstream:
    """The fake Portkey, with no requests recorded and every gate closed."""
    shared_upstream.reset()
    return shared_upstream


@pytest.fixture(scope="session")
def shared_provider_upstream() -> Iterator[ProviderUpstream]:
    app = ProviderUpstream()
    server = ServerThread(app).start()
    app.url = server.url
    yield app
    server.stop()


@pytest.fixture
def provider_upstream(shared_provider_upstream: ProviderUpstream) -> ProviderUpstream:
    """A fake Portkey answering each API family as its provider does (see `tests.providers`)."""
    shared_provider_upstream.reset()
    return shared_provider_upstream


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


@pytest.fixture
def make_proxy(upstream: Upstream, mongo: StandInMongo | RealMongo) -> Iterator[MakeProxy]:
    started: list[RunningProxy] = []

    def make(**overrides: Any) -> RunningProxy:
        values = {"portkey_url": upstream.url, "mongo_uri": mongo.uri, **overrides}
        proxy = start_proxy(Settings(_env_file=None, **values))  # type: ignore[call-arg]
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.server.stop()


@pytest.fixture
def proxy(make_proxy: MakeProxy) -> RunningProxy:
    return make_proxy()
