"""Standard scaling of measurements and features, persisted as plain JSON in the model registry.

``BMSScaler`` learns a mean and a standard deviation (population, ddof=0, like
scikit-learn's ``StandardScaler``) per column, ignoring missing values, and writes
``<col>_scaled = (value - mean) / scale`` next to the raw column (raw names never change).
It can be fitted in one call or by merging partial moments chunk by chunk
(``partial_fit``), which gives the same numbers up to float rounding.

The fitted scaler is registered as the versioned model ``bms_scaler``
(``models/bms_scaler/<version>/scaler.json``): plain JSON, nothing to unpickle; live
inference loads it with :func:`load_scaler` and applies the same transform.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError, ModelError, ModelRegistry

SCALER_MODEL = "bms_scaler"
SCALER_FILE = "scaler.json"
SCALED_SUFFIX = "_scaled"


def scaled_column(name: str) -> str:
    return f"{name}{SCALED_SUFFIX}"


@dataclass
class BMSScaler:
    """Per-column standardisation with NaN-aware, mergeable moments."""

    columns: list[str] = field(default_factory=list)
    count_: dict[str, float] = field(default_factory=dict)
    mean_: dict[str, float] = field(default_factory=dict)
    m2_: dict[str, float] = field(default_factory=dict)

    def partial_fit(self, frame: pd.DataFrame) -> "BMSScaler":
        """Merge the moments of ``frame`` (Chan et al. parallel variance)."""
        for name in self.columns:
            if name not in frame.columns:
                raise InputError(f"cannot scale: column '{name}' is missing")
            values = frame[name].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            n_b = float(len(values))
            if n_b == 0:
                continue
            mean_b = float(values.mean())
            m2_b = float(((values - mean_b) ** 2).sum())
            n_a = self.count_.get(name, 0.0)
            if n_a == 0:
                self.count_[name], self.mean_[name], self.m2_[name] = n_b, mean_b, m2_b
                continue
            mean_a, m2_a = self.mean_[name], self.m2_[name]
            n = n_a + n_b
            delta = mean_b - mean_a
            self.mean_[name] = mean_a + delta * n_b / n
            self.m2_[name] = m2_a + m2_b + delta * delta * n_a * n_b / n
            self.count_[name] = n
        return self

    def fit(self, frame: pd.DataFrame, columns: list[str] | None = None) -> "BMSScaler":
        if columns is not None:
            self.columns = list(columns)
        self.count_, self.mean_, self.m2_ = {}, {}, {}
        return self.partial_fit(frame)

    @property
    def scale_(self) -> dict[str, float]:
        out = {}
        for name in self.columns:
            n = self.count_.get(name, 0.0)
            std = float(np.sqrt(self.m2_[name] / n)) if n > 0 else 0.0
            out[name] = std if std > 0 else 1.0  # constant column: centre only (like StandardScaler)
        return out

    def drop_unfitted(self) -> list[str]:
        """Remove the columns that had no value at all (nothing to scale by); return their names."""
        unfitted = [c for c in self.columns if self.count_.get(c, 0) == 0]
        if unfitted and len(unfitted) < len(self.columns):
            self.columns = [c for c in self.columns if c not in unfitted]
            return unfitted
        return []

    def check_fitted(self) -> None:
        unfitted = [c for c in self.columns if self.count_.get(c, 0) == 0]
        if unfitted:
            raise InputError(f"cannot fit the scaler: column(s) {', '.join(unfitted)} have no value at all")

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return a copy with ``<col>_scaled`` added for every scaler column present."""
        self.check_fitted()
        scale = self.scale_
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ModelError(f"the scaler expects column(s) {', '.join(missing)}, which the data lacks")
        scaled = {
            scaled_column(c): (frame[c].to_numpy(dtype=np.float64) - self.mean_[c]) / scale[c] for c in self.columns
        }
        base = frame.drop(columns=[c for c in scaled if c in frame.columns])
        return pd.concat([base, pd.DataFrame(scaled, index=frame.index)], axis=1, copy=False)

    def inverse_transform_column(self, name: str, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scale_[name] + self.mean_[name]

    # -- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self.check_fitted()
        scale = self.scale_
        return {
            "kind": "standard",
            "formula": "scaled = (value - mean) / scale",
            "columns": list(self.columns),
            "mean": {c: self.mean_[c] for c in self.columns},
            "scale": {c: scale[c] for c in self.columns},
            "count": {c: int(self.count_[c]) for c in self.columns},
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "BMSScaler":
        try:
            columns = list(payload["columns"])
            mean = {c: float(payload["mean"][c]) for c in columns}
            scale = {c: float(payload["scale"][c]) for c in columns}
            count = {c: float(payload.get("count", {}).get(c, 1)) for c in columns}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"scaler file is not a BMS-Flux scaler: {exc}") from exc
        scaler = cls(columns=columns)
        scaler.mean_ = mean
        scaler.count_ = count
        scaler.m2_ = {c: (scale[c] ** 2) * count[c] for c in columns}
        return scaler


def register_scaler(
    scaler: BMSScaler, metadata: dict[str, Any] | None = None, registry: ModelRegistry | None = None
) -> tuple[str, str]:
    """Register ``scaler`` as a new version of ``bms_scaler``; returns ``(version, folder)``.

    A scaler is the transform of the data just preprocessed (its ``<col>_scaled`` columns), not a
    model competing on a held-out evaluation: the new version is promoted to champion so the
    scaled output and the served scaler agree.
    """
    registry = registry or ModelRegistry()
    meta = {"kind": "scaler", "format": "json", "features": list(scaler.columns), **(metadata or {})}
    with registry.register(SCALER_MODEL, meta, promote=True) as staging:
        (staging.dir / SCALER_FILE).write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")
    assert staging.version is not None
    return staging.version, str(registry.locate(SCALER_MODEL, staging.version))


def load_scaler(version: str = "latest", registry: ModelRegistry | None = None) -> BMSScaler:
    """Load a registered scaler (checksums verified by the registry)."""
    registry = registry or ModelRegistry()
    model = registry.load(SCALER_MODEL, version)
    try:
        payload = json.loads(model.file(SCALER_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{SCALER_MODEL}/{model.version}: {SCALER_FILE} is not valid JSON ({exc})") from exc
    return BMSScaler.from_dict(payload)
