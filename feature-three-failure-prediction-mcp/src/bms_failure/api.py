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


def _column_names(path: Path) -> list[str]:
    """Column names of a CSV/Parquet file without reading its rows."""
    from bms_schema.reader import check_file, first_lines, table_format

    fmt = table_format(path)
    check_file(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputError(f"{path.name} is not a readable PARQUET table: {exc}") from exc
    names, _ = first_lines(path)
    return names


def _needed_columns(path: Path) -> list[str] | None:
    """The columns of a file this package uses (ids, measurements, flags, labels); None = read all."""
    names = _column_names(path)
    wanted = {alias for aliases in C.ALIASES.values() for alias in aliases}
    wanted |= {*C.LABEL_COLUMNS, C.SENSOR_FAULT, C.OUT_OF_RANGE, "Date", "Time"}
    wanted |= {C.quality_column(c) for c in (*C.CORE_COLUMNS, *C.OPTIONAL_NUMERIC)}
    keep = [n for n in names if n in wanted]
    return keep if keep and len(keep) < len(names) else None


def load_readings_frame(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read raw packets / a minimal table / a canonical table as the canonical table, de-duplicated.

    Only the columns this package uses are read (a raw packet file has 73). Normalisation is
    ``bms_schema.normalize``; duplicate packets are dropped with ``bms_schema.clean.drop_duplicates``.
    The frame is not sorted (the feature grid does not need it) and not imputed: bucket means skip
    missing readings, and the share of missing readings is itself a feature.
    """
    from bms_schema.clean import drop_duplicates
    from bms_schema import normalize
    from bms_schema.normalize import detect_format

    path = Path(path)
    columns = _needed_columns(path)
    raw = read_table(path, columns=columns)
    input_format = "raw_packet" if "PacketDateTime" in raw.columns else detect_format(raw)
    frame, report = normalize(raw)
    frame, duplicates, conflicts = drop_duplicates(frame)
    return frame.reset_index(drop=True), {
        "input_format": input_format,
        "rows_in": report.rows_in,
        "rows_out": int(len(frame)),
        "duplicates_dropped": duplicates,
        "conflicting_rows_dropped": conflicts,
        "devices": report.devices,
        "cells": report.cells,
        "sentinel_rows": report.sentinel_rows,
        "out_of_range_rows": report.out_of_range_rows,
        "time_range": [frame[C.TIMESTAMP].min(), frame[C.TIMESTAMP].max()],
        "columns_read": len(raw.columns),
    }


def load_anomalies(path: str | Path | None) -> pd.DataFrame | None:
    """An anomaly result table (e.g. from bms_anomaly): only its id, time and flag columns are read."""
    from .features import ANOMALY_FLAG_COLUMNS

    if path is None:
        return None
    path = Path(path)
    names = _column_names(path)
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
) -> TrainingResult:
    """Train (see :func:`bms_failure.training.train_failure_model`) and register a new version."""
    result = train_failure_model(frame, horizon_days, config=config, anomalies=anomalies, seed=seed,
                                 target_precision=target_precision, progress=progress)
    grid = result.grid
    trained_on = {"rows": int(len(frame)), "cells": int(len(grid.cells)) if grid is not None else None,
                  "time_range": [grid.data_start, grid.data_end] if grid is not None else None,
                  **(extra_metadata or {})}
    result.model.save(registry, {"trained_on": trained_on, "seed": seed})
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
    model_version: str = "latest",
    retrain: bool = False,
    anomalies: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    seed: int = 0,
    registry: ModelRegistry | None = None,
    extra_metadata: dict[str, Any] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> PredictionOutcome:
    """Per-cell failure risk as of the last reading of ``frame``.

    Uses the newest registered model for ``horizon_days`` (or ``model_version``); when there is
    none, or ``retrain`` is set, trains and registers one from ``frame`` first (which needs
    ``IsDead`` labels with at least a few deaths).
    """
    check_horizon(horizon_days)
    frame = as_canonical(frame)
    if model_version not in ("latest", "", None) and retrain:
        raise InputError("pass either model_version (predict with that version) or retrain=true, not both")
    registry = registry or ModelRegistry()
    step = progress or (lambda fraction, message: None)
    labelled = has_dead_labels(frame)
    existing = None if retrain else find_version(registry, horizon_days, model_version)
    notes: list[str] = []
    trained: TrainingResult | None = None
    if existing is not None:
        model = load_failure_model(existing, horizon_days=horizon_days, registry=registry)
        grid = build_feature_grid(frame, model.config, anomalies)
        notes.append(f"predicted with registered {MODEL_NAME} {model.version}")
    else:
        if not labelled:
            if "IsDead" in frame.columns:
                raise InputError("the IsDead column is empty, and no registered model predicts a "
                                 f"{horizon_days:g}-day horizon: provide labelled data to train one")
            if registry.versions(MODEL_NAME):
                raise ModelError(
                    f"no registered {MODEL_NAME} predicts a {horizon_days:g}-day horizon, and the data has no IsDead "
                    f"column to train one: use a horizon a model was trained for, or labelled data"
                )
            raise InputError(
                "training is needed (no failure model is registered yet) but the data has no 'IsDead' column: "
                "provide data with IsDead labels (1 from the moment a cell is dead), or train a model first"
            )
        step(0.05, "no registered model for this horizon: training one")
        trained = train_and_register(frame, horizon_days, anomalies, config, seed, registry=registry,
                                     extra_metadata=extra_metadata, progress=progress)
        model = trained.model
        grid = trained.grid
        notes.append(f"trained and registered {MODEL_NAME} {model.version}")
    step(0.92, "scoring every cell as of the last reading")
    table = model.predict(frame, anomalies, grid=grid)
    evaluation = None
    if trained is None and labelled:
        evaluation = _evaluate_on_input(model, frame, grid)
    return PredictionOutcome(table=table, model=model, trained=trained, input_evaluation=evaluation, notes=notes,
                             grid=grid)


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
