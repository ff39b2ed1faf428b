"""What the live service does with its store: ingest, and risk / forecasts / a cell's story
computed from stored readings (the REST routes and ``bms analyze`` call these)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.errors import InputError

from .errors import ModelUnavailable
from .ingest import IngestRequest, frame_from_csv, frame_from_rows, prediction_rows
from .readings import readings_to_frame
from .store import from_us, iso_us, now_us, to_us

log = logging.getLogger("bms.live")

#: What the event bus (and ``WS /v1/stream``) carries of each anomaly answer: the verdict, not the
#: per-detector breakdown (``POST /v1/anomaly`` and ``GET /v1/anomalies`` have that); every byte
#: is sent to every stream client.
STREAM_SCORE_FIELDS = ("prediction_id", "CellID", "Timestamp", "AnomalyScore", "AnomalyFlag", "AnomalyKind", "reason")
#: Stored history handed to the failure model (its longest trailing window is 72 h by default).
FAILURE_LOOKBACK_HOURS = 96.0
#: Stored history handed to the forecaster (its lag window needs a dozen readings).
FORECAST_LOOKBACK_HOURS = 48.0


def require_store(service: Any) -> Any:
    if service.store is None:
        raise InputError(
            "store: this service runs without a database (BMS_LIVE_STORE=0); "
            "start it with the store enabled to ingest and query stored data"
        )
    return service.store


def ingest(service: Any, content_type: str, body: bytes) -> dict[str, Any]:
    """Parse ``body`` (CSV packet table, or JSON ``{"readings"}`` / ``{"rows"}``), store it, score
    the new readings, store the predictions and alerts; answer after the commit."""
    store = require_store(service)
    media = content_type.split(";")[0].strip().lower()
    dropped = 0
    if media in ("text/csv", "application/csv"):
        frame, dropped = frame_from_csv(body, service.limits)
        source = "packet_csv"
    elif media in ("application/json", "") or media.endswith("+json"):
        request = IngestRequest.model_validate_json(body or b"{}")
        if request.readings is not None:
            service.check_size(request.readings)
            frame = readings_to_frame(request.readings, service.limits)
            source = "readings"
        else:
            assert request.rows is not None
            if len(request.rows) > service.settings.max_readings:
                raise InputError(
                    f"rows: {len(request.rows)} rows in one request, the limit is "
                    f"{service.settings.max_readings}; split the batch"
                )
            frame, dropped = frame_from_rows(request.rows, service.limits)
            source = "packet_rows"
    else:
        raise InputError(
            f"content-type: {media!r} is not accepted; send text/csv (the packet format) or "
            'application/json ({"readings": [...]} or {"rows": [...]})'
        )
    if len(frame) > service.settings.max_readings:
        raise InputError(
            f"body: {len(frame)} readings in one request, the limit is {service.settings.max_readings}; split the batch"
        )
    holder = service.hub["anomaly"] if "anomaly" in service.hub.holders else None
    loaded = holder.current() if holder is not None else None
    answer: dict[str, Any] = {}

    def score(conn: Any, new_rows: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        scored = None
        predictions: list[dict[str, Any]] = []
        if loaded is not None:
            scored = service.score_anomalies(new_rows.reset_index(drop=True), loaded)
            answer.update(scored)
            predictions = prediction_rows(new_rows, scored, now_us())
        # the alert rules run on every stored reading, scored or not (thresholds need no model)
        alerts = service.alert_engine.evaluate(new_rows, scored, lambda keys: store.open_alert_kinds(conn, keys))
        return predictions, alerts

    result = store.ingest(frame, source, score)
    out: dict[str, Any] = {
        "received": result.received,
        "stored": result.stored,
        "duplicates": result.duplicates,
        "packets": result.packets,
        "scored": answer.get("count", 0),
        "flagged": answer.get("flagged", 0),
        "unknown": answer.get("unknown", 0),
        "model": answer.get("model"),
        "anomalies": [
            {k: r[k] for k in ("prediction_id", "CellID", "Timestamp", "AnomalyScore", "AnomalyKind", "reason")}
            for r in answer.get("results", [])
            if r["AnomalyFlag"]
        ],
        "alerts": [a for a in result.alerts if not a.get("suppressed")],
        "dropped_rows": dropped,
    }
    if result.stored and loaded is None:
        out["not_scored"] = (
            "no anomaly model loaded yet: readings are stored but not scored "
            "(run `bms setup` or the pipeline to train one)"
        )
    elif not result.stored:
        out["not_scored"] = "nothing new to score: every reading was already stored"
    service.metrics.readings.inc(result.stored, model="ingest")
    if result.stored:
        new = result.new_rows
        service.events.publish(
            {
                "type": "ingest",
                "devices": sorted({str(d) for d in new[C.DEVICE_ID].tolist()}),
                "readings": _reading_events(new),
                "scores": [{k: r[k] for k in STREAM_SCORE_FIELDS} for r in answer.get("results", [])],
                "alerts": [a for a in result.alerts if not a.get("suppressed")],
                "model": answer.get("model"),
            }
        )
    opened = [a["alert_id"] for a in result.alerts if a.get("new")]
    if opened:
        publish_alerts(service, opened, "opened")
        service.deliver(opened)
    return out


def publish_alerts(service: Any, alert_ids: list[int], event: str) -> list[dict[str, Any]]:
    """Publish ``{"type": "alert", "event", "alert", "devices"}`` for each alert (stream consumers)."""
    items = service.store.alerts(alert_ids=alert_ids, limit=max(1, len(alert_ids)))["items"]
    for item in sorted(items, key=lambda a: a["alert_id"]):
        service.events.publish({"type": "alert", "event": event, "alert": item, "devices": [item["device_id"]]})
    return list(items)


def _reading_events(new: pd.DataFrame) -> list[dict[str, Any]]:
    fields = [c for c in (C.VOLTAGE, C.TEMPERATURE, C.SPECIFIC_GRAVITY, C.CURRENT, C.AMBIENT) if c in new]
    values = new[fields].astype(object).where(new[fields].notna(), None).to_dict("records")
    stamps = [iso_us(t) for t in new["ts_us"].tolist()]
    devices = new[C.DEVICE_ID].astype(str).tolist()
    numbers = new[C.CELL_NUMBER].astype(int).tolist()
    for record, cell, stamp, device, number in zip(values, new[C.CELL_ID].tolist(), stamps, devices, numbers):
        record["CellID"] = cell
        record["DeviceID"] = device
        record["CellNumber"] = number
        record["Timestamp"] = stamp
    return values


def _cell_filter(frame: pd.DataFrame, cell_number: int | None) -> pd.DataFrame:
    return frame if cell_number is None else frame[frame[C.CELL_NUMBER] == cell_number]


def risk_from_store(service: Any, device: str, cell_number: int | None = None) -> dict[str, Any]:
    """Failure risk of a device's cells (or one cell) from its stored history; stored as predictions."""
    store = require_store(service)
    loaded = service.hub["failure"].require()
    last = store.last_time(device, cell_number)
    if last is None:
        raise InputError(
            f"device_id: no stored readings for {device!r}"
            + (f" cell {cell_number}" if cell_number is not None else "")
        )
    since = last - int(FAILURE_LOOKBACK_HOURS * 3_600_000_000)
    history = store.cell_history(device, since_us=since)  # the whole string: peers matter
    answer = service.failure_frame(history)
    results = answer["results"]
    if cell_number is not None:
        results = [r for r in results if r["CellNumber"] == cell_number]
        answer = dict(answer, results=results)
    created = now_us()
    rows = []
    for r in results:  # one row per cell
        key = store.cell_key(r["DeviceID"], int(r["CellNumber"]))
        if key is None:
            continue
        rows.append(
            {
                "prediction_id": r["prediction_id"],
                "kind": "failure",
                "cell_key": key,
                "ts_us": last,
                "model_name": loaded.name,
                "model_version": loaded.version,
                "score": r["FailureProbability"],
                "flag": None if r["RiskBand"] == "unknown" else bool(r["alarm"]),
                "label": r["RiskBand"],
                "reason": "; ".join(r["reasons"]),
                "created_us": created,
            }
        )
    store.store_predictions(rows)
    answer["as_of"] = iso_us(last)
    keys = {r["CellID"]: store.cell_key(r["DeviceID"], int(r["CellNumber"])) for r in results}
    raised = store.raise_alerts(service.alert_engine.evaluate_risk(results, keys, last))
    answer["alerts"] = [a for a in raised if not a.get("suppressed")]
    opened = [a["alert_id"] for a in raised if a.get("new")]
    if opened:
        publish_alerts(service, opened, "opened")
        service.deliver(opened)
    return answer


