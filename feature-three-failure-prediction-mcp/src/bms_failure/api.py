"""Use cases behind the tools (also the in-process API for live inference and the agent).

```python
from bms_failure.api import load_failure_model, predict_failure
model = load_failure_model()                     # the champion failure_classifier (survival model)
table = model.predict(history_frame)             # per-cell risk, remaining life, alarms; no labels needed
outcome = predict_failure(frame, horizon_days=14) # same logic as the tool (never trains)
```
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import ModelRegistry, read_table
from bms_schema import columns as C

from .config import LOGGER, MODEL_NAME, FeatureConfig
from .features import as_canonical, build_feature_grid
from .labels import death_times, has_dead_labels, label_grid
from .model import FailureModel, load_failure_model
from .training import TrainingResult, check_horizon, train_failure_model

log = logging.getLogger(LOGGER)

__all__ = ["PredictionOutcome", "load_failure_model", "load_readings_frame", "predict_failure", "train_and_register"]


def load_readings_frame(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read raw packets / a minimal table / a canonical table as the canonical table, de-duplicated.

    Through the data core's one loader (``bms_schema.loader.load_canonical``): only the columns
    the core uses are read (a raw packet file has 73), normalised, de-duplicated and sorted. Not
    imputed and no row features: bucket means skip missing readings, and the share of missing
    readings is itself a feature.
    """
    from bms_schema.loader import load_canonical

    frame, report = load_canonical(
        Path(path), features=False, impute="none", columns="used", check=False, return_report=True
    )
    keys = (
        "input_format",
        "rows_in",
        "rows_out",
        "duplicates_dropped",
        "conflicting_rows_dropped",
        "devices",
        "cells",
        "sentinel_rows",
        "out_of_range_rows",
        "time_range",
        "columns_read",
    )
    return frame, {k: report[k] for k in keys}


def load_anomalies(path: str | Path | None) -> pd.DataFrame | None:
    """An anomaly result table (e.g. from bms_anomaly): only its id, time and flag columns are read."""
    from bms_schema.reader import column_names

    from .features import ANOMALY_FLAG_COLUMNS

    if path is None:
        return None
    path = Path(path)
    names = column_names(path)
    keep = [n for n in names if n in {C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, *ANOMALY_FLAG_COLUMNS}]
    return read_table(path, columns=keep or None)


@dataclass
class PredictionOutcome:
    table: pd.DataFrame
    model: FailureModel
    #: When the input carries labels: the registered model scored over its history (no training on it).
    input_evaluation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    grid: Any = None


@dataclass
class TrainingOutcome:
    result: TrainingResult
    #: ``bms_schema.model_protocol.Registered``: version, alias (champion/challenger), decision.
    registered: Any

    @property
    def model(self) -> FailureModel:
        return self.result.model

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result.metrics


def train_and_register(
    frame: pd.DataFrame,
    horizon_days: float = 7.0,
    anomalies: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    seed: int = 0,
    registry: ModelRegistry | None = None,
    extra_metadata: dict[str, Any] | None = None,
    progress: Callable[[float, str], None] | None = None,
    promote: bool = False,
    validate: bool = True,
    prior: pd.DataFrame | None = None,
    prior_weight: float = 1.0,
) -> TrainingOutcome:
    """Train (see :func:`bms_failure.training.train_failure_model`) and register a candidate version: it
    becomes champion when it beats the champion on its held-out cells (or with ``promote``). ``prior``: a
    labelled fleet (e.g. simulated) pooled into training, each of its samples weighing ``prior_weight``."""
    from bms_schema.coverage import require_inputs

    require_inputs(as_canonical(frame), REQUIRED_INPUTS, "train the failure model")
    result = train_failure_model(
        frame,
        horizon_days,
        config=config,
        anomalies=anomalies,
        seed=seed,
        progress=progress,
        validate=validate,
        prior=prior,
        prior_weight=prior_weight,
    )
    grid = result.grid
    trained_on = {
        "rows": int(len(frame)),
        "cells": int(len(grid.cells)) if grid is not None else None,
        "time_range": [grid.data_start, grid.data_end] if grid is not None else None,
        **(extra_metadata or {}),
    }
    if result.model.card is not None and extra_metadata and extra_metadata.get("fingerprint"):
        result.model.card.data_fingerprint = str(extra_metadata["fingerprint"])
    registered = result.model.register(
        result.model.holdout, registry, promote=promote, metadata={"trained_on": trained_on, "seed": seed}
    )
    return TrainingOutcome(result=result, registered=registered)


