"""The answer first: which cells are dead, which will fail, which behave abnormally, how good the data is.

Built only from what the tools returned (envelopes and the tables they wrote). A figure no tool
provided is left out or said to be unknown - never made up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import find_artifact
from .outputs import cells_at_risk, first_data, read_json_artifact
from .state import PipelineState

#: Cells listed "at risk": the failure model's alarm (band ``high``: its probability over the alarm
#: horizon at or above the threshold calibrated on held-out cells), not every cell with a few percent.
AT_RISK_BANDS = ("high",)
COLUMN_NAMES = {
    "CellVoltage": "cell voltage",
    "CellTemperature": "cell temperature",
    "CellSpecificGravity": "specific gravity",
    "InstantaneousCurrent": "current",
    "AmbientTemperature": "ambient temperature",
    "StringVoltage": "string voltage",
}


@dataclass
class FleetSummary:
    cells: int | None = None
    horizon_days: float | None = None
    dead: list[dict[str, Any]] = field(default_factory=list)
    at_risk: list[dict[str, Any]] = field(default_factory=list)
    watch: list[dict[str, Any]] = field(default_factory=list)  # highest living risks when none is at risk
    abnormal: list[dict[str, Any]] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    per_cell: list[dict[str, Any]] = field(default_factory=list)
    failure_known: bool = False
    anomaly_known: bool = False


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def remaining_life(row: dict[str, Any]) -> str:
    """``"12 d (p10 5 d - p90 30 d)"`` from the failure table's remaining-life columns, else ``""``. The
    model's own text (``RemainingLifeText``: beyond what it saw in training as ``"> N d"``) when it gives one."""
    given = row.get("RemainingLifeText")
    if given is not None and str(given) not in ("", "nan", "None"):
        return str(given)
    cols = {k.lower(): k for k in row}

    def pick(*needles: str) -> float | None:
        for low, key in cols.items():
            if ("rul" in low or "remaining" in low or "life" in low) and all(n in low for n in needles):
                value = _num(row[key])
                if value is not None:
                    return value
        return None

    p50 = pick("p50") if pick("p50") is not None else pick("median")
    if p50 is None:
        p50 = next(
            (
                v
                for low, key in cols.items()
                if low in ("rul_days", "remaininglifedays", "rul")
                for v in [_num(row[key])]
                if v is not None
            ),
            None,
        )
    if p50 is None:
        return ""
    p10, p90 = pick("p10"), pick("p90")
    text = f"{p50:.0f} d"
    if p10 is not None and p90 is not None:
        text += f" (p10 {p10:.0f} d - p90 {p90:.0f} d)"
    return text


def _failure_rows(state: PipelineState) -> list[dict[str, Any]]:
    cells = cells_at_risk(state)
    table = _read(
        find_artifact(
            state.envelopes("failure"), suffixes=(".csv", ".parquet"), contains=("prediction", "failure", "risk")
        )
    )
    raw: dict[str, dict[str, Any]] = {}
    if table is not None and "CellID" in table.columns:
        raw = {str(r["CellID"]): r for r in table.to_dict(orient="records")}
    for cell in cells:
        row = raw.get(cell["cell_id"], {})
        cell["remaining_life"] = "" if cell["already_dead"] else remaining_life(row)
        cell["dead_source"] = _text(row.get("DeadSource"))
        cell["alarm"] = str(row.get("Alarm")).lower() in ("true", "1", "1.0")
        cell["action"] = _text(row.get("RecommendedAction"))
    return cells


def _text(value: Any) -> str:
    return "" if value is None or str(value) in ("nan", "None") else str(value)


def _read(art: dict[str, Any] | None) -> Any:
    if art is None or not Path(art["path"]).exists():
        return None
    import pandas as pd

    path = Path(art["path"])
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception:  # an unreadable table: report without it
        return None


