"""The proxy's own routes: liveness, readiness and metrics."""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..observability.metrics import CONTENT_TYPE, Metrics


class Readiness(Protocol):
    """What `/readyz` asks: the user directory (`app.state.directory`), kept out of the inbound side."""

    async def readiness(self) -> object | None:
        """None when lookups can succeed; else the failure seen, as its name."""


router = APIRouter()
OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when lookups can succeed: MongoDB answers an authorised read of `users`.

    Otherwise 503, with the failure seen: `unreachable`, `unauthorized`, `timeout` or `error`.
    """
    directory: Readiness = request.app.state.directory
    failure = await directory.readiness()
    if failure is None:
        return JSONResponse({"status": "ready", "mongodb": "reachable"})
    return JSONResponse({"status": "not ready", "mongodb": str(failure)}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