def _evaluate_on_input(model: FailureModel, frame: pd.DataFrame, grid: Any) -> dict[str, Any] | None:
    """Score a registered model on the labelled history of new data (no training on it), at every
    horizon, next to the IEEE rules and the trend-to-threshold estimate."""
    from .labels import sampling_points
    from .training import horizon_report, rul_metrics

    deaths = death_times(frame)
    if deaths.notna().sum() == 0:
        return None
    labelled = label_grid(grid, deaths, 24.0)
    rows = labelled.loc[sampling_points(labelled, grid) & labelled["Alive"].to_numpy()].reset_index(drop=True)
    if len(rows) == 0:
        return None
    mu = model.margin(rows)
    out = horizon_report(rows, lambda h: model.distribution.probability(mu, h), grid.data_end)
    out["remaining_life"] = rul_metrics(
        rows, {q: model.distribution.quantile(mu, v) for q, v in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))}
    )
    out["note"] = (
        "registered model scored on every labelled sample point of this input; optimistic if the "
        "model was trained on the same data"
    )
    return out


def predict_failure(
    frame: pd.DataFrame,
    horizon_days: float = 7.0,
    model_version: str = "champion",
    anomalies: pd.DataFrame | None = None,
    registry: ModelRegistry | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> PredictionOutcome:
    """Per-cell failure probability within ``horizon_days``, remaining life (p10/p50/p90), state of
    health, alarms and the trend-to-threshold estimate, as of the last reading of ``frame``.

    Uses the registered model (``champion`` by default, or ``model_version``); it never trains: with
    no model registered the error names ``train_failure_model``. No labels are needed.
    """
    check_horizon(horizon_days)
    frame = as_canonical(frame)
    registry = registry or ModelRegistry()
    step = progress or (lambda fraction, message: None)
    model = load_failure_model(model_version or "champion", horizon_days=horizon_days, registry=registry)
    grid = build_feature_grid(frame, model.config, anomalies)
    notes = [f"predicted with registered {MODEL_NAME} {model.version}"]
    step(0.6, "scoring every cell as of the last reading")
    table = model.predict(frame, anomalies, grid=grid, horizon_days=horizon_days)
    table, unknown = _unknown_without_inputs(frame, table)
    if unknown:
        notes.append(
            f"{len(unknown)} cell(s) unknown: no {', '.join(sorted({c for v in unknown.values() for c in v}))} "
            "reading (not scored)"
        )
    evaluation = _evaluate_on_input(model, frame, grid) if has_dead_labels(frame) else None
    return PredictionOutcome(table=table, model=model, input_evaluation=evaluation, notes=notes, grid=grid)


#: Measurements a cell needs before the failure model may score it (bms_schema.coverage).
REQUIRED_INPUTS = (C.VOLTAGE,)
#: Figures of a cell that become missing when it is unknown.
UNKNOWN_COLUMNS = (
    "StateOfHealth",
    "RemainingLifeDays",
    "RemainingLifeP10",
    "RemainingLifeP90",
    "FailureProbability7d",
    "FailureProbability14d",
    "FailureProbability30d",
    "AlarmLeadDays",
    "TrendDaysToThreshold",
)


def _unknown_without_inputs(frame: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Cells with no value of a required input get probability/band "unknown" (a label still says dead)."""
    from bms_schema.coverage import input_coverage, mark_unknown

    keep = table["DeadSource"].astype(str).eq("IsDead label") if "DeadSource" in table.columns else None
    table, unknown = mark_unknown(
        table,
        input_coverage(frame),
        REQUIRED_INPUTS,
        probability="FailureProbability",
        band="RiskBand",
        reasons="TopReasons",
        keep=keep,
    )
    if unknown:  # every figure of the cell, not only the probability
        rows = table[C.CELL_ID].astype(str).isin(list(unknown)).to_numpy() & (table["RiskBand"] == "unknown").to_numpy()
        for column in UNKNOWN_COLUMNS:
            if column in table.columns:
                table.loc[rows, column] = np.nan
        table.loc[rows, "Alarm"] = False
        for column in ("AlarmTrigger", "RecommendedAction", "TrendRule"):
            table.loc[rows, column] = ""
    if unknown and "AlreadyDead" in table.columns:
        rows = table[C.CELL_ID].astype(str).isin(list(unknown)).to_numpy()
        table.loc[rows, "AlreadyDead"] = False
        if "DeadSource" in table.columns:
            table.loc[rows, "DeadSource"] = ""
    return table, unknown


def top_at_risk(table: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` living cells most likely to fail (JSON-ready)."""
    alive = table.loc[~table["AlreadyDead"] & table["FailureProbability"].notna()].head(n)

    def num(value: Any, digits: int) -> float | None:
        return None if value is None or not np.isfinite(value) else round(float(value), digits)

    return [
        {
            "CellID": r.CellID,
            "DeviceID": r.DeviceID,
            "CellNumber": int(r.CellNumber),
            "FailureProbability": num(r.FailureProbability, 4),
            "RiskBand": r.RiskBand,
            "StateOfHealth": num(r.StateOfHealth, 1),
            "RemainingLifeDays": num(r.RemainingLifeDays, 1),
            "RemainingLifeP10": num(r.RemainingLifeP10, 1),
            "RemainingLifeP90": num(r.RemainingLifeP90, 1),
            "RemainingLifeText": r.RemainingLifeText,
            "Alarm": bool(r.Alarm),
            "AlarmTrigger": r.AlarmTrigger,
            "RecommendedAction": r.RecommendedAction,
            "TrendDaysToThreshold": num(r.TrendDaysToThreshold, 1),
            "TrendRule": r.TrendRule,
            "TopReasons": r.TopReasons,
        }
        for r in alive.itertuples(index=False)  # at most n rows
    ]


def alarms(table: pd.DataFrame, n: int = 50) -> list[dict[str, Any]]:
    """The alarmed cells: trigger, lead time (expected remaining life) and the recommended action."""
    hit = table.loc[table["Alarm"]].head(n)
    return [
        {
            "CellID": r.CellID,
            "trigger": r.AlarmTrigger,
            "lead_time_days": round(float(r.AlarmLeadDays), 1),
            "lead_time_p10_days": round(float(r.RemainingLifeP10), 1),
            "action": r.RecommendedAction,
            "probability_30d": round(float(r.FailureProbability30d), 4),
        }
        for r in hit.itertuples(index=False)  # at most n rows
    ]


def band_counts(table: pd.DataFrame) -> dict[str, int]:
    counts = table["RiskBand"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def dead_cells(table: pd.DataFrame) -> list[str]:
    return table.loc[table["AlreadyDead"], C.CELL_ID].astype(str).tolist()


def mean_contributions(model: FailureModel, table: pd.DataFrame, grid_last: pd.DataFrame) -> pd.DataFrame:
    """Mean |contribution| per feature over the scored cells, and over the high-risk ones (for the plot);
    contributions are to the log remaining life, so the sign is flipped: positive = shortens life."""
    scored = table.loc[table["FailureProbability"].notna() & ~table["AlreadyDead"], C.CELL_ID]
    rows = grid_last.set_index(C.CELL_ID).loc[scored].reset_index()
    contribs = -model.contributions(rows)[:, :-1] if len(rows) else np.zeros((0, len(model.features)))
    high = table.set_index(C.CELL_ID).loc[scored, "RiskBand"].to_numpy() == "high"
    return pd.DataFrame(
        {
            "feature": model.features,
            "mean_abs_all": np.abs(contribs).mean(axis=0) if len(contribs) else 0.0,
            "mean_high_risk": contribs[high].mean(axis=0) if high.any() else 0.0,
        }
    ).sort_values("mean_abs_all", ascending=False)
