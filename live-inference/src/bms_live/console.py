"""What the dashboard shows that no other route answers in one call: every cell of the fleet with its
deviation from its string's peers, its stored failure risk and open alerts, dead and at-risk cells
first; and every registered model version with its aliases and promotion decisions.

Plain functions over :class:`bms_live.store.Store` and :class:`bms_schema.registry.ModelRegistry`;
the routes in :mod:`bms_live.dashboard` only call them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C

from .store import MAX_PAGE, iso_us

#: Measurements compared with the string's peers (the heatmap's choices) and their display unit.
PEER_METRICS: dict[str, str] = {C.VOLTAGE: "V", C.TEMPERATURE: "°C", C.SPECIFIC_GRAVITY: "SG"}
#: Cell status, most urgent first: the stored failure risk band decides dead / at risk; an open
#: alert makes an otherwise healthy cell "alerting"; a cell never scored for risk is "unscored".
STATUS_ORDER: tuple[str, ...] = ("dead", "at_risk", "watch", "alerting", "unknown", "ok", "unscored")
#: A cell's "latest" value of a measurement is its newest valid one within this many hours before
#: its last reading (a packet lost or a sensor fault at the last timestamp does not blank the cell).
LATEST_WINDOW_HOURS = 6.0
BAND_STATUS = {
    "dead": "dead",
    "high": "at_risk",
    "medium": "watch",
    "low": "ok",
    "unknown": "unknown",
    "insufficient_history": "unknown",
}


def _all_pages(fetch: Any) -> list[dict[str, Any]]:
    """Every item of a paginated store query (``fetch(limit, offset)``)."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = fetch(MAX_PAGE, offset)
        items.extend(page["items"])
        offset = page["next_offset"]
    return items


