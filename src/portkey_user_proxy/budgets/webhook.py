"""The webhook budget warnings go to (BUDGET_WEBHOOK_URL): one POST of a JSON body, its answer in a few words.

The URL is a secret: a chat webhook's path (Slack's `/services/T.../B.../X...`) or query (a Teams
workflow's `sig=`) is all it takes to post into the channel. It is never logged or printed; logs,
errors and `doctor` show `where`, the scheme, host and port only. The client is the webhook's own
(not the upstream transport), follows no redirect, honours the environment's proxies as any httpx
client does, and bounds every attempt: its phases by `timeout`, the whole of it by `attempt_seconds`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

CONNECT_SECONDS = 5.0
READ_SECONDS = 10.0
ATTEMPT_SECONDS = 15.0
# Enough of an answer's body to show what an endpoint said ("no_service", "invalid_token").
_BODY_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST got: a status, or none (`problem` says why); `retry_after` from a 429 or 503."""

    status: int | None
    problem: str = ""
    body: str = ""
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def worth_retrying(self) -> bool:
        """No answer, 429 or a 5xx: the endpoint may take it later. Any other status will not change."""
        return self.status is None or self.status == 429 or self.status >= 500

    def describe(self) -> str:
        """For logs and `doctor`: "HTTP 404 (no_service)", "no answer (ConnectError)"."""
        if self.status is None:
            return f"no answer ({self.problem})"
        return f"HTTP {self.status}" + (f" ({self.body})" if self.body else "")


class BudgetWebhook:
    def __init__(
        self,
        url: str,
        *,
        timeout: httpx.Timeout | None = None,
        attempt_seconds: float = ATTEMPT_SECONDS,
    ) -> None:
        self._url = url
        self.where = where(url)
        self._timeout = timeout or httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS)
        self._attempt_seconds = attempt_seconds
        self._client: httpx.AsyncClient | None = None

    async def post(self, body: dict[str, object]) -> Answer:
        """POST `body` as JSON, once; never raises for what the endpoint or the network did."""
        if self._client is None:
            # Built at the first POST, in the loop that uses it: a command that never sends opens nothing.
            self._client = httpx.AsyncClient(timeout=self._timeout, headers={"user-agent": _USER_AGENT})
        try:
            async with asyncio.timeout(self._attempt_seconds):
                return await self._exchange(self._client, body)
        except TimeoutError:
            return Answer(None, "timed out")
        except httpx.TimeoutException as exc:
            return Answer(None, f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Answer(None, self._redacted(f"{type(exc).__name__}: {exc}"))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _exchange(self, client: httpx.AsyncClient, body: dict[str, object]) -> Answer:
        async with client.stream("POST", self._url, json=body) as response:
            shown = b""
            async for chunk in response.aiter_bytes():
                shown += chunk
                if len(shown) >= _BODY_SHOWN:
                    break
        text = shown[:_BODY_SHOWN].decode("utf-8", "replace").strip()
        return Answer(response.status_code, body=self._redacted(text), retry_after=_retry_after(response))

    def _redacted(self, text: str) -> str:
        """`text` without the URL's secret parts, should an error or an answer quote them."""
        parts = urlsplit(self._url)
        credentials = parts.netloc.rpartition("@")[0]
        for secret in (self._url, parts.path if len(parts.path) > 1 else "", parts.query, credentials):
            if secret:
                text = text.replace(secret, "(hidden)")
        return text


def where(url: str) -> str:
    """The URL as logs and `doctor` show it: scheme, host and port, the rest hidden."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    shown = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}"
    if parts.port is not None:
        shown += f":{parts.port}"
    hidden = (parts.path not in ("", "/")) or parts.query or parts.fragment or parts.username
    return shown + ("/(hidden)" if hidden else "")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None  # the HTTP-date form is rare from webhooks


_USER_AGENT = f"portkey-user-proxy/{importlib.metadata.version('portkey-user-proxy')}"
