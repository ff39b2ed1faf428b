"""Read the facts a report needs out of the tools' envelopes and the tables they wrote.

Everything here comes from what the tools returned: ``data`` values and artifact files found
by kind/name/columns. When a tool did not provide a figure, it is reported as missing - never
made up.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .artifacts import TABLE_SUFFIXES, artifacts_of, find_artifact
from .state import PipelineState

log = logging.getLogger("bms.agent")

CELL_COLUMNS = ("CellID", "cell_id", "Cell ID")
PROBABILITY_COLUMNS = ("FailureProbability", "failure_probability", "probability")


def first_data(state: PipelineState, stage: str) -> dict[str, Any]:
    envs = state.envelopes(stage)
    return dict(envs[0].get("data") or {}) if envs else {}


def read_json_artifact(envelopes: list[dict[str, Any]], *words: str) -> dict[str, Any] | None:
    art = find_artifact(envelopes, suffixes=(".json",), contains=words)
    if art is None:
        return None
    try:
        value = json.loads(Path(art["path"]).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("cannot read %s: %s", art["path"], exc)
        return None
    return value if isinstance(value, dict) else {"value": value}


def _table_with(envelopes: list[dict[str, Any]], columns: tuple[str, ...]):
    """The first CSV/Parquet artifact whose header has one of ``columns``, read with pandas."""
    import pandas as pd

    from .sampling import table_columns

    for env in envelopes:
        for art in artifacts_of(env):
            path = Path(art["path"])
            if path.suffix.lower() not in TABLE_SUFFIXES or not path.exists():
                continue
            try:
                header = table_columns(path)
            except Exception:  # unreadable table: try the next one
                continue
            if any(c in header for c in columns):
                return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    return None


def _cell_id(row: dict[str, Any]) -> str:
    for name in CELL_COLUMNS:
        if row.get(name) not in (None, ""):
            return str(row[name])
    if row.get("DeviceID") is not None and row.get("CellNumber") is not None:
        return f"{row['DeviceID']}-{int(row['CellNumber'])}"
    return "?"


def cells_at_risk(state: PipelineState, limit: int | None = None) -> list[dict[str, Any]]:
    """Cells by falling failure probability, from the failure stage's per-cell table.

    Each: ``cell_id``, ``probability``, ``band``, ``already_dead``, ``reasons`` (text).
    """
    envs = state.envelopes("failure")
    if not envs:
        return []
    table = _table_with(envs, PROBABILITY_COLUMNS)
    if table is None:
        return []
    prob = next(c for c in PROBABILITY_COLUMNS if c in table.columns)
    table = table.sort_values(prob, ascending=False, kind="stable")
    if limit is not None:
        table = table.head(limit)
    band_col = next((c for c in table.columns if c.lower() in ("riskband", "risk_band", "band", "risk")), None)
    dead_col = next((c for c in table.columns if c.lower() in ("alreadydead", "already_dead", "isdead", "dead")), None)
    reason_cols = [c for c in table.columns if "reason" in c.lower()]
    cells = []
    for row in table.to_dict(orient="records"):
        reasons = [str(row[c]) for c in reason_cols if row.get(c) not in (None, "") and str(row[c]) != "nan"]
        cells.append(
            {
                "cell_id": _cell_id(row),
                "probability": float(row[prob]),
                "band": str(row[band_col]) if band_col else "",
                "already_dead": bool(row[dead_col]) if dead_col and str(row[dead_col]) != "nan" else False,
                "reasons": "; ".join(reasons),
            }
        )
    return cells


def forecasts(state: PipelineState) -> list[dict[str, Any]]:
    """Per forecast call: the cell, and per target the first/last forecast with its interval."""
    out = []
    for call in state.stages["forecast"].calls if state.ok("forecast") else []:
        table = _table_with([call.envelope], ("Forecast",))
        entry: dict[str, Any] = {"cell_id": call.arguments.get("cell_id"), "targets": []}
        if table is not None and {"Target", "Step", "Forecast"} <= set(table.columns):
            for target, group in table.groupby("Target", sort=True):
                group = group.sort_values("Step")
                last = group.iloc[-1]
                entry["targets"].append(
                    {
                        "target": str(target),
                        "steps": int(group["Step"].max()),
                        "first": float(group["Forecast"].iloc[0]),
                        "last": float(last["Forecast"]),
                        "lower": float(last["Lower"]) if "Lower" in group else None,
                        "upper": float(last["Upper"]) if "Upper" in group else None,
                    }
                )
        entry["message"] = call.envelope.get("message", "")
        out.append(entry)
    return out


def models_registered(state: PipelineState, workspace: Path) -> list[dict[str, Any]]:
    """Models written during this run (from the step manifests), with the registry's metrics."""
    from bms_schema import ModelError
    from bms_schema.registry import ModelRegistry

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for manifest in sorted(state.run_dir.glob("*/manifest.json")):
        try:
            step = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for model in step.get("models") or []:
            if (model["name"], model["version"]) in found:  # keep the step that wrote it first
                continue
            found[(model["name"], model["version"])] = {
                "name": model["name"],
                "version": model["version"],
                "step": step.get("step"),
                "path": model.get("path"),
            }
    registry = ModelRegistry(workspace / "models")
    for (name, version), entry in found.items():
        try:
            meta = registry.load(name, version, verify=False).metadata
        except ModelError:
            meta = {}
        entry["metrics"] = meta.get("metrics", {})
        entry["facts"] = {
            k: v
            for k, v in meta.items()
            if isinstance(v, (int, float, str))
            and k not in ("name", "version", "created", "schema_version", "reference_features")
        }
        entry["latest"] = registry.latest_version(name) == version
    return sorted(found.values(), key=lambda m: (m["name"], m["version"]))


def scalar_items(data: Any, prefix: str = "", limit: int = 40) -> list[tuple[str, Any]]:
    """Flatten the scalar values of a nested dict into (dotted key, value), bounded."""
    items: list[tuple[str, Any]] = []

    def walk(value: Any, key: str) -> None:
        if len(items) >= limit:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif (
            isinstance(value, (int, float, str, bool))
            and not isinstance(value, str)
            or (isinstance(value, str) and len(value) <= 80)
        ):
            items.append((key, value))

    walk(data, prefix)
    return items
