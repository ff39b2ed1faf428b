"""Small stand-in models for the live-inference tests (test doubles; the product loads the real ones).

Each stand-in is saved into the real model registry as a JSON file and loaded back by a
loader with the same signature as the real ones, so the registry, the holder and the hot
swap are exercised for real. They implement the interfaces in ``bms_live.adapters``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd
from bms_schema.registry import ModelRegistry

REFERENCE_ROWS = 2_000


class FakeAnomalyModel:
    """AnomalyScore = |CellVoltage - centre| / spread; flagged above ``threshold``."""

    def __init__(self, params: dict[str, Any], reference: pd.DataFrame):
        self.params = params
        self.features = list(params["features"])
        self.reference = reference
        self.delay = float(params.get("delay", 0.0))

    def score(self, frame: pd.DataFrame, open_cells: object = None) -> pd.DataFrame:
        if self.delay:
            time.sleep(self.delay)
        v = frame[self.params.get("score_column", "CellVoltage")].to_numpy(dtype=float)
        score = np.abs(v - self.params["centre"]) / self.params["spread"]
        flag = score > self.params["threshold"]
        sensor = frame["SensorFault"].to_numpy(dtype=bool)
        out = pd.DataFrame(index=frame.index)
        out["IForestScore"] = score
        out["AnomalyScore"] = np.nan_to_num(score, nan=0.0)
        out["AnomalyFlag"] = (flag | sensor).astype(np.int8)
        out["AnomalyKind"] = np.where(sensor, "sensor_fault", np.where(flag, "statistical", "normal"))
        out["AnomalyReason"] = np.where(flag, "CellVoltage far from normal", None)
        out["AnomalyReason"] = out["AnomalyReason"].where(flag, None)
        out["Version"] = self.params["tag"]
        return out


class FakeFailureModel:
    """FailureProbability from the cell's mean voltage: lower voltage, higher risk."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.features = ["voltage_mean"]
        self.horizon_days = params.get("horizon_days", 7)
        if params.get("min_history_hours") is not None:
            self.min_history_hours = float(params["min_history_hours"])

    def predict(self, history: pd.DataFrame) -> pd.DataFrame:
        grouped = history.groupby(["DeviceID", "CellNumber"], sort=True)["CellVoltage"].mean().reset_index()
        prob = np.clip((2.25 - grouped["CellVoltage"].to_numpy()) * 10, 0, 1)
        band = np.where(prob >= 0.5, "high", np.where(prob >= 0.2, "medium", "low"))
        return pd.DataFrame(
            {
                "DeviceID": grouped["DeviceID"],
                "CellNumber": grouped["CellNumber"],
                "FailureProbability": prob,
                "RiskBand": band,
                "TopReasons": ["cell voltage, 24 h mean low; voltage vs string peers"] * len(prob),
                "IsDead": False,
            }
        )


class FakeForecaster:
    """Last value of each target, constant, with a +-0.01 interval."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def forecast(self, history: pd.DataFrame, cell_id: Any, steps: int, coverage: float = 0.8) -> pd.DataFrame:
        from bms_schema import resolve_cell_id

        cell = resolve_cell_id(cell_id, history["CellID"].unique())
        rows = history[history["CellID"] == cell].sort_values("Timestamp")
        last = rows.iloc[-1]
        times = last["Timestamp"] + pd.to_timedelta(np.arange(1, steps + 1) * 15, unit="min")
        parts = []
        for target in ("CellVoltage", "CellTemperature"):
            value = float(last[target])
            parts.append(
                pd.DataFrame(
                    {
                        "Timestamp": times,
                        "Target": target,
                        "Step": np.arange(1, steps + 1),
                        "Forecast": value,
                        "Lower": value - 0.01,
                        "Upper": value + 0.01,
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)


def anomaly_reference(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "CellVoltage": rng.normal(2.23, 0.01, REFERENCE_ROWS),
            "TempAboveAmbient": rng.normal(1.0, 0.3, REFERENCE_ROWS),
        }
    )


def register(
    registry: ModelRegistry,
    name: str,
    params: dict[str, Any],
    reference: pd.DataFrame | None = None,
    promote: bool = True,
) -> str:
    """Register a stand-in version; by default it becomes the champion (what the service serves)."""
    with registry.register(
        name, {"metrics": {"f1": params.get("f1", 0.5)}, "features": params.get("features", [])}, promote=promote
    ) as staging:
        (staging.dir / "model.json").write_text(json.dumps(params))
        if reference is not None:
            reference.to_parquet(staging.dir / "reference.parquet")
    assert staging.version is not None
    return staging.version


def _params(version: str, registry: ModelRegistry, name: str) -> tuple[dict[str, Any], Any]:
    loaded = registry.load(name, version)
    return json.loads(loaded.file("model.json").read_text()), loaded


def load_fake_anomaly(version: str, registry: ModelRegistry) -> FakeAnomalyModel:
    params, loaded = _params(version, registry, "anomaly_hybrid")
    if params.get("load_seconds"):
        time.sleep(params["load_seconds"])  # a slow load, to widen the swap window in tests
    if params.get("broken"):
        raise ValueError("model file is broken on purpose")
    return FakeAnomalyModel(params, pd.read_parquet(loaded.file("reference.parquet")))


def load_fake_failure(version: str, registry: ModelRegistry) -> FakeFailureModel:
    return FakeFailureModel(_params(version, registry, "failure_classifier")[0])


def load_fake_forecast(version: str, registry: ModelRegistry) -> FakeForecaster:
    return FakeForecaster(_params(version, registry, "forecaster")[0])


FAKE_LOADERS = {"anomaly": load_fake_anomaly, "failure": load_fake_failure, "forecast": load_fake_forecast}

ANOMALY_PARAMS = {
    "tag": "first",
    "centre": 2.23,
    "spread": 0.01,
    "threshold": 4.0,
    "features": ["CellVoltage", "TempAboveAmbient"],
}


def packet(device: str, cells: int, when: str, voltage: float = 2.23, **overrides: Any) -> list[dict[str, Any]]:
    """One packet: every cell of a string at one time, canonical field names."""
    rows = []
    for n in range(1, cells + 1):
        row = {
            "DeviceID": device,
            "CellNumber": n,
            "Timestamp": when,
            "CellVoltage": voltage + 0.001 * n,
            "CellTemperature": 25.0 + 0.1 * n,
            "CellSpecificGravity": 1.22,
            "InstantaneousCurrent": 0.5,
            "AmbientTemperature": 24.0,
        }
        row.update(overrides)
        rows.append(row)
    return rows
