"""Fixtures every kind of test shares: MongoDB, upstreams, a running proxy; the helpers live in tests.support."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from portkey_user_proxy import Settings
from portkey_user_proxy.observability.logs import QUIET_LIBRARIES
from tests.support.chat_webhook import ChatWebhook
from tests.support.driver_sockets import label_driver_sockets
from tests.support.fixtures import load_fixture
from tests.support.mongo import RealMongo, StandInMongo
from tests.support.providers import ProviderUpstream
from tests.support.proxy import MakeProxy, RunningProxy, start_proxy
from tests.support.servers import ServerThread, Upstream
from tests.support.wire_server import real_mongo_uri

# A MongoDB that takes writes (mongomock behind mockupdb, or TEST_MONGO_URI's): `writable_mongo`.
pytest_plugins = ("tests.support.mongomock_server",)

label_driver_sockets()  # before any client connects: see tests.support.driver_sockets


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


@pytest.fixture
def chat_webhook() -> Iterator[ChatWebhook]:
    """A chat app's incoming webhook on a loopback port of its own, at a path as secret as Slack's."""
    app = ChatWebhook()
    server = ServerThread(app).start()
    app.url = server.url + "/services/T0001/B0002/webhook-secret-path"
    yield app
    server.stop()


@pytest.fixture(scope="session")
def shared_provider_upstream() -> Iterator[ProviderUpstream]:
    app = ProviderUpstream()
    server = ServerThread(app).start()
    app.url = server.url
    yield app
    server.stop()


@pytest.fixture
def provider_upstream(shared_provider_upstream: ProviderUpstream) -> ProviderUpstream:
    """A fake Portkey answering each API family as its provider does (see `tests.support.providers`)."""
    shared_provider_upstream.reset()
    return shared_provider_upstream


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
