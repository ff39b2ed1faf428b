"""REST over what is stored: ingest, fleet, devices, cells, readings, anomalies, failure risk,
forecasts, alerts, feedback. Thin routes over :mod:`bms_live.stored` and :class:`bms_live.store.Store`.

Lists are paginated: ``limit`` (1..10,000) and ``offset``; every list answer is
``{"items": [...], "count", "limit", "offset", "next_offset"}`` (``next_offset`` null on the
last page). Times in filters are ISO 8601 (no zone = UTC); ``end`` is exclusive.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bms_schema.errors import InputError
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from . import stored
from .ingest import IngestRequest, IngestResponse
from .schemas import MAX_CELL_NUMBER, MAX_ID_LENGTH, MAX_TIMESTAMP, MIN_TIMESTAMP, ErrorResponse


class Page(BaseModel):
    items: list[dict[str, Any]]
    count: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page, null on the last one")


class Fleet(BaseModel):
    devices: int
    cells: int
    packets: int
    first_reading: str | None
    last_reading: str | None
    open_alerts: int
    anomalies_last_24h: int = Field(description="flagged readings in the 24 h before the last reading")


class AlertAction(BaseModel):
    model_config = {"extra": "forbid"}

    by: str | None = Field(default=None, max_length=128, description="who acknowledges (free text)")


def _us(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    utc = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if not MIN_TIMESTAMP <= utc < MAX_TIMESTAMP:
        raise InputError(f"{name}: {value.isoformat()} is outside 1900-01-01 .. 2261-12-31 (UTC)")
    return int(utc.timestamp() * 1_000_000)


DEVICE = Query(min_length=1, max_length=MAX_ID_LENGTH, description="device (string) id")
DEVICE_OPT = Query(None, min_length=1, max_length=MAX_ID_LENGTH, description="only this device")
CELL_OPT = Query(None, ge=0, le=MAX_CELL_NUMBER, description="only this cell number")
LIMIT = Query(100, ge=1, le=10_000, description="page size")
OFFSET = Query(0, ge=0, le=10**9, description="rows to skip")
START = Query(None, description="from this time (inclusive, ISO 8601)")
END = Query(None, description="until this time (exclusive, ISO 8601)")
RULES_BODY = Body(..., examples=[{"cell_temperature": {"hot_c": 38.0}, "cooldown_seconds": 600}])


def alert_rules_answer(service: Any) -> dict[str, Any]:
    engine = service.alert_engine
    return {
        "rules": engine.rules.public(),
        "file": str(engine.rules_file) if engine.rules_file else None,
        "channels": [{"channel": c, "target": t} for c, t in engine.rules.channels.configured()],
    }


def set_alert_rules(service: Any, overrides: dict[str, Any]) -> None:
    """Validate ``overrides``, write them as the JSON rules file, and apply them now."""
    import json
    import os
    from dataclasses import replace

    from .alerts.config import AlertRules, _env_channels, apply_overrides

    engine = service.alert_engine
    rules = apply_overrides(AlertRules(), overrides)  # raises InputError naming the bad key
    rules = replace(rules, channels=_env_channels(rules.channels))
    path = engine.rules_file
    if path is None:
        raise InputError("rules: no rules file location (set BMS_ALERT_RULES or BMS_WORKSPACE) to save the rules to")
    if path.suffix != ".json":
        raise InputError(f"rules: the rules file {path} is TOML; edit it (or point BMS_ALERT_RULES at a .json file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(overrides, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    engine.rules = rules
    if service.store is not None:
        service.store.alert_cooldown_us = engine.cooldown_us
    if service.delivery is not None:
        service.delivery.config = rules.channels
        service.delivery.start()  # no-op when running or when no channel is configured


def build_router(service: Any, secured: list[Any], errors: dict[int | str, dict[str, Any]]) -> APIRouter:
    router = APIRouter(dependencies=secured, responses=errors)
    store_errors = {
        **errors,
        422: {"model": ErrorResponse, "description": "invalid input, or no stored data for the device/cell"},
    }

    @router.post(
        "/v1/ingest",
        tags=["store"],
        response_model=IngestResponse,
        responses=store_errors,
        summary="Store raw packets or readings (idempotent), score them, answer after the commit",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": IngestRequest.model_json_schema(ref_template="#/components/schemas/{model}")
                    },
                    "text/csv": {
                        "schema": {"type": "string", "description": "the 73-column BMS packet CSV (header + rows)"}
                    },
                },
            }
        },
    )
    async def ingest(request: Request) -> Response:
        body = await request.body()
        content_type = request.headers.get("content-type", "application/json")
        return JSONResponse(await run_in_threadpool(stored.ingest, service, content_type, body))

    @router.get("/v1/fleet", tags=["store"], response_model=Fleet, summary="Fleet summary from the store")
    def fleet() -> dict[str, Any]:
        return stored.require_store(service).fleet()

    @router.get("/v1/devices", tags=["store"], response_model=Page, summary="Devices (strings) with their cells")
    def devices(limit: int = LIMIT, offset: int = OFFSET) -> dict[str, Any]:
        return stored.require_store(service).devices(limit=limit, offset=offset)

    @router.get("/v1/cells", tags=["store"], response_model=Page, summary="Cells with their latest reading")
    def cells(device_id: str | None = DEVICE_OPT, limit: int = LIMIT, offset: int = OFFSET) -> dict[str, Any]:
        return stored.require_store(service).cells(device_id, limit=limit, offset=offset)

    @router.get("/v1/readings", tags=["store"], response_model=Page, summary="Stored readings over a time range")
    def readings(
        device_id: str = DEVICE,
        cell_number: int | None = CELL_OPT,
        start: datetime | None = START,
        end: datetime | None = END,
        limit: int = Query(1000, ge=1, le=10_000, description="page size"),
        offset: int = OFFSET,
    ) -> dict[str, Any]:
        return stored.require_store(service).readings(
            device_id, cell_number, _us(start, "start"), _us(end, "end"), limit=limit, offset=offset
        )

    @router.get(
        "/v1/anomalies",
        tags=["store"],
        response_model=Page,
        summary="Stored anomaly predictions (flagged ones unless flagged=false)",
    )
    def anomalies(
        device_id: str | None = DEVICE_OPT,
        cell_number: int | None = CELL_OPT,
        start: datetime | None = START,
        end: datetime | None = END,
        flagged: bool | None = Query(True, description="true: anomalies; false: normal readings"),
        kind: str | None = Query(None, max_length=32, description="AnomalyKind, e.g. sensor_fault"),
        limit: int = LIMIT,
        offset: int = OFFSET,
    ) -> dict[str, Any]:
        return stored.require_store(service).predictions_page(
            "anomaly",
            device_id,
            cell_number,
            _us(start, "start"),
            _us(end, "end"),
            flagged,
            kind,
            limit=limit,
            offset=offset,
        )

    @router.get(
        "/v1/risk",
        tags=["store"],
        response_model=Page,
        summary="Latest stored failure risk of each cell, riskiest first",
    )
    def risk(
        device_id: str | None = DEVICE_OPT,
        cell_number: int | None = CELL_OPT,
        band: str | None = Query(None, max_length=32, description="RiskBand, e.g. high"),
        limit: int = LIMIT,
        offset: int = OFFSET,
    ) -> dict[str, Any]:
        return stored.require_store(service).predictions_page(
            "failure", device_id, cell_number, label=band, latest_per_cell=True, limit=limit, offset=offset
        )

    @router.post(
        "/v1/risk/refresh",
        tags=["store"],
        responses=store_errors,
        summary="Score a device's cells for failure risk from their stored history now (stored)",
    )
    def risk_refresh(device_id: str = DEVICE, cell_number: int | None = CELL_OPT) -> Response:
        return JSONResponse(stored.risk_from_store(service, device_id, cell_number))

    @router.get("/v1/forecasts", tags=["store"], response_model=Page, summary="Latest stored forecast per cell")
    def forecasts(
        device_id: str = DEVICE,
        cell_number: int | None = CELL_OPT,
        limit: int = Query(1000, ge=1, le=10_000, description="page size"),
        offset: int = OFFSET,
    ) -> dict[str, Any]:
        return stored.require_store(service).forecasts_page(device_id, cell_number, limit=limit, offset=offset)

    @router.post(
        "/v1/forecasts/refresh",
        tags=["store"],
        responses=store_errors,
        summary="Forecast a cell from its stored history now (stored)",
    )
    def forecast_refresh(
        device_id: str = DEVICE,
        cell_number: int = Query(ge=0, le=MAX_CELL_NUMBER, description="cell number"),
        steps: int = Query(25, ge=1, le=96, description="future readings"),
        coverage: float = Query(0.8, ge=0.5, le=0.98, description="interval coverage"),
    ) -> Response:
        return JSONResponse(stored.forecast_from_store(service, device_id, cell_number, steps, coverage))

    @router.get("/v1/alerts", tags=["store"], response_model=Page, summary="Alerts, newest first")
    def alerts(
        status: str | None = Query(None, pattern="^(open|acknowledged|resolved)$"),
        device_id: str | None = DEVICE_OPT,
        limit: int = LIMIT,
        offset: int = OFFSET,
    ) -> dict[str, Any]:
        return stored.require_store(service).alerts(status, device_id, limit=limit, offset=offset)

    not_found = {**errors, 404: {"model": ErrorResponse, "description": "no alert with that id"}}

    def _set(alert_id: int, status: str, by: str | None) -> dict[str, Any]:
        from .errors import UnknownAlert

        alert = stored.require_store(service).set_alert_status(alert_id, status, by)
        if alert is None:
            raise UnknownAlert(f"no alert {alert_id}: ids come from GET /v1/alerts or the ingest answer")
        service.events.publish({"type": "alert", "event": status, "alert": alert, "devices": [alert["device_id"]]})
        return alert

    @router.post(
        "/v1/alerts/{alert_id}/acknowledge", tags=["store"], responses=not_found, summary="Acknowledge an alert"
    )
    def acknowledge(alert_id: int = Path(ge=1, le=2**62), body: AlertAction | None = None) -> dict[str, Any]:
        return _set(alert_id, "acknowledged", body.by if body else None)

    @router.post("/v1/alerts/{alert_id}/resolve", tags=["store"], responses=not_found, summary="Resolve an alert")
    def resolve(alert_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
        return _set(alert_id, "resolved", None)

    @router.get(
        "/v1/alerts/{alert_id}/deliveries",
        tags=["alerts"],
        responses=not_found,
        summary="Every delivery of an alert: channel, target, status, attempts, last error",
    )
    def deliveries(alert_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
        from .errors import UnknownAlert

        store = stored.require_store(service)
        if not store.alerts(alert_id=alert_id, limit=1)["items"]:
            raise UnknownAlert(f"no alert {alert_id}: ids come from GET /v1/alerts or the ingest answer")
        items = store.deliveries(alert_id)
        return {"alert_id": alert_id, "items": items, "count": len(items)}

    @router.get("/v1/alerts/rules", tags=["alerts"], summary="The alert rules and channels in force (secrets hidden)")
    def get_rules() -> dict[str, Any]:
        return alert_rules_answer(service)

    @router.put(
        "/v1/alerts/rules",
        tags=["alerts"],
        responses=store_errors,
        summary="Replace the rules file with these overrides of the defaults (applied at once)",
    )
    def put_rules(body: dict[str, Any] = RULES_BODY) -> dict[str, Any]:
        set_alert_rules(service, body)
        return alert_rules_answer(service)

    @router.post(
        "/v1/alerts/check",
        tags=["alerts"],
        summary="Run the drift and model-degradation rules now (they also run every check_seconds)",
    )
    def check() -> dict[str, Any]:
        raised = service.check_models()
        return {"alerts": [a for a in raised if not a.get("suppressed")]}

    @router.get("/v1/feedback/items", tags=["store"], response_model=Page, summary="Stored feedback, newest first")
    def feedback_items(
        model: str | None = Query(None, pattern="^(anomaly|failure)$"), limit: int = LIMIT, offset: int = OFFSET
    ) -> dict[str, Any]:
        return stored.require_store(service).feedback_page(model, limit=limit, offset=offset)

    @router.get(
        "/v1/cells/analyze",
        tags=["store"],
        responses=store_errors,
        summary="One cell's story from the store: state, anomalies, forecast, failure risk",
    )
    def analyze(
        device_id: str = DEVICE, cell_number: int = Query(ge=0, le=MAX_CELL_NUMBER, description="cell number")
    ) -> Response:
        return JSONResponse(stored.analyze(service, device_id, cell_number))

    return router
