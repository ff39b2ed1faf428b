"""Use cases behind the tools (also the in-process API for live inference and the agent).

```python
from bms_failure.api import load_failure_model, predict_failure
model = load_failure_model("latest")            # registered failure_classifier
table = model.predict(history_frame)             # per-cell risk, no labels needed
outcome = predict_failure(frame, horizon_days=7)  # trains first when no model fits
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
from bms_schema import InputError, ModelError, ModelRegistry, read_table
from bms_schema import columns as C

from .config import LOGGER, MODEL_NAME, FeatureConfig
from .features import as_canonical, build_feature_grid
from .labels import death_times, has_dead_labels, label_grid, sample_rows
from .model import FailureModel, find_version, load_failure_model
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

    frame, report = load_canonical(Path(path), features=False, impute="none", columns="used", check=False,
                                   return_report=True)
    keys = ("input_format", "rows_in", "rows_out", "duplicates_dropped", "conflicting_rows_dropped", "devices",
            "cells", "sentinel_rows", "out_of_range_rows", "time_range", "columns_read")
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
    trained: TrainingResult | None = None
    #: When the input carries labels and the model did not train on it: scores over its history.
    input_evaluation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    grid: Any = None


def train_and_register(
    frame: pd.DataFrame,
    horizon_days: float = 7.0,
    anomalies: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    seed: int = 0,
    target_precision: float = 0.5,
    registry: ModelRegistry | None = None,
    extra_metadata: dict[str, Any] | None = None,
    progress: Callable[[float, str], None] | None = None,
    promote: bool = False,
) -> TrainingResult:
    """Train (see :func:`bms_failure.training.train_failure_model`) and register a candidate version.

    The candidate's out-of-fold PR-AUC on the held-out test samples is compared with the champion's
    PR-AUC on the same samples; the candidate becomes champion only when higher (or ``promote``).
    """
    from bms_schema.coverage import require_inputs

    require_inputs(as_canonical(frame), REQUIRED_INPUTS, "train the failure model")
    result = train_failure_model(frame, horizon_days, config=config, anomalies=anomalies, seed=seed,
                                 target_precision=target_precision, progress=progress)
    grid = result.grid
    trained_on = {"rows": int(len(frame)), "cells": int(len(grid.cells)) if grid is not None else None,
                  "time_range": [grid.data_start, grid.data_end] if grid is not None else None,
                  **(extra_metadata or {})}
    holdout = result.evaluation
    holdout.attrs["horizon_days"] = float(horizon_days)
    pooled = result.metrics.get("model", {}) if isinstance(result.metrics.get("model"), dict) else {}
    candidate = {"pr_auc": pooled.get("pr_auc"), "roc_auc": pooled.get("roc_auc"), "brier": pooled.get("brier"),
                 "source": "out-of-fold scores of the held-out test samples"}
    result.model.register(registry, {"trained_on": trained_on, "seed": seed, "metrics": result.metrics},
                          holdout=holdout if len(holdout) else None, candidate_metrics=candidate, promote=promote)
    return result


def _evaluate_on_input(model: FailureModel, frame: pd.DataFrame, grid: Any) -> dict[str, Any] | None:
    """Score a registered model on the labelled history of new data (no training on it)."""
    from . import evaluation as E

    deaths = death_times(frame)
    if deaths.notna().sum() == 0:
        return None
    try:
        check_horizon(model.horizon_days, grid)
    except InputError:
        return None
    samples = sample_rows(label_grid(grid, deaths, model.horizon_days * 24.0), grid)
    if len(samples) == 0:
        return None
    label = samples["Label"].to_numpy()
    prob = model.predict_proba(samples)
    out = E.score_metrics(label, prob)
    out["brier"] = E.brier(label, prob)
    out["at_alarm_threshold"] = E.binary_metrics(label, prob >= model.alarm_threshold)
    out["baseline_rule"] = E.score_metrics(label, E.rule_score(samples))
    out["baseline_rule"]["at_rule"] = E.binary_metrics(label, E.rule_flags(samples))
    out["note"] = ("registered model scored on every labelled sample point of this input; optimistic if the "
                   "model was trained on the same data")
    return out


def predict_failure(
    frame: pd.DataFrame,
    horizon_days: float = 7.0,
    model_version: str = "champion",
    anomalies: pd.DataFrame | None = None,
    registry: ModelRegistry | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> PredictionOutcome:
    """Per-cell failure risk as of the last reading of ``frame``, with a registered model.

    Uses the champion (or ``model_version``); never trains: with no model registered the error
    names the ``train_failure_model`` tool.
    """
    check_horizon(horizon_days)
    registry = registry or ModelRegistry()
    model = load_failure_model(model_version, horizon_days=horizon_days, registry=registry)
    frame = as_canonical(frame)
    step = progress or (lambda fraction, message: None)
    grid = build_feature_grid(frame, model.config, anomalies)
    notes = [f"predicted with registered {MODEL_NAME} {model.version}"]
    step(0.92, "scoring every cell as of the last reading")
    table = model.predict(frame, anomalies, grid=grid)
    table, unknown = _unknown_without_inputs(frame, table)
    if unknown:
        notes.append(f"{len(unknown)} cell(s) unknown: no {', '.join(sorted({c for v in unknown.values() for c in v}))} "
                     "reading (not scored)")
    evaluation = _evaluate_on_input(model, frame, grid) if has_dead_labels(frame) else None
    return PredictionOutcome(table=table, model=model, trained=None, input_evaluation=evaluation, notes=notes,
                             grid=grid)


#: Measurements a cell needs before the failure model may score it (bms_schema.coverage).
REQUIRED_INPUTS = (C.VOLTAGE,)


def _unknown_without_inputs(frame: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Cells with no value of a required input get probability/band "unknown" (a label still says dead)."""
    from bms_schema.coverage import input_coverage, mark_unknown

    keep = table["DeadSource"].astype(str).eq("IsDead label") if "DeadSource" in table.columns else None
    table, unknown = mark_unknown(table, input_coverage(frame), REQUIRED_INPUTS, probability="FailureProbability",
                                  band="RiskBand", reasons="TopReasons", keep=keep)
    if unknown and "AlreadyDead" in table.columns:
        rows = table[C.CELL_ID].astype(str).isin(list(unknown)).to_numpy()
        table.loc[rows, "AlreadyDead"] = False
        if "DeadSource" in table.columns:
            table.loc[rows, "DeadSource"] = ""
    return table, unknown


