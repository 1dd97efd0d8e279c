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


class BudgetReadiness(Protocol):
    """What `/readyz` asks of budgets (`app.state.budgets`, None without BUDGETS_FILE)."""

    @property
    def ready(self) -> bool:
        """Whether the start's read of the period's spend answered."""


router = APIRouter()
OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when lookups can succeed: MongoDB answers an authorised read of `users`; with budgets,
    once the period's spend was read too, so that a replica is strict from its first request.

    Otherwise 503, with the failure seen: `unreachable`, `unauthorized`, `timeout` or `error`, and
    `"budgets": "reading spend"` while the spend is not read yet.
    """
    directory: Readiness = request.app.state.directory
    budgets: BudgetReadiness | None = request.app.state.budgets
    failure = await directory.readiness()
    answer = {"status": "ready", "mongodb": "reachable" if failure is None else str(failure)}
    if budgets is not None:
        answer["budgets"] = "spend read" if budgets.ready else "reading spend"
    if failure is None and (budgets is None or budgets.ready):
        return JSONResponse(answer)
    return JSONResponse({**answer, "status": "not ready"}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
