"""Configuration, read once at start-up from the environment and an optional `.env` file.

Every field maps to the upper-case environment variable of the same name. Invalid values stop
the process with a message naming the variable (`load_settings`), never with a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, PlainValidator, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo.errors import PyMongoError

from .attribution.decision import UnresolvedUserPolicy
from .attribution.user_value import UserValue
from .budgets.alerts import DEFAULT_THRESHOLDS, parse_thresholds
from .budgets.file import BudgetConfig, BudgetFileError, BudgetsFile, load_budget_file
from .headers import HOP_BY_HOP, MAX_LENGTH
from .mongodb.client import LIBRECHAT_DATABASE, database_named, mongo_client, parsed_uri
from .mongodb.uri import mongo_uri_secrets
from .observability.logs import logger
from .upstream.proxies import ProxySettingError, check_environment_proxy

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # RFC 9110 token characters
_CONFIG_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # a saved config's id, e.g. pc-librechat-1a2b3c
_KEY = re.compile(r"[\x21-\x7e]+")  # visible ASCII: a key travels in a header
_MIN_SECRET_LENGTH = 16
_TOO_SHORT = f"must be at least {_MIN_SECRET_LENGTH} characters, e.g. from `openssl rand -hex 32`"
# Request headers that cannot carry the user id: the proxy would consume them, and log their value.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "api-key", "x-goog-api-key"})
_PROTOCOL_HEADERS = frozenset(
    {"host", "content-type", "content-length", "content-encoding", "expect", "accept-encoding", "x-request-id"}
)
# Durations have bounds the libraries below can hold (pymongo's timeouts stay under 1e9 ms) and that
# no set-up needs more than: a day for a timeout, thirty for a cache entry, a minute for a user lookup.
_DAY = 86_400
Seconds = Annotated[float, Field(gt=0, le=_DAY, allow_inf_nan=False)]
CacheSeconds = Annotated[float, Field(gt=0, le=30 * _DAY, allow_inf_nan=False)]
LookupSeconds = Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)]
# What MongoDB refuses in a database name (on any platform), and its length limit in bytes.
_DATABASE_NAME_FORBIDDEN = frozenset('/\\. "$*<>:|?\x00')
_MAX_DATABASE_NAME = 63
_MAX_PORT = 65535
MAX_WORKERS = 64
# The auth mechanisms whose code pymongo imports at login, from one of these modules (its extras).
_AUTH_PACKAGES = {
    "MONGODB-AWS": (("pymongo_auth_aws",), "pymongo[aws] (the pymongo-auth-aws package)"),
    "GSSAPI": (("kerberos", "winkerberos"), "pymongo[gssapi] (the kerberos package)"),
}


def _budgets_file(value: object) -> BudgetsFile | None:
    """BUDGETS_FILE, read and checked at start: a file that does not validate stops the start."""
    if value is None or isinstance(value, BudgetsFile):
        return value
    if not isinstance(value, str | Path):
        raise ValueError("must be the path of a YAML budgets file")
    if not str(value).strip():
        return None  # `BUDGETS_FILE=` leaves budgets off
    path = Path(value)
    try:
        return BudgetsFile(path, load_budget_file(path))
    except BudgetFileError as exc:
        raise ValueError(f"{exc.source}: {exc.problem}") from None


class Settings(BaseSettings):
    # Each field's docstring is its description: docs/configuration.md shows it beside its name and default.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, use_attribute_docstrings=True
    )

    # Portkey
    portkey_url: str = "https://api.portkey.ai"
    """Portkey's root URL; the request path and query are appended unchanged. A self-hosted gateway:
    `http://portkey-gateway:8787`. Must not end in `/v1` (a warning in the log and `doctor` say so): LibreChat's
    `baseURL` already carries it. Must not carry credentials (`user:password@`, refused at start): Portkey's key goes
    in `PORTKEY_API_KEY`.
    """
    portkey_api_key: SecretStr | None = None
    """Portkey API key held by the proxy: sent as `x-portkey-api-key` when a request carries none (or a blank or
    unresolved `${...}` one), so `librechat.yaml` needs no Portkey secret.
    """
    portkey_virtual_key: str | None = None
    """Default `x-portkey-virtual-key` for requests that name no virtual key, provider or config. Set at most one of the
    three routing defaults.
    """
    portkey_provider: str | None = None
    """Default `x-portkey-provider` (a Model Catalog slug such as `@openai-prod`), on the same terms."""
    portkey_config: Annotated[str | None, Field(validate_default=True)] = None
    """Default `x-portkey-config` (a saved config id such as `pc-librechat-xxxxxx`), on the same terms. An inline JSON
    config works too; `doctor` shows it as `(inline config, hidden)`, since it can hold provider keys.
    """
    allow_client_portkey_routing: bool = False
    """With `PORTKEY_API_KEY` set, a client's `x-portkey-custom-host` and an `x-portkey-config` written as inline JSON
    (not a saved config id) are dropped; `true` lets them through. Virtual keys, provider slugs and saved config ids
    always pass.
    """

    # MongoDB (LibreChat's own variable)
    mongo_uri: str = f"mongodb://127.0.0.1:27017/{LIBRECHAT_DATABASE}"
    """LibreChat's own variable. The database comes from the URI path (default `LibreChat`); only the `users` collection
    is read, and `groups` with `TEAM_METADATA_KEY` set.
    """

    # Identity and attribution
    user_id_header: str = "x-librechat-user-id"
    """Header carrying the LibreChat user id; checked before the body's fields (`user`, ...; see
    [Routes](request.md#routes)). Never forwarded, so it cannot be a header Portkey or the request needs
    (`authorization`, `cookie`, `x-portkey-*`, `content-type`, `host`, hop-by-hop headers, ...): those are refused at
    start.
    """
    conversation_id_header: str = "x-librechat-conversation-id"
    """Header whose value becomes `x-portkey-trace-id` when the request has none (fill it with
    `"{{LIBRECHAT_BODY_CONVERSATIONID}}"`). Never forwarded, so the headers `USER_ID_HEADER` refuses are refused here
    too, and so is `USER_ID_HEADER`'s own. Empty switches conversation traces off.
    """
    unresolved_user_policy: UnresolvedUserPolicy = UnresolvedUserPolicy.FAIL_OPEN
    """`fail-open`: forward with `_user` = the ObjectId sent, or `unidentified` for anything else. `fail-closed`: refuse
    with 403 (unknown user) or 503 (MongoDB unavailable).
    """
    include_stream_usage: bool = True
    """Add `stream_options.include_usage` to streaming chat completions so Portkey can count their tokens."""

    # Privacy
    portkey_user_value: UserValue = UserValue.EMAIL
    """What `_user` holds for a resolved user: `email`, `username` (as `username (id)`), `id`, or `email-hash`. See
    [Privacy mode](options.md#privacy-mode).
    """
    user_hash_secret: Annotated[SecretStr | None, Field(validate_default=True)] = None
    """Key of the `email-hash` (HMAC-SHA256), at least 16 characters; required with `PORTKEY_USER_VALUE=email-hash`,
    refused at start-up without it.
    """

    # Cost per team: LibreChat's groups, and its tenants
    team_metadata_key: str | None = None
    """Metadata key that carries the user's team, a LibreChat group (e.g. `team`); unset: no team is looked up or sent.
    See [Cost per team](teams.md).
    """
    team_groups: str | None = None
    """Which groups count as teams, in order of preference, comma-separated (or a JSON array for names with commas); the
    first one the user is in is the team. Unset: the alphabetically first of the user's groups.
    """
    tenant_metadata_key: str | None = None
    """Metadata key that carries the user's `tenantId` in a multi-tenant LibreChat; unset: none is sent."""

    # User cache and lookups
    user_cache_ttl_seconds: CacheSeconds = 600.0
    """How long a found user's email is cached."""
    unknown_user_cache_ttl_seconds: CacheSeconds = 60.0
    """How long an id unknown to MongoDB is remembered as unknown."""
    user_cache_max_entries: Annotated[int, Field(ge=1)] = 100_000
    """Most users cached per process; the oldest leave first."""
    user_lookup_timeout_seconds: LookupSeconds = 1.0
    """Longest a MongoDB lookup (or the `/readyz` read) may delay a request: a hard limit, even on a frozen MongoDB that
    accepts connections and answers nothing.
    """

    # Upstream and server timeouts
    upstream_connect_timeout_seconds: Seconds = 10.0
    """Time to connect to Portkey before answering 502."""
    upstream_read_timeout_seconds: Seconds = 600.0
    """Longest silence from Portkey, before the first byte (→ 504) or between chunks. Reasoning models can think for
    minutes.
    """
    shutdown_grace_seconds: Annotated[float, Field(ge=0, le=_DAY, allow_inf_nan=False)] = 30.0
    """How long open streams may run on after SIGTERM."""
    max_request_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    """Largest request body (64 MiB, room for base64 images). A larger `Content-Length` gets 413 before the body is
    read; a JSON body over it gets 413; a streamed (chunked) body that passes it is cut off upstream and gets 413.
    """

    # Inbound access
    proxy_api_key: SecretStr | None = None
    """When set, every proxied request must carry `Authorization: Bearer <key>` (LibreChat's `apiKey`), else 401; the
    header is then not forwarded. At least 16 printable characters. Unset, the proxy is open: keep it reachable from
    LibreChat's network only.
    """
    metrics_require_proxy_api_key: bool = False
    """Ask for `PROXY_API_KEY` on `/metrics` too (needs `PROXY_API_KEY`). With `PROXY_API_KEY` set and
    `METRICS_PER_USER_TOKENS=true`, `/metrics` asks for it regardless: it lists users. `/healthz` and `/readyz`
    always stay open.
    """

    # Limits
    max_concurrent_upstream_requests: Annotated[int, Field(ge=0)] = 0
    """Most requests one server process has in flight to Portkey, streams included; one more gets 503 with `Retry-After:
    1`. `0`: no limit. Per process: the total is this times `WEB_CONCURRENCY`.
    """
    max_request_head_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    """Largest request line plus headers, enforced by the server while it reads them; larger requests get 431 and the
    connection is closed. A chunked body's trailers count against it too.
    """
    request_head_timeout_seconds: Seconds = 10.0
    """Time a new connection, or a request from its first byte, has to deliver its request line and headers; then 408
    and the connection is closed (a connection that sent nothing is closed without an answer).
    """
    request_body_timeout_seconds: Seconds = 30.0
    """Longest a request body may stop arriving (silence between reads, not the whole upload); then 408 and the
    connection is closed.
    """
    response_write_timeout_seconds: Seconds = 60.0
    """Longest a client may stop reading its response (no progress, not the whole download); then the response is cut
    short, its connection reset (freeing what was queued for it and its `MAX_CONNECTIONS` place) and its upstream
    request ended.
    """
    keep_alive_timeout_seconds: Seconds = 5.0
    """How long an idle keep-alive connection stays open between requests."""
    max_connections: Annotated[int, Field(ge=0)] = 0
    """Most open client connections per server process; one more gets 503 with `Retry-After: 1` and is closed at once.
    `0`: no cap.
    """

    # Server
    # Bounded: each worker is a process with its own pools and cache, and `serve` forks them all at once.
    web_concurrency: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    """Server worker processes; one per core the proxy may use, at most 64."""

    # Observability
    log_level: str = "INFO"
    """`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`."""
    log_format: Literal["text", "json"] = "text"
    """`text`: one readable line per event. `json`: one JSON object per line for log shippers; access lines carry
    `method`, `path`, `status`, `duration_ms`, `user`, `attribution`, `trace_id` and `request_id` as keys.
    """
    metrics_per_user_tokens: bool = False
    """Count prompt/completion/total tokens per user in `/metrics`, read from the usage each response reports, JSON or
    streamed, on every route in [Routes](request.md#routes) (without holding chunks back). Off by default: the
    series grow with the number of users.
    """
    # prometheus_client reads it from the environment: `serve` puts it there (see worker_metrics.py).
    prometheus_multiproc_dir: str | None = None
    """With `WEB_CONCURRENCY` above 1, the directory the workers share their metrics in (see [Metrics](metrics.md));
    unset: a new temporary one. Read from `.env` too.
    """

    # Budgets (see budgets/): off without BUDGETS_FILE
    budgets_file: Annotated[BudgetsFile | None, PlainValidator(_budgets_file)] = None
    """A YAML file of budgets per team and per user, in US dollars per calendar day, week or month, with any prices of
    its own over the catalogue's published ones ([Budgets](budgets.md)). Read at start; a file that does not validate
    stops the start naming the key that is wrong. Unset, nothing is budgeted and nothing is written.
    """
    budget_database: str = "portkey_user_proxy"
    """The proxy's own database, on the server `MONGO_URI` names, where spend is kept (the collection `spend`). Never
    LibreChat's database: the proxy's MongoDB user needs `readWrite` on this one and only `read` on LibreChat's.
    """
    budget_store_failure: Literal["allow", "deny"] = "allow"
    """What to do with a request of a user or team that has a budget while spend cannot be read from MongoDB: `allow`
    forwards it, `deny` answers 503 `budget_store_unavailable` with `Retry-After`. Increments not yet written are
    kept either way (bounded) and written when MongoDB is back.
    """
    # Warnings before the wall (budgets/alerts.py): off without a URL, which is a secret
    budget_webhook_url: SecretStr | None = None
    """An incoming webhook (Slack, Mattermost, Rocket.Chat, a Teams workflow) that gets a message when a team or user
    crosses a share of its budget ([Warnings before the wall](budgets.md#warnings-before-the-wall)). `http://` or
    `https://` only, refused at start otherwise. A secret: never logged; `doctor` shows its scheme and host only.
    Unset: no warnings.
    """
    budget_webhook_thresholds: Annotated[str, Field(validate_default=True)] = DEFAULT_THRESHOLDS
    """The shares of each budget that send a warning, as fractions, comma-separated: `0.5,0.8,1.0`. Each above 0 and at
    most 10, at most 10 of them; anything else is refused at start.
    """

    @property
    def team_group_names(self) -> tuple[str, ...]:
        """TEAM_GROUPS in order; empty when unset."""
        return _group_names(self.team_groups or "")

    @property
    def budget_webhook_threshold_values(self) -> tuple[Decimal, ...]:
        """BUDGET_WEBHOOK_THRESHOLDS as fractions of a budget, lowest first."""
        return parse_thresholds(self.budget_webhook_thresholds)

    @property
    def portkey_url_for_humans(self) -> str:
        """PORTKEY_URL without any credentials written into it, for logs and error messages."""
        parts = urlsplit(self.portkey_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        return parts._replace(netloc=host).geturl()

    @property
    def portkey_config_for_humans(self) -> str | None:
        """PORTKEY_CONFIG as logs and `doctor` may show it: a saved config's id, never an inline config.

        An inline JSON config carries provider API keys; only an id-shaped value is shown.
        """
        config = self.portkey_config
        if config is None or _CONFIG_ID.fullmatch(config):
            return config
        return "(inline config, hidden)"

    @field_validator("portkey_url")
    @classmethod
    def _portkey_url_is_a_base(cls, value: str) -> str:
        if not _parses_with_a_usable_port(value):
            raise ValueError(
                "must be a valid URL, its port (if any) a number from 1 to 65535, e.g. http://gateway:8787"
            )
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. https://api.portkey.ai")
        if "@" in parts.netloc:
            # Requests go straight to the transport, which never turns a URL's user:password into a header.
            raise ValueError(
                "must not carry credentials (user:password@): they would never be sent; give Portkey's key with "
                "PORTKEY_API_KEY, or as a header in librechat.yaml"
            )
        if "?" in value or "#" in value:
            raise ValueError("must not carry a query or fragment: request paths and queries are appended to it")
        return value.rstrip("/")

    @field_validator("mongo_uri")
    @classmethod
    def _mongo_uri_is_valid(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        try:
            # Strict: an unknown option is refused here, where the client would only warn.
            mechanism = parsed_uri(value)["options"].get("authMechanism")
            # What the parser leaves to the client: SRV rules, credentials per auth mechanism, TLS
            # files and pool options. Building it reads no DNS and opens no connection.
            mongo_client(value, connect=False)
        except (PyMongoError, ValueError, TypeError, OSError) as exc:
            raise ValueError(f"is not a valid MongoDB URI: {_mongo_reason(exc, value)}") from None
        if (missing := _missing_auth_package(mechanism)) is not None:
            # pymongo imports it only when it logs in: every lookup would fail, and /readyz with it.
            raise ValueError(
                f"authMechanism={mechanism} needs {missing}, which is not installed here: use a user and password "
                "(SCRAM), or an image that installs it"
            )
        return value

    @field_validator("user_id_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        name = value.strip().lower()
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError("must be a valid HTTP header name, e.g. x-librechat-user-id")
        if (taken := _taken_header(name)) is not None:
            # The proxy consumes this header: it would never be forwarded, and its value would be logged.
            raise ValueError(f"must not be {name}: {taken}; use a header of its own, e.g. x-librechat-user-id")
        return name

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator(
        "portkey_api_key",
        "portkey_virtual_key",
        "portkey_provider",
        "portkey_config",
        "user_hash_secret",
        "proxy_api_key",
        "prometheus_multiproc_dir",
        "budget_webhook_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `PROXY_API_KEY=` in a .env file switches the setting off; it is not an empty key.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("portkey_api_key", "proxy_api_key")
    @classmethod
    def _key_fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _KEY.fullmatch(value.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces: it travels in an HTTP header")
        return value

    @field_validator("proxy_api_key")
    @classmethod
    def _proxy_key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < _MIN_SECRET_LENGTH:
            raise ValueError(_TOO_SHORT)
        return value

    @field_validator("portkey_virtual_key", "portkey_provider", "portkey_config")
    @classmethod
    def _portkey_header_value(cls, value: str | None) -> str | None:
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ValueError("must be printable ASCII: it is sent to Portkey as a header")
        return value.strip() if value is not None else None

    @field_validator("portkey_provider", "portkey_config")
    @classmethod
    def _one_routing_default(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Reported on a variable that is set, naming the ones set before it (info.data holds only
        # those), so the line never blames a variable the admin left unset.
        also_set = [name.upper() for name in ("portkey_virtual_key", "portkey_provider") if info.data.get(name)]
        if value and also_set:
            raise ValueError(
                f"{' and '.join(also_set)} is set too: set only one of PORTKEY_VIRTUAL_KEY, PORTKEY_PROVIDER "
                "and PORTKEY_CONFIG: each routes on its own"
            )
        return value

    @field_validator("metrics_require_proxy_api_key")
    @classmethod
    def _metrics_key_needs_a_key(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("proxy_api_key") is None:
            raise ValueError("needs PROXY_API_KEY: it is the key /metrics would ask for")
        return value

    @field_validator("user_hash_secret")
    @classmethod
    def _hash_secret_for_hashing(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("portkey_user_value") is UserValue.EMAIL_HASH:
            raise ValueError("must be set when PORTKEY_USER_VALUE is email-hash: it keys the HMAC of each email")
        if value is not None and len(value.get_secret_value()) < _MIN_SECRET_LENGTH:
            raise ValueError(_TOO_SHORT)
        return value

    @field_validator("conversation_id_header")
    @classmethod
    def _optional_header_name(cls, value: str, info: ValidationInfo) -> str:
        name = value.strip().lower()
        if name and not _HEADER_NAME.fullmatch(name):
            raise ValueError("must be a valid HTTP header name, or empty to switch conversation traces off")
        if name.startswith("x-portkey-"):
            raise ValueError("must not be an x-portkey-* header: the proxy sets x-portkey-trace-id from it")
        if name and (taken := _taken_header(name)) is not None:
            # Its value would become the trace id Portkey shows, and the header would never be forwarded.
            raise ValueError(f"must not be {name}: {taken}; use a header of its own, e.g. x-librechat-conversation-id")
        if name and name == info.data.get("user_id_header"):
            raise ValueError("must differ from USER_ID_HEADER: the user id is read from that header, and consumed")
        return name

    @field_validator("team_metadata_key", "tenant_metadata_key", mode="before")
    @classmethod
    def _metadata_key(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        key = value.strip()
        if not key:
            return None  # `TEAM_METADATA_KEY=` leaves the feature off
        if len(key) > MAX_LENGTH or not key.isprintable():
            raise ValueError(f"must be printable text of at most {MAX_LENGTH} characters (Portkey's limit)")
        if key == "_user":
            raise ValueError("must not be _user: the proxy sets _user itself")
        return key

    @field_validator("tenant_metadata_key")
    @classmethod
    def _tenant_key_is_its_own(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("team_metadata_key"):
            raise ValueError("must differ from TEAM_METADATA_KEY: one key holds one value")
        return value

    @field_validator("budgets_file")
    @classmethod
    def _team_budgets_need_teams(cls, value: BudgetsFile | None, info: ValidationInfo) -> BudgetsFile | None:
        teams_looked_up = info.data.get("team_metadata_key") is not None
        if value is not None and (problem := team_budgets_problem(value.config, teams_looked_up=teams_looked_up)):
            raise ValueError(
                f"{value.path} {problem}: set it, so the proxy looks each user's team up in LibreChat's groups"
            )
        return value

    @field_validator("budget_database")
    @classmethod
    def _own_database(cls, value: str, info: ValidationInfo) -> str:
        name = value.strip()
        if not name or len(name.encode()) > _MAX_DATABASE_NAME or _DATABASE_NAME_FORBIDDEN & set(name):
            raise ValueError(
                f"must be a MongoDB database name: at most {_MAX_DATABASE_NAME} bytes, without spaces or any of "
                '/\\."$*<>:|?'
            )
        mongo_uri = info.data.get("mongo_uri")
        if name == (LIBRECHAT_DATABASE if mongo_uri is None else database_named(mongo_uri)):
            raise ValueError(
                "must not be LibreChat's database (the one MONGO_URI names): the proxy writes only its own"
            )
        return name

    @field_validator("budget_webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The value is never quoted: a webhook URL's path is the credential that posts into a channel.
        if value is None:
            return None
        url = value.get_secret_value().strip()
        parts = urlsplit(url)
        if not _parses_with_a_usable_port(url) or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. https://hooks.slack.com/services/T000/B000/XXXX"
            )
        return SecretStr(url)

    @field_validator("budget_webhook_thresholds")
    @classmethod
    def _webhook_thresholds(cls, value: str) -> str:
        parse_thresholds(value)
        return value

    @field_validator("team_groups")
    @classmethod
    def _group_list(cls, value: str | None) -> str | None:
        return value if value is not None and _group_names(value) else None


def team_budgets_problem(config: BudgetConfig, *, teams_looked_up: bool) -> str | None:
    """Why a budgets file cannot apply, or None: team budgets and allowances per group member need the
    users' groups, which are read only when TEAM_METADATA_KEY is set."""
    if config.teams and not teams_looked_up:
        return "sets team budgets, and TEAM_METADATA_KEY is unset"
    if config.allowances and not teams_looked_up:
        return "sets allowances per group member (`each`), and TEAM_METADATA_KEY is unset"
    return None


def dotenv_file() -> Path | None:
    """The `.env` file settings are read from, as an absolute path; None when there is none."""
    path = Path(str(Settings.model_config.get("env_file")))
    return path.resolve() if path.is_file() else None


class SettingsError(Exception):
    """Raised with one readable line per invalid variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        check_environment_proxy(httpx.URL(settings.portkey_url))
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except ProxySettingError as exc:
        raise SettingsError(f"invalid setting {exc.variable}: {exc.problem}") from None
    _warn_about_doubled_v1(settings)
    return settings


def _describe(exc: ValidationError) -> str:
    # Values are left out on purpose: MONGO_URI and keys can hold credentials.
    lines = []
    for error in exc.errors():
        variable = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {variable}: {message}")
    return "\n".join(lines)


def _mongo_reason(exc: BaseException, uri: str) -> str:
    """pymongo's own words, unless they could quote the URI's credentials or a secret option's value."""
    reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    if "@" in reason or any(_quotes(reason, secret) for secret in mongo_uri_secrets(uri)):
        return f"{type(exc).__name__} (pymongo's words are left out: they quote a part of the URI)"
    return reason


def _missing_auth_package(mechanism: object) -> str | None:
    """The package (pymongo's extra) an auth mechanism needs and that is not installed, or None."""
    needed = _AUTH_PACKAGES.get(str(mechanism).upper())
    if needed is None:
        return None
    modules, extra = needed
    return None if any(importlib.util.find_spec(module) for module in modules) else extra


def _parses_with_a_usable_port(url: str) -> bool:
    """Whether urllib and httpx both read the URL, and its port is absent or one a connection can be made to."""
    try:
        port = urlsplit(url).port
        httpx.URL(url)  # the client parses it again, by its own rules
    except (ValueError, httpx.InvalidURL):
        return False
    return port is None or 1 <= port <= _MAX_PORT


def _taken_header(name: str) -> str | None:
    """Why a request header cannot carry the user id, or None when it can."""
    if name.startswith("x-portkey-"):
        return "x-portkey-* headers are Portkey's own (its key, routing and metadata)"
    if name in _CREDENTIAL_HEADERS:
        return "it carries a credential"
    if name.encode("latin-1") in HOP_BY_HOP:
        return "it describes one connection (hop-by-hop)"
    if name in _PROTOCOL_HEADERS:
        return "it describes the request itself, and the proxy reads or sets it"
    return None


def _quotes(message: str, secret: str) -> bool:
    # As a whole token: a password "p" is not quoted by the word "supported".
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", message) is not None


def _group_names(text: str) -> tuple[str, ...]:
    """Comma-separated names, or a JSON array for names that hold commas; blanks dropped."""
    if text.strip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError('must be comma-separated group names, or a JSON array of names: ["Sales, EMEA","Finance"]')
    else:
        names = text.split(",")
    return tuple(name.strip() for name in names if name.strip())


def _warn_about_doubled_v1(settings: Settings) -> None:
    if settings.portkey_url.endswith("/v1"):
        logger.warning(
            "PORTKEY_URL ends in /v1 (%s): request paths are appended unchanged, so LibreChat's "
            "baseURL .../v1 would reach .../v1/v1. Set PORTKEY_URL to the gateway's root.",
            settings.portkey_url_for_humans,
        )
