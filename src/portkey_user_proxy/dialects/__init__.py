"""The API families whose requests the proxy attributes and whose responses it counts.

One module per family. `routes` maps the end of a request's path to its route class (a metric label)
and the family that serves it; the forwarder looks a path up once. A family added later is one module,
its lines in `routes._ROUTES`, and one in `fields._Fields` for each body field it reads that no family
read before. A path no family serves gets `UNKNOWN`: the user id from the header only, the body
untouched.
"""

from __future__ import annotations

from .dialect import UNKNOWN, Dialect
from .routes import OTHER_ROUTE, ROUTE_CLASSES, Route, dialect_for, route_class, route_for

__all__ = ["OTHER_ROUTE", "ROUTE_CLASSES", "UNKNOWN", "Dialect", "Route", "dialect_for", "route_class", "route_for"]
