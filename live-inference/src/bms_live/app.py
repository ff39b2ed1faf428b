"""The FastAPI application: thin routes over :class:`bms_live.service.LiveService`.

``create_app(settings)`` builds a fresh app (tests make one per case); the service loads
the ``latest`` of every model at startup and watches the registry while the app runs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bms_schema.errors import BMSError, InputError, ModelError, PathError
from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from .errors import ModelUnavailable, UnknownAlert, UnknownPrediction
from .holder import Loader
from .metrics import CONTENT_TYPE
from .middleware import BodySizeLimit, RequestMetrics
from .schemas import (
    AnomalyResponse,
    ErrorResponse,
    FailureRequest,
    FailureResponse,
    FeedbackRequest,
    FeedbackResponse,
    ForecastRequest,
    ForecastResponse,
    ReadingsRequest,
)
from .service import LiveService
from .settings import Settings

log = logging.getLogger("bms.live")

API_KEY_HEADER = "X-API-Key"
STREAM_DEVICES = Query(None, description="only these devices (repeatable)")
#: /v1/anomaly requests up to this many readings are scored on the event loop (a few ms).
INLINE_MAX_READINGS = 1024
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed request (e.g. an invalid Content-Length header)"},
    401: {"model": ErrorResponse, "description": "missing or wrong API key (when BMS_API_KEY is set)"},
    413: {"model": ErrorResponse, "description": "request body above the size limit (BMS_LIVE_MAX_BODY_BYTES)"},
    422: {"model": ErrorResponse, "description": "invalid input: each error names the field and the reason"},
    503: {"model": ErrorResponse, "description": "no model yet: run the pipeline to train one"},
}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _error(
    status: int, detail: str, errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status, headers=headers)


def _input_field(message: str) -> str:
    """``"readings: 25000 readings ..."`` names its field before the colon."""
    head, sep, _ = message.partition(":")
    return head if sep and head and " " not in head.strip() else "body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e.get("loc", ())), "reason": e.get("msg", "invalid")} for e in exc.errors()]
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        return _error(422, f"invalid request: {summary}{more}", errors)

    @app.exception_handler(ModelUnavailable)
    async def no_model(_: Request, exc: ModelUnavailable) -> JSONResponse:
        return _error(
            503,
            str(exc),
            [{"field": "model", "reason": f"'{exc.registry_name}' not loaded"}],
            headers={"Retry-After": "30"},
        )

    @app.exception_handler(ValidationError)
    async def body_validation_error(_: Request, exc: ValidationError) -> JSONResponse:
        # bodies parsed by the route itself (POST /v1/ingest)
        errors = [{"field": _field(e.get("loc", ())), "reason": e.get("msg", "invalid")} for e in exc.errors()]
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        return _error(422, f"invalid request: {summary}{more}", errors)

    @app.exception_handler(UnknownAlert)
    async def unknown_alert(_: Request, exc: UnknownAlert) -> JSONResponse:
        return _error(404, str(exc), [{"field": "alert_id", "reason": "unknown"}])

    @app.exception_handler(UnknownPrediction)
    async def unknown_prediction(_: Request, exc: UnknownPrediction) -> JSONResponse:
        return _error(404, str(exc), [{"field": "feedback.prediction_id", "reason": "unknown"}])

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        message = str(exc)
        return _error(422, message, [{"field": _input_field(message), "reason": message}])

    @app.exception_handler(ModelError)
    async def model_error(_: Request, exc: ModelError) -> JSONResponse:
        return _error(503, f"the served model cannot answer: {exc}", [{"field": "model", "reason": str(exc)}])

    @app.exception_handler(BMSError)
    async def other_bms_error(_: Request, exc: BMSError) -> JSONResponse:
        status = 403 if isinstance(exc, PathError) else 422
        return _error(status, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(
            500,
            f"internal error ({type(exc).__name__}: {exc}); the service keeps running, see its log for the traceback",
        )


def _api_key_dependency(expected: str | None) -> Any:
    header = APIKeyHeader(
        name=API_KEY_HEADER, auto_error=False, description="required when the service runs with BMS_API_KEY set"
    )

    async def check(request: Request, key: str | None = Depends(header)) -> None:
        if expected is None:
            return
        if key is None:
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                key = auth[7:].strip()
        if key is None or not secrets.compare_digest(key.encode(), expected.encode()):
            raise _Unauthorized()

    return check


class _Unauthorized(Exception):
    pass


def create_app(
    settings: Settings | None = None, loaders: dict[str, Loader] | None = None, service: LiveService | None = None
) -> FastAPI:
    """A new app. ``loaders`` replaces how models are built (tests pass small stand-ins)."""
    settings = settings or Settings.from_env()
    service = service or LiveService(settings, loaders=loaders)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    # /docs (Swagger UI) and /redoc load their JS/CSS from the fastapi-offline package, served by
    # this app under /static-offline-docs: the pages work offline and name no other host.
    app = FastAPIOffline(
        title="BMS-Flux live inference",
        version="0.1.0",
        description=(
            "Scores battery-monitoring readings with the latest registered models: anomalies per reading, "
            "failure risk per cell, forecasts per cell; ground-truth feedback, input drift and Prometheus "
            "metrics. New model versions are picked up without a restart."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    _install_error_handlers(app)

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        return _error(
            401,
            f"missing or wrong API key: send it in the {API_KEY_HEADER} header (or Authorization: Bearer <key>)",
            [{"field": API_KEY_HEADER, "reason": "invalid"}],
            headers={"WWW-Authenticate": "Bearer"},
        )

    secured = [Depends(_api_key_dependency(settings.api_key))]

    @app.get("/health", tags=["status"], summary="Liveness and which models are loaded (no API key needed)")
    def health() -> dict[str, Any]:
        stream_stats = getattr(app.state, "stream_stats", None)
        return {**service.health(), "stream": dict(vars(stream_stats)) if stream_stats is not None else None}

    @app.get(
        "/models",
        tags=["status"],
        dependencies=secured,
        responses=ERRORS,
        summary="Served model versions (name, version, metrics, when loaded) and the registry",
    )
    def models() -> dict[str, Any]:
        return service.models()

    @app.post(
        "/v1/models/reload",
        tags=["status"],
        dependencies=secured,
        responses=ERRORS,
        summary="Load the latest registered version of every model now",
    )
    def reload(force: bool = Query(False, description="reload even when the version did not change")) -> Any:
        return {"results": service.reload(force=force)}

    @app.post(
        "/v1/anomaly",
        tags=["models"],
        dependencies=secured,
        response_model=AnomalyResponse,
        responses=ERRORS,
        summary="Anomaly score, flag and reason for each reading",
    )
    async def anomaly(body: ReadingsRequest) -> Response:
        # Scored inline: a thread-pool hop costs more wall time than a small request's work
        # (GIL-bound either way). Big batches go to the pool so /health etc. stay responsive.
        if len(body.readings) > INLINE_MAX_READINGS:
            return JSONResponse(await run_in_threadpool(service.anomaly, body.readings))
        return JSONResponse(service.anomaly(body.readings))

    @app.post(
        "/v1/failure",
        tags=["models"],
        dependencies=secured,
        response_model=FailureResponse,
        responses=ERRORS,
        summary="Probability that each cell fails within the horizon, risk band, reasons",
    )
    def failure(body: FailureRequest) -> Response:
        return JSONResponse(service.failure(body.readings, body.horizon_days))

    @app.post(
        "/v1/forecast",
        tags=["models"],
        dependencies=secured,
        response_model=ForecastResponse,
        responses=ERRORS,
        summary="Forecast a cell's next readings with an interval",
    )
    def forecast(body: ForecastRequest) -> Response:
        return JSONResponse(service.forecast(body.readings, body.cell_id, body.steps, body.coverage))

    @app.post(
        "/v1/feedback",
        tags=["monitoring"],
        dependencies=secured,
        response_model=FeedbackResponse,
        responses={**ERRORS, 404: {"model": ErrorResponse, "description": "no prediction id is known"}},
        summary="Ground truth for earlier predictions; returns rolling precision/recall per model",
    )
    def feedback(body: FeedbackRequest) -> Response:
        return JSONResponse(service.feedback([(item.prediction_id, item.actual) for item in body.feedback]))

    @app.get(
        "/v1/feedback",
        tags=["monitoring"],
        dependencies=secured,
        responses=ERRORS,
        summary="Current rolling precision/recall per model",
    )
    def feedback_metrics() -> dict[str, Any]:
        return service.feedback_metrics()

    @app.get(
        "/v1/monitoring/drift",
        tags=["monitoring"],
        dependencies=secured,
        responses=ERRORS,
        summary="Recent inputs vs each model's training reference, per feature; flagged features",
    )
    def drift() -> Response:
        return JSONResponse(service.drift_report())

    @app.get(
        "/metrics",
        tags=["monitoring"],
        dependencies=secured,
        response_class=PlainTextResponse,
        summary="Prometheus metrics (text format 0.0.4)",
    )
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    from . import stream

    stream_stats = stream.StreamStats()
    stream_cache = stream._EncodeCache()
    app.state.stream_stats = stream_stats

    @app.websocket("/v1/stream")
    async def live_stream(
        websocket: WebSocket,
        device_id: list[str] | None = STREAM_DEVICES,
    ) -> None:
        """Readings, scores and alerts as they are ingested (see ``bms_live.stream``)."""
        if not stream.key_ok(websocket, settings.api_key):
            await websocket.close(code=stream.CLOSE_UNAUTHORIZED, reason="missing or wrong API key")
            return
        await stream.serve(
            websocket,
            service.events,
            device_id,
            settings.stream_queue,
            settings.stream_stuck_seconds,
            stream_stats,
            stream_cache,
        )

    from .rest import build_router

    app.include_router(build_router(service, secured, ERRORS))
    from . import dashboard

    dashboard.install(app, service, secured, ERRORS)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    return app
