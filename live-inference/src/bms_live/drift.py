"""Input drift: recent inputs of each model against the training reference stored with it.

Every scored request adds its model-input rows to a bounded ring buffer per model
(:class:`InputWindow`, the last ``drift_window`` rows). ``GET /v1/monitoring/drift``
compares each feature's recent values with the model's training reference sample:

* fewer than ``min_window`` (30) recent values: no verdict (``insufficient_data``);
* up to ``ks_max_window`` (500) values: two-sample Kolmogorov-Smirnov test; the feature is
  flagged when ``p < 0.01`` **and** the KS distance ``D >= 0.1`` (with thousands of rows a
  tiny, harmless shift is "significant"; the distance guard keeps such shifts quiet);
* more values: Population Stability Index over 10 quantile bins of the reference, flagged
  at ``PSI >= 0.2`` (the common reading: < 0.1 stable, 0.1-0.2 moderate, >= 0.2 significant
  shift). The 1-Wasserstein distance divided by the reference standard deviation is
  reported too, as an effect size in reference standard deviations.

Thresholds live in :class:`bms_live.settings.DriftThresholds`. Missing values are ignored
per feature.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .settings import DriftThresholds

PSI_FLOOR = 1e-4  # empty bins get this share, so PSI stays finite


class InputWindow:
    """The last ``capacity`` input rows of one model, feature by feature (a ring buffer)."""

    def __init__(self, features: Sequence[str], capacity: int):
        self.features = list(features)
        self.capacity = capacity
        self._data = np.full((capacity, len(self.features)), np.nan)
        self._next = 0
        self._count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def add(self, frame: pd.DataFrame) -> None:
        if not self.features or len(frame) == 0:
            return
        block = np.full((len(frame), len(self.features)), np.nan)
        for j, name in enumerate(self.features):
            if name in frame.columns:
                column = frame[name]
                if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
                    column = pd.to_numeric(column, errors="coerce")
                block[:, j] = column.to_numpy(dtype=float, na_value=np.nan)
        if len(block) > self.capacity:
            block = block[-self.capacity :]
        n = len(block)
        with self._lock:
            end = self._next + n
            if end <= self.capacity:
                self._data[self._next : end] = block
            else:
                first = self.capacity - self._next
                self._data[self._next :] = block[:first]
                self._data[: n - first] = block[first:]
            self._next = end % self.capacity
            self._count = min(self.capacity, self._count + n)

    def values(self) -> np.ndarray:
        """The held rows, oldest first (a copy)."""
        with self._lock:
            if self._count < self.capacity:
                return self._data[: self._count].copy()
            return np.concatenate([self._data[self._next :], self._data[: self._next]])


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population Stability Index of ``current`` against quantile bins of ``reference``."""
    quantiles = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    # Each quantile also closes a bin of its own (q <= x < next float above q): a reference with a
    # point mass (a constant, a value that is often exactly 0) then separates "equal" from "above".
    edges = np.unique(np.concatenate([quantiles, np.nextafter(quantiles, np.inf)]))
    n_bins = edges.size + 1
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=n_bins) / reference.size
    cur_share = np.bincount(np.searchsorted(edges, current, side="right"), minlength=n_bins) / current.size
    ref_share = np.maximum(ref_share, PSI_FLOOR)
    cur_share = np.maximum(cur_share, PSI_FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def compare_feature(reference: np.ndarray, current: np.ndarray, thresholds: DriftThresholds) -> dict[str, Any]:
    """Drift verdict for one feature (NaN values are dropped first)."""
    ref = reference[~np.isnan(reference)]
    cur = current[~np.isnan(current)]
    out: dict[str, Any] = {
        "window": int(cur.size),
        "reference": int(ref.size),
        "reference_mean": float(ref.mean()) if ref.size else None,
        "window_mean": float(cur.mean()) if cur.size else None,
    }
    if ref.size < thresholds.min_window:
        return {**out, "method": None, "status": "no_reference", "flagged": False}
    if cur.size < thresholds.min_window:
        return {**out, "method": None, "status": "insufficient_data", "flagged": False}
    from scipy import stats  # lazy: only the drift endpoint needs SciPy

    if cur.size <= thresholds.ks_max_window:
        result = stats.ks_2samp(ref, cur)
        statistic, pvalue = float(result.statistic), float(result.pvalue)
        flagged = pvalue < thresholds.ks_pvalue and statistic >= thresholds.ks_statistic
        return {
            **out,
            "method": "ks",
            "statistic": statistic,
            "p_value": pvalue,
            "status": "drift" if flagged else "ok",
            "flagged": bool(flagged),
        }
    value = psi(ref, cur, thresholds.psi_bins)
    std = float(ref.std())
    distance = float(stats.wasserstein_distance(ref, cur))
    flagged = value >= thresholds.psi
    return {
        **out,
        "method": "psi",
        "statistic": value,
        "wasserstein_in_sd": distance / std if std > 0 else None,
        "status": "drift" if flagged else "ok",
        "flagged": bool(flagged),
    }


def drift_report(window: InputWindow, reference: pd.DataFrame | None, thresholds: DriftThresholds) -> dict[str, Any]:
    """Per-feature drift of one model's recent inputs, and the flagged features."""
    if reference is None or len(reference) == 0:
        return {
            "status": "no_reference",
            "window": len(window),
            "features": {},
            "flagged": [],
            "message": "this model version stores no training reference sample, so drift cannot be measured",
        }
    recent = window.values()
    features: dict[str, Any] = {}
    for j, name in enumerate(window.features):
        if name not in reference.columns:
            continue
        ref = pd.to_numeric(reference[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        features[name] = compare_feature(ref, recent[:, j], thresholds)
    flagged = sorted(name for name, result in features.items() if result["flagged"])
    if len(window) < thresholds.min_window:
        status = "insufficient_data"
    else:
        status = "drift" if flagged else "ok"
    return {"status": status, "window": len(window), "features": features, "flagged": flagged}


class DriftMonitor:
    """One :class:`InputWindow` per model, reset when the model's feature list changes."""

    def __init__(self, capacity: int, thresholds: DriftThresholds):
        self.capacity = capacity
        self.thresholds = thresholds
        self._windows: dict[str, InputWindow] = {}
        self._lock = threading.Lock()

    def window(self, key: str, features: Sequence[str]) -> InputWindow:
        features = list(features)
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.features != features:
                window = InputWindow(features, self.capacity)
                self._windows[key] = window
            return window

    def add(self, key: str, features: Sequence[str], frame: pd.DataFrame) -> None:
        self.window(key, features).add(frame)

    def report(self, key: str, features: Sequence[str], reference: pd.DataFrame | None) -> dict[str, Any]:
        return drift_report(self.window(key, features), reference, self.thresholds)