def forecast_from_store(
    service: Any, device: str, cell_number: int, steps: int = 25, coverage: float = 0.8
) -> dict[str, Any]:
    """A cell's forecast from its string's stored history; stored in ``forecasts``."""
    store = require_store(service)
    loaded = service.hub["forecast"].require()
    last = store.last_time(device, cell_number)
    if last is None:
        raise InputError(f"device_id: no stored readings for {device!r} cell {cell_number}")
    history = store.cell_history(device, since_us=last - int(FORECAST_LOOKBACK_HOURS * 3_600_000_000))
    answer = service.forecast_frame(history, f"{device}-{cell_number}", steps, coverage)
    key = store.cell_key(device, cell_number)
    created = now_us()
    rows = [
        {
            "cell_key": key,
            "origin_us": last,
            "ts_us": int(to_us(pd.DatetimeIndex([row["Timestamp"]]))[0]),
            "target": row["Target"],
            "step": int(row["Step"]),
            "forecast": row["Forecast"],
            "lower": row["Lower"],
            "upper": row["Upper"],
            "coverage": coverage,
            "model_name": loaded.name,
            "model_version": loaded.version,
            "created_us": created,
        }
        for row in answer["forecast"]
    ]
    store.store_forecast(rows)
    answer["origin"] = iso_us(last)
    return answer