def top_at_risk(table: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` living cells most likely to fail (JSON-ready)."""
    alive = table.loc[~table["AlreadyDead"] & table["FailureProbability"].notna()].head(n)
    return [
        {"CellID": r.CellID, "DeviceID": r.DeviceID, "CellNumber": int(r.CellNumber),
         "FailureProbability": round(float(r.FailureProbability), 4), "RiskBand": r.RiskBand,
         "TopReasons": r.TopReasons}
        for r in alive.itertuples(index=False)  # at most n rows
    ]


def band_counts(table: pd.DataFrame) -> dict[str, int]:
    counts = table["RiskBand"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def dead_cells(table: pd.DataFrame) -> list[str]:
    return table.loc[table["AlreadyDead"], C.CELL_ID].astype(str).tolist()


def mean_contributions(model: FailureModel, table: pd.DataFrame, grid_last: pd.DataFrame) -> pd.DataFrame:
    """Mean |contribution| per feature over the scored cells, and over the high-risk ones (for the plot)."""
    scored = table.loc[table["FailureProbability"].notna() & ~table["AlreadyDead"], C.CELL_ID]
    rows = grid_last.set_index(C.CELL_ID).loc[scored].reset_index()
    contribs = model.contributions(rows)[:, :-1] if len(rows) else np.zeros((0, len(model.features)))
    high = table.set_index(C.CELL_ID).loc[scored, "RiskBand"].to_numpy() == "high"
    return pd.DataFrame({
        "feature": model.features,
        "mean_abs_all": np.abs(contribs).mean(axis=0) if len(contribs) else 0.0,
        "mean_high_risk": contribs[high].mean(axis=0) if high.any() else 0.0,
    }).sort_values("mean_abs_all", ascending=False)
