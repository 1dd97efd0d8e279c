"""Command line: `serve` runs the proxy, `check-user` shows how one user would be attributed."""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys

import uvicorn

from .app import ProxyApp, build_user_directory, create_app
from .attribution import AttributionOutcome, attribute
from .identity import identify
from .logs import configure_logging
from .metadata import build_metadata
from .request_head import server_options
from .settings import Settings, SettingsError, load_settings
from .user_value import user_value_of

EXIT_UNKNOWN_USER = 1
EXIT_BAD_SETTINGS = 2
EXIT_MONGO_UNREACHABLE = 3


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_SETTINGS
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
    return asyncio.run(_check_user(settings, args.user, args.metadata))


def app_factory() -> ProxyApp:
    """What each server process builds (uvicorn's worker processes start from here too)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # Everything built so far lives as long as the process: keep it out of the collector's scans,
    # which otherwise stall streams for milliseconds at a time under load.
    gc.collect()
    gc.freeze()
    return app


def _serve(settings: Settings, host: str, port: int) -> int:
    uvicorn.run(
        "portkey_user_proxy.cli:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=settings.web_concurrency,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,  # the proxy writes its own access line, with the attributed user
        server_header=False,  # upstream's `server` and `date` pass through; no duplicates
        date_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
        proxy_headers=False,
        **server_options(settings.max_request_head_bytes),
    )
    return 0


async def _check_user(settings: Settings, user: str, metadata: str | None) -> int:
    directory = build_user_directory(settings)
    try:
        if "@" in user:
            found = await directory.find_by_email(user)
            if found is None:
                print(f"the email {user!r} is not known to LibreChat's MongoDB", file=sys.stderr)
                return EXIT_UNKNOWN_USER
            user = found.id
        user_value = user_value_of(settings.portkey_user_value, settings.user_hash_secret)
        attribution = await attribute(identify(None, user), directory, settings.unresolved_user_policy, user_value)
    except Exception as exc:  # any driver failure: the admin needs the cause, not a traceback
        print(f"MongoDB could not be queried ({type(exc).__name__}); check MONGO_URI", file=sys.stderr)
        return EXIT_MONGO_UNREACHABLE
    finally:
        await directory.close()
    header = build_metadata(metadata, attribution.user_value, attribution.fields).header
    print(f"user id:            {user}")
    print(f"attribution:        {attribution.outcome} ({attribution.reason})")
    print(f"email:              {attribution.fields.get('EMAIL', '-')}")
    print(f"_user sent:         {attribution.user_value or '-'} (PORTKEY_USER_VALUE={settings.portkey_user_value})")
    print(f"x-portkey-metadata: {header}")
    if attribution.outcome is AttributionOutcome.RESOLVED:
        return 0
    if attribution.reason in ("error", "timeout"):
        print("MongoDB is unreachable or too slow; check MONGO_URI and USER_LOOKUP_TIMEOUT_SECONDS", file=sys.stderr)
        return EXIT_MONGO_UNREACHABLE
    print(f"the user {user!r} is not known to LibreChat's MongoDB ({attribution.reason})", file=sys.stderr)
    return EXIT_UNKNOWN_USER


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portkey-user-proxy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    check = commands.add_parser("check-user", help="resolve a user as the proxy would and print the metadata")
    check.add_argument("user", metavar="ID_OR_EMAIL", help="a LibreChat user id (24 hex characters) or email")
    check.add_argument("--metadata", help="an x-portkey-metadata value to merge, as LibreChat would send it")
    return parser