def peer_deviation(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Each cell's latest value minus the median of its string's latest values (the string median, as
    :func:`bms_schema.features.string_deviation` does per timestamp). NaN when fewer than two cells of
    the string have that measurement (no peers to compare with) or the cell has none."""
    values = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    median = values.groupby(frame["device_id"]).transform("median")
    peers = values.notna().groupby(frame["device_id"]).transform("sum")
    deviation = (values - median).to_numpy(dtype=np.float64)
    deviation[peers.to_numpy() < 2] = np.nan
    return deviation


def fleet_cells(store: Any) -> dict[str, Any]:
    """Every cell with its latest valid values (:data:`LATEST_WINDOW_HOURS`), deviation from its string's
    peers (V, °C, SG), latest stored
    failure risk, open alerts and flagged readings in the last 24 h; sorted dead, at risk, watch,
    alerting, ... (then by risk, then by the largest voltage deviation); plus per-device counts."""
    cells = _all_pages(lambda limit, offset: store.cells(None, limit=limit, offset=offset))
    if not cells:
        return {"cells": [], "devices": [], "metrics": {}, "status_order": list(STATUS_ORDER), "as_of": None}
    risk = {
        r["cell_id"]: r
        for r in _all_pages(
            lambda limit, offset: store.predictions_page("failure", latest_per_cell=True, limit=limit, offset=offset)
        )
    }
    alerts = [
        a
        for status in ("open", "acknowledged")  # not the resolved history
        for a in _all_pages(lambda limit, offset, status=status: store.alerts(status, limit=limit, offset=offset))
    ]
    open_alerts: dict[str, int] = {}  # per cell
    device_alerts: dict[str, int] = {}  # per string, its cells' alerts and its own (e.g. drift)
    for a in alerts:
        if a["cell_id"] is not None:
            open_alerts[a["cell_id"]] = open_alerts.get(a["cell_id"], 0) + 1
        if a["device_id"] is not None:
            device_alerts[a["device_id"]] = device_alerts.get(a["device_id"], 0) + 1
    frame = pd.DataFrame(
        {
            "cell_id": [c["cell_id"] for c in cells],
            "device_id": [c["device_id"] for c in cells],
            "cell_number": [c["cell_number"] for c in cells],
            "last_reading": [c["last_reading"] for c in cells],
            **{m: [c["last"].get(m) for c in cells] for m in PEER_METRICS},
        }
    )
    last_times = pd.to_datetime(frame["last_reading"], utc=True, errors="coerce")
    _fill_latest_valid(store, frame, last_times)
    newest = last_times.max()
    recent: dict[str, int] = {}
    if pd.notna(newest):
        since = int((newest - pd.Timedelta(hours=24)).value // 1000)
        flagged = _all_pages(
            lambda limit, offset: store.predictions_page(
                "anomaly", start_us=since, flagged=True, limit=limit, offset=offset
            )
        )
        for p in flagged:
            recent[p["cell_id"]] = recent.get(p["cell_id"], 0) + 1
    deviations = {m: peer_deviation(frame, m) for m in PEER_METRICS}
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    rows = []
    for i, cell_id in enumerate(frame["cell_id"].tolist()):
        r = risk.get(cell_id)
        band = r["label"] if r else None
        status = BAND_STATUS.get(str(band), "unknown") if r else "unscored"
        n_open = open_alerts.get(cell_id, 0)
        if n_open and status in ("ok", "unscored", "unknown"):
            status = "alerting"
        rows.append(
            {
                "cell_id": cell_id,
                "device_id": frame["device_id"].iat[i],
                "cell_number": int(frame["cell_number"].iat[i]),
                "last_reading": frame["last_reading"].iat[i],
                "status": status,
                "risk_band": band,
                "failure_probability": r["score"] if r else None,
                "risk_reason": r["reason"] if r else None,
                "risk_as_of": r["timestamp"] if r else None,
                "open_alerts": n_open,
                "anomalies_24h": recent.get(cell_id, 0),
                "last": {m: _number(frame[m].iat[i]) for m in PEER_METRICS},
                "deviation": {m: _number(deviations[m][i]) for m in PEER_METRICS},
            }
        )
    rows.sort(
        key=lambda row: (
            rank[row["status"]],
            -(row["failure_probability"] or 0.0),
            -abs(row["deviation"][C.VOLTAGE] or 0.0),
            row["device_id"],
            row["cell_number"],
        )
    )
    devices = []
    for device, group in frame.groupby("device_id", sort=True):
        mine = [row for row in rows if row["device_id"] == device]
        counts = {s: sum(1 for row in mine if row["status"] == s) for s in STATUS_ORDER}
        devices.append(
            {
                "device_id": device,
                "cells": len(mine),
                "status_counts": counts,
                "open_alerts": device_alerts.get(str(device), 0),
                "anomalies_24h": sum(row["anomalies_24h"] for row in mine),
                "has_specific_gravity": bool(group[C.SPECIFIC_GRAVITY].notna().any()),
                "last_reading": max((row["last_reading"] for row in mine if row["last_reading"]), default=None),
            }
        )
    metrics = {m: {"unit": unit, "available": bool(frame[m].notna().any())} for m, unit in PEER_METRICS.items()}
    return {
        "cells": rows,
        "devices": devices,
        "metrics": metrics,
        "status_order": list(STATUS_ORDER),
        "as_of": iso_us(int(newest.value // 1000)) if pd.notna(newest) else None,
    }


def _fill_latest_valid(store: Any, frame: pd.DataFrame, last_times: pd.Series) -> None:
    """Replace each cell's last-row measurements by its newest valid ones within
    :data:`LATEST_WINDOW_HOURS` (one readings query per string)."""
    window = pd.Timedelta(hours=LATEST_WINDOW_HOURS)
    metrics = list(PEER_METRICS)
    for device, times in last_times.groupby(frame["device_id"]):
        newest = times.max()
        if pd.isna(newest):
            continue
        since = int((newest - window).value // 1000)
        items = _all_pages(
            lambda limit, offset, device=device, since=since: store.readings(
                str(device), None, since, None, limit=limit, offset=offset
            )
        )
        if not items:
            continue
        recent = pd.DataFrame(items)
        latest = recent.groupby("cell_id")[[m for m in metrics if m in recent]].last()  # last() skips missing
        mine = frame["device_id"] == device
        for m in latest.columns:
            found = frame.loc[mine, "cell_id"].map(latest[m])
            frame.loc[mine, m] = found.where(found.notna(), frame.loc[mine, m])


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if np.isnan(number) else number


def model_versions(registry: Any) -> dict[str, Any]:
    """Every registered model: versions (metrics, aliases), champion / challenger, decisions."""
    return {"models": [registry.history(name) for name in registry.names()]}
