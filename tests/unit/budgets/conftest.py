from tests.support.mongomock_server import mongomock_server, shared_mongomock, writable_mongo

__all__ = ["mongomock_server", "shared_mongomock", "writable_mongo"]
