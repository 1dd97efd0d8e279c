"""Debian's nginx in two roles: the static origin for non-stream requests, and the C reverse proxy.

The origin answers every request with the same chat completion (`return 200`), so it is never the
bottleneck. The reverse proxy is the best a proxy can do without a user lookup: a static
`x-portkey-metadata`, keep-alive upstream connections, `proxy_buffering off`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .origin import COMPLETION
from .payloads import STATIC_METADATA

_MAIN = """\
{user}
worker_processes 1;
worker_rlimit_nofile 20000;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    client_max_body_size 0;
{servers}
}}
"""

_ORIGIN = """\
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            add_header x-portkey-trace-id trace-bench;
            return 200 '{body}';
        }}
    }}
"""

_PROXY = """\
    upstream origin_{port} {{
        server 127.0.0.1:{upstream};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://origin_{port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header x-portkey-metadata '{metadata}';
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
"""


def origin_config(prefix: Path, port: int) -> Path:
    return _write(prefix, _ORIGIN.format(port=port, body=COMPLETION.decode()))


def proxy_config(prefix: Path, routes: dict[int, int]) -> Path:
    """A reverse proxy listening on each key of `routes` and forwarding to the port it maps to."""
    servers = "".join(
        _PROXY.format(port=port, upstream=upstream, metadata=STATIC_METADATA) for port, upstream in routes.items()
    )
    return _write(prefix, servers)


def command(config: Path) -> list[str]:
    return ["nginx", "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"]


def _write(prefix: Path, servers: str) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would drop to `nobody` and lose access to the private run folder.
    user = "user root;" if os.geteuid() == 0 else ""
    config = prefix / "nginx.conf"
    config.write_text(_MAIN.format(user=user, prefix=prefix, servers=servers))
    return config
