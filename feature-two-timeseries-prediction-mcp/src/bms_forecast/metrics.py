"""Forecast error metrics per horizon: MAE, RMSE, MASE, interval coverage.

Every function takes ``(n_origins, horizons)`` matrices where NaN means "no actual" (or no
forecast, for the seasonal baseline before a full day of history); each horizon is scored on
its own finite pairs.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

#: Horizons quoted in summaries (those beyond the trained maximum are left out).
SUMMARY_HORIZONS: tuple[int, ...] = (1, 6, 12, 25, 48)


def rounded(values: np.ndarray, digits: int = 6) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in values]


def per_horizon_errors(actual: np.ndarray, forecast: np.ndarray, scale: float) -> dict[str, np.ndarray]:
    """MAE, RMSE, MASE (MAE divided by ``scale``) and the pair count for each horizon column."""
    error = forecast - actual
    ok = np.isfinite(error)
    count = ok.sum(axis=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mae = np.where(count > 0, np.nansum(np.abs(error), axis=0) / count, np.nan)
        rmse = np.where(count > 0, np.sqrt(np.nansum(error**2, axis=0) / count), np.nan)
    mase = mae / scale if scale > 0 else np.full_like(mae, np.nan)
    return {"mae": mae, "rmse": rmse, "mase": mase, "n": count}


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Share of actuals inside ``[lower, upper]`` per horizon column."""
    ok = np.isfinite(actual) & np.isfinite(lower) & np.isfinite(upper)
    inside = ok & (actual >= lower) & (actual <= upper)
    count = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, inside.sum(axis=0) / count, np.nan)


def overall_coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float | None:
    ok = np.isfinite(actual) & np.isfinite(lower) & np.isfinite(upper)
    if not ok.any():
        return None
    return round(float(((actual >= lower) & (actual <= upper))[ok].mean()), 4)


def mase_scale(values: np.ndarray, observed: np.ndarray, in_sample: np.ndarray) -> float:
    """Mean absolute one-step change between consecutive real readings of the training part."""
    both = observed[1:] & observed[:-1] & in_sample[1:] & in_sample[:-1]
    if not both.any():
        return float("nan")
    return float(np.mean(np.abs(np.diff(values)[both])))


def summarize(table: dict[str, dict[str, np.ndarray]], horizons: int) -> dict[str, Any]:
    """Mean over all horizons and the values at the summary horizons, per method and metric."""
    out: dict[str, Any] = {}
    picks = [h for h in SUMMARY_HORIZONS if h <= horizons]
    for method, metrics in table.items():
        entry: dict[str, Any] = {}
        for name in ("mae", "rmse", "mase"):
            column = metrics[name]
            finite = column[np.isfinite(column)]
            entry[f"{name}_mean"] = round(float(finite.mean()), 6) if finite.size else None
            for h in picks:
                value = column[h - 1]
                entry[f"{name}_h{h}"] = round(float(value), 6) if np.isfinite(value) else None
        out[method] = entry
    return out


def horizon_table(table: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """JSON-ready per-horizon lists for every method."""
    return {
        method: {name: (rounded(v) if name != "n" else [int(x) for x in v]) for name, v in metrics.items()}
        for method, metrics in table.items()
    }


def skill(model_mae: np.ndarray, baseline_mae: np.ndarray) -> np.ndarray:
    """Relative MAE improvement over a baseline per horizon (positive = the model is better)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - model_mae / baseline_mae
