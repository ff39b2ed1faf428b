"""Scaler: mergeable moments, transform, registry round trip (plain JSON, versioned)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from bms_preprocess.scaling import BMSScaler, load_scaler, register_scaler
from bms_schema import ModelError, ModelRegistry


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(2.2, 0.1, 1000), "b": rng.normal(30, 5, 1000), "c": 4.0})


def test_fit_matches_numpy_and_partial_fit(frame):
    whole = BMSScaler(columns=["a", "b", "c"]).fit(frame)
    parts = BMSScaler(columns=["a", "b", "c"])
    for lo in range(0, 1000, 137):
        parts.partial_fit(frame.iloc[lo : lo + 137])
    for name in ("a", "b"):
        assert whole.mean_[name] == pytest.approx(frame[name].mean(), rel=1e-12)
        assert whole.scale_[name] == pytest.approx(frame[name].std(ddof=0), rel=1e-12)
        assert parts.mean_[name] == pytest.approx(whole.mean_[name], rel=1e-12)
        assert parts.scale_[name] == pytest.approx(whole.scale_[name], rel=1e-12)
    assert whole.scale_["c"] == 1.0  # constant column: centred only
    out = whole.transform(frame)
    assert list(out.columns) == ["a", "b", "c", "a_scaled", "b_scaled", "c_scaled"]
    assert out["a_scaled"].mean() == pytest.approx(0, abs=1e-12) and out["a_scaled"].std(ddof=0) == pytest.approx(1)
    assert (out["a"] == frame["a"]).all()  # raw units kept


def test_nan_is_ignored_when_fitting(frame):
    holes = frame.copy()
    holes.loc[::10, "a"] = np.nan
    scaler = BMSScaler(columns=["a"]).fit(holes)
    assert scaler.count_["a"] == 900 and scaler.mean_["a"] == pytest.approx(holes["a"].mean())


def test_registry_round_trip(frame, workspace):
    scaler = BMSScaler(columns=["a", "b"]).fit(frame)
    version, folder = register_scaler(scaler, {"rows": 1000})
    assert version == "v0001"
    payload = json.loads((workspace / "models" / "bms_scaler" / "v0001" / "scaler.json").read_text())
    assert payload["columns"] == ["a", "b"] and payload["formula"] == "scaled = (value - mean) / scale"
    loaded = load_scaler()
    pd.testing.assert_frame_equal(loaded.transform(frame), scaler.transform(frame))
    assert register_scaler(scaler)[0] == "v0002"
    assert ModelRegistry().latest_version("bms_scaler") == "v0002"
    with pytest.raises(ModelError, match="expects column"):
        loaded.transform(frame.drop(columns="b"))


def test_tampered_scaler_is_refused(frame, workspace):
    register_scaler(BMSScaler(columns=["a"]).fit(frame))
    path = workspace / "models" / "bms_scaler" / "v0001" / "scaler.json"
    path.write_text(path.read_text().replace('"a"', '"a" ', 1))
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_scaler()
