"""What the tools do, as plain functions: load readings, train + register, forecast one cell."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError, ModelRegistry, resolve_cell_id
from bms_schema import columns as C

from .config import MAX_STEPS_LIMIT, MODEL_NAME, WINDOW, TrainConfig
from .model import Forecaster, check_coverage, whole_steps
from .persistence import load_forecaster

log = logging.getLogger("bms.forecast")
Progress = Callable[[float, str], None]


def load_history(path: str | Path) -> pd.DataFrame:
    """Read a readings file (raw packets, minimal or canonical) and clean it (normalise, dedupe, sort)."""
    from bms_schema.loader import load_canonical

    return load_canonical(path, features=False, impute="none")


def train_and_register(
    frame: pd.DataFrame,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    registry: ModelRegistry | None = None,
    extra: dict[str, Any] | None = None,
    promote: bool = False,
) -> tuple[Forecaster, dict[str, Any], str, Path]:
    """Fit, backtest and register a forecaster as a candidate; returns ``(forecaster, report, version, folder)``.

    The candidate and the current champion are scored on the same held-out test window of
    ``frame``; the candidate becomes champion only when its MASE is lower (or ``promote``).
    The decision is in ``forecaster.decision``.
    """
    from .persistence import register_forecaster

    forecaster = Forecaster().fit(frame, config, progress)
    version, folder, registered = register_forecaster(
        forecaster, forecaster.report, registry, extra, frame=frame, promote=promote
    )
    forecaster.metadata["decision"] = registered.summary()
    return forecaster, forecaster.report, version, folder


def check_steps(steps: int) -> int:
    """Bounds every forecaster shares (the model's own ``max_steps`` is checked once it is loaded)."""
    steps = whole_steps(steps)
    if steps > MAX_STEPS_LIMIT:
        raise InputError(f"steps={steps} is above the documented maximum of {MAX_STEPS_LIMIT} readings")
    return steps


def cell_rows(frame: pd.DataFrame, cell_id: str | int) -> tuple[str, pd.DataFrame]:
    """Resolve ``cell_id`` against the data and check the cell has enough history for the lags."""
    cell = resolve_cell_id(cell_id, frame[C.CELL_ID].dropna().astype(str).unique())
    rows = frame.loc[frame[C.CELL_ID].astype(str) == cell]
    readings = int(rows[C.TIMESTAMP].notna().sum())
    if readings < WINDOW:
        raise InputError(
            f"cell {cell} has only {readings} readings: the forecaster needs at least {WINDOW} readings of history "
            "(its lag window)"
        )
    return cell, rows


@dataclass
class CellForecast:
    cell_id: str
    table: pd.DataFrame
    history: pd.DataFrame
    forecaster: Forecaster
    trained: bool
    training_report: dict[str, Any] | None = None


def forecast_cell(
    frame: pd.DataFrame,
    cell_id: str | int,
    steps: int,
    coverage: float = 0.8,
    version: str = "champion",
    progress: Progress | None = None,
    registry: ModelRegistry | None = None,
) -> CellForecast:
    """Forecast one cell with a registered forecaster (the champion by default); never trains.

    With no forecaster registered the error names the ``train_forecaster`` tool.
    """
    steps = check_steps(steps)
    coverage = check_coverage(coverage)
    cell, rows = cell_rows(frame, cell_id)
    forecaster = load_forecaster(version, registry or ModelRegistry())
    table = forecaster.forecast(frame, cell, steps, coverage)
    return CellForecast(cell_id=cell, table=table, history=rows, forecaster=forecaster, trained=False)


def forecast_summary(result: CellForecast, steps: int, coverage: float) -> dict[str, Any]:
    """The metrics JSON of one forecast: what was forecast, from what, and how good the model is."""
    meta = result.forecaster.metadata
    metrics = meta.get("metrics", {})
    history = result.history.sort_values(C.TIMESTAMP)
    out: dict[str, Any] = {
        "cell_id": result.cell_id,
        "model": {
            "name": MODEL_NAME,
            "version": result.forecaster.version,
            "trained_now": result.trained,
            "max_steps": result.forecaster.max_steps,
        },
        "steps": steps,
        "coverage_nominal": coverage,
        "history": {
            "readings": int(len(history)),
            "first": history[C.TIMESTAMP].iloc[0],
            "last": history[C.TIMESTAMP].iloc[-1],
        },
        "targets": {},
    }
    picks = sorted({1, steps})
    for target, part in result.table.groupby("Target", sort=False):
        observed = history[target].dropna() if target in history.columns else pd.Series(dtype=float)
        m = metrics.get(target, {})
        summary = m.get("summary", {})
        backtest = {
            name: {
                f"mae_h{h}": summary.get(name, {}).get(f"mae_h{h}")
                for h in picks
                if f"mae_h{h}" in summary.get(name, {})
            }
            | {"mae_mean": summary.get(name, {}).get("mae_mean"), "mase_mean": summary.get(name, {}).get("mase_mean")}
            for name in ("model", "naive_last", "naive_seasonal")
        }
        out["targets"][target] = {
            "strategy": m.get("strategy"),
            "last_value": float(observed.iloc[-1]) if len(observed) else None,
            "missing_share": round(float(history[target].isna().mean()), 4) if target in history.columns else 1.0,
            "forecast_first": float(part["Forecast"].iloc[0]),
            "forecast_last": float(part["Forecast"].iloc[-1]),
            "interval_width_mean": float(np.mean(part["Upper"] - part["Lower"])),
            "backtest": backtest,
            "backtest_coverage": m.get("coverage"),
            "beats_naive_last_at_steps": [h for h in m.get("beats_naive_last_at", []) if h <= steps],
        }
    return out