def analyze(service: Any, device: str, cell_number: int, anomalies: int = 20, steps: int = 25) -> dict[str, Any]:
    """One cell's story from the store: latest state, stored anomalies, forecast, failure risk."""
    from bms_schema.state import operating_state

    store = require_store(service)
    last = store.last_time(device, cell_number)
    if last is None:
        raise InputError(
            f"no stored readings for device {device!r} cell {cell_number}: ingest data first "
            "(bms start --demo, or POST /v1/ingest)"
        )
    recent = store.cell_history(device, since_us=last - 24 * 3_600_000_000)
    cell = _cell_filter(recent, cell_number)
    story: dict[str, Any] = {
        "cell_id": f"{device}-{cell_number}",
        "last_reading": iso_us(last),
        "readings_last_24h": int(len(cell)),
    }
    if len(cell):
        latest = cell.iloc[-1]
        story["latest"] = {
            name: (None if pd.isna(latest[name]) else float(latest[name]))
            for name in (C.VOLTAGE, C.TEMPERATURE, C.SPECIFIC_GRAVITY, C.CURRENT, C.AMBIENT)
            if name in cell
        }
        try:
            state = operating_state(recent)
            mine = state[(recent[C.CELL_NUMBER] == cell_number).to_numpy()]
            story["state"] = str(mine.iloc[-1]) if len(mine) and pd.notna(mine.iloc[-1]) else None
        except InputError as exc:  # e.g. too few readings to tell; say why it is unknown
            story["state"] = None
            story["state_note"] = f"operating state unknown: {exc}"
    page = store.predictions_page("anomaly", device=device, cell_number=cell_number, flagged=True, limit=anomalies)
    story["anomalies"] = page["items"]
    for key, call in (
        ("forecast", lambda: forecast_from_store(service, device, cell_number, steps)),
        ("risk", lambda: risk_from_store(service, device, cell_number)),
    ):
        try:
            story[key] = call()
        except (InputError, ModelUnavailable) as exc:
            story[key] = {"unknown": str(exc)}
    return story


def iso_frame_times(values: Any) -> list[str | None]:
    return [iso_us(v) for v in np.asarray(values, dtype=np.int64).tolist()]


__all__ = ["ingest", "risk_from_store", "forecast_from_store", "analyze", "from_us"]