def _abnormal(state: PipelineState, dead: set[str]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Living cells whose statistical anomaly count stands out from the fleet's (sensor faults are data quality)."""
    table = _read(find_artifact(state.envelopes("anomaly"), suffixes=(".csv", ".parquet"), contains=("cell_summary",)))
    if table is None or "CellID" not in table.columns or "statistical" not in table.columns:
        return [], {}
    table = table.assign(CellID=table["CellID"].astype(str))
    by_cell = {r["CellID"]: r for r in table.to_dict(orient="records")}
    living = table[~table["CellID"].isin(dead)]
    if living.empty:
        return [], by_cell
    median = float(living["statistical"].median())
    cut = max(3.0, 2.0 * median)
    flagged = living[living["statistical"] >= cut].sort_values("statistical", ascending=False)
    reasons = _episode_reasons(state)
    out = []
    for row in flagged.head(8).to_dict(orient="records"):
        readings = int(row.get("readings") or 0)
        out.append(
            {
                "cell_id": row["CellID"],
                "statistical": int(row["statistical"]),
                "readings": readings,
                "share": row["statistical"] / readings if readings else None,
                "peak_score": _num(row.get("max_score")),
                "fleet_median": median,
                "reason": reasons.get(row["CellID"], ""),
            }
        )
    return out, by_cell


def _episode_reasons(state: PipelineState) -> dict[str, str]:
    """The reason of each cell's worst statistical anomaly episode."""
    table = _read(find_artifact(state.envelopes("anomaly"), suffixes=(".csv",), contains=("episodes",)))
    if table is None or not {"CellID", "kind", "reason"} <= set(table.columns):
        return {}
    stat = table[table["kind"].astype(str) == "statistical"]
    if "peak_score" in stat.columns:
        stat = stat.sort_values("peak_score", ascending=False)
    return {str(c): str(r) for c, r in zip(stat["CellID"], stat["reason"]) if str(r) != "nan"} if len(stat) else {}


def _quality(state: PipelineState) -> list[str]:
    data = first_data(state, "preprocess")
    report = read_json_artifact(state.envelopes("preprocess"), "quality") or {}
    rows_in = data.get("rows_in") or report.get("rows_in")
    lines = []

    def share(n: float) -> str:
        return f" ({n / rows_in:.1%} of {rows_in:,} rows)" if rows_in else ""

    sentinel = data.get("sentinel_rows", report.get("sentinel_rows"))
    if sentinel is not None:
        cols = [COLUMN_NAMES.get(k, k) for k, v in (report.get("sentinel_by_column") or {}).items() if v]
        lines.append(
            f"Sensor dropouts (0xFFFF, no reading): {sentinel:,} rows{share(sentinel)}"
            + (f", in {', '.join(cols)}" if cols else "")
            + "."
        )
    oor = data.get("out_of_range_rows", report.get("out_of_range_rows"))
    if oor is not None:
        lines.append(f"Physically impossible readings: {oor:,} rows{share(oor)}.")
    dup = data.get("duplicates_dropped", report.get("duplicates_dropped"))
    if dup is not None:
        lines.append(f"Duplicate packets dropped: {dup:,}.")
    imputed = data.get("imputed_values")
    if isinstance(imputed, dict):
        total = sum(int(v or 0) for v in imputed.values())
        lines.append(f"Missing values filled in (imputed): {total:,}.")
    gaps = data.get("time_gaps")
    if gaps is not None:
        lines.append(f"Gaps in the time series: {gaps:,}.")
    if not lines:
        kinds = first_data(state, "anomaly").get("kinds") or {}
        if kinds:
            lines.append(
                f"Sensor faults seen by the anomaly detector: {kinds.get('sensor_fault', 0):,} readings; "
                f"impossible values: {kinds.get('out_of_range', 0):,}."
            )
    return lines


def _reason(text: str) -> str:
    """A model's reasons joined as a sentence (kept whole: values are never cut)."""
    return re.sub(r"\s+", " ", text or "").strip()


def fleet_summary(state: PipelineState) -> FleetSummary:
    out = FleetSummary()
    failure = dict(((state.envelopes("failure") or [{}])[-1]).get("data") or {})  # the prediction, after any training
    out.horizon_days = _num(failure.get("horizon_days"))
    cells = _failure_rows(state) if state.ok("failure") else []
    out.failure_known = bool(cells)
    out.cells = len(cells) or failure.get("cells")
    dead_ids = {c["cell_id"] for c in cells if c["already_dead"]}
    out.dead = [c for c in cells if c["already_dead"]]
    living = [c for c in cells if not c["already_dead"]]
    out.at_risk = [c for c in living if str(c["band"]).lower() in AT_RISK_BANDS or c.get("alarm")]
    if not out.at_risk:
        out.watch = living[:3]
    out.anomaly_known = state.ok("anomaly")
    out.abnormal, anomaly_by_cell = _abnormal(state, dead_ids) if out.anomaly_known else ([], {})
    out.quality = _quality(state)
    abnormal_ids = {a["cell_id"] for a in out.abnormal}
    for c in cells:
        a = anomaly_by_cell.get(c["cell_id"], {})
        state_word = (
            "dead"
            if c["already_dead"]
            else "at risk"
            if c in out.at_risk
            else "abnormal"
            if c["cell_id"] in abnormal_ids
            else "ok"
        )
        out.per_cell.append(
            {
                **c,
                "state": state_word,
                "statistical": a.get("statistical"),
                "sensor_fault": a.get("sensor_fault"),
                "readings": a.get("readings"),
            }
        )
    if not cells:
        for cell_id, a in anomaly_by_cell.items():
            out.per_cell.append(
                {
                    "cell_id": cell_id,
                    "state": "abnormal" if cell_id in abnormal_ids else "ok",
                    "probability": None,
                    "band": "",
                    "remaining_life": "",
                    "reasons": "",
                    "statistical": a.get("statistical"),
                    "sensor_fault": a.get("sensor_fault"),
                    "readings": a.get("readings"),
                }
            )
    out.actions = _actions(out, state)
    return out


def _actions(s: FleetSummary, state: PipelineState) -> list[str]:
    actions = []
    if s.dead:
        ids = ", ".join(c["cell_id"] for c in s.dead)
        modelled = [c["cell_id"] for c in s.dead if c.get("dead_source") and "label" not in c["dead_source"].lower()]
        extra = (
            f" (confirm {', '.join(modelled)} with a capacity test: the model, not a label, says dead)"
            if modelled
            else ""
        )
        actions.append(f"Replace the dead cell{'s' if len(s.dead) > 1 else ''} {ids}{extra}.")
    for c in s.at_risk:
        if c.get("action"):
            actions.append(f"{c['cell_id']}: {c['action']}.")
    high = [c["cell_id"] for c in s.at_risk if str(c["band"]).lower() == "high" and not c.get("action")]
    medium = [c["cell_id"] for c in s.at_risk if str(c["band"]).lower() != "high" and not c.get("action")]
    if high:
        actions.append(f"Inspect {', '.join(high)} now (impedance and capacity test) and have replacements ready.")
    if medium:
        actions.append(f"Schedule an impedance/capacity test for {', '.join(medium)}.")
    if s.abnormal:
        actions.append(
            f"Look at the anomaly episodes of {', '.join(a['cell_id'] for a in s.abnormal[:5])} "
            "(worst_episodes.csv of the anomaly step): connections, temperature, sensor."
        )
    data = first_data(state, "preprocess")
    rows_in, sentinel = data.get("rows_in"), data.get("sentinel_rows")
    if rows_in and sentinel and sentinel / rows_in > 0.05:
        actions.append(
            f"Check the BMS sensor wiring/firmware: {sentinel / rows_in:.0%} of the rows are 0xFFFF dropouts."
        )
    if not actions and (s.failure_known or s.anomaly_known):
        actions.append("No action needed: no dead, at-risk or abnormal cells.")
    return actions
