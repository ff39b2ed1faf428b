"""The hybrid detector on labelled readings: F1 against ground truth, kinds, reasons, registry, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anomaly_synthetic import make_readings
from bms_anomaly.detect import detect
from bms_anomaly.hybrid import DETECTORS, OUTPUT_COLUMNS, HybridAnomalyDetector
from bms_anomaly.metrics import binary_metrics, seed_rule
from bms_anomaly.persistence import load_detector, register_detector
from bms_schema.errors import InputError, ModelError


@pytest.fixture(scope="module")
def prepared() -> pd.DataFrame:
    from bms_schema.loader import load_canonical

    return load_canonical(make_readings(seed=0))


@pytest.fixture(scope="module")
def fitted(prepared: pd.DataFrame) -> HybridAnomalyDetector:
    return HybridAnomalyDetector(contamination=0.03, seed=0).fit(prepared)


def test_hybrid_finds_injected_anomalies(prepared: pd.DataFrame, fitted: HybridAnomalyDetector) -> None:
    result = fitted.score(prepared)
    assert list(result.columns) == list(OUTPUT_COLUMNS)
    assert result.index.equals(prepared.index)
    truth = prepared["IsAnomaly"].to_numpy().astype(bool)
    clean = ~prepared["SensorFault"].to_numpy(bool)
    hybrid = binary_metrics(
        truth[clean],
        (result["AnomalyKind"] == "statistical").to_numpy()[clean],
        result["AnomalyScore"].to_numpy()[clean],
    )
    assert hybrid["f1"] >= 0.6, hybrid
    assert hybrid["pr_auc"] >= 0.8, hybrid
    flags = fitted.detector_flags(result)
    singles = {name: binary_metrics(truth[clean], flags[name][clean])["f1"] for name in DETECTORS}
    # at an equal fixed contamination the fused score is close to the best single detector (which one
    # is best changes from data set to data set) and not below the worst
    assert hybrid["f1"] >= max(singles.values()) - 0.05 and hybrid["f1"] >= min(singles.values()), (singles, hybrid)


def test_auto_rule_on_readings_it_did_not_train_on() -> None:
    """The "auto" rule (surprise 5 + episode extension, second fit on trimmed rows), trained on one
    set of strings and scored on another with 1 % anomalies."""
    from bms_preprocess.pipeline import prepare_readings

    train = prepare_readings(make_readings(seed=1, anomaly_rate=0.01, steps=800))
    test = prepare_readings(make_readings(seed=2, anomaly_rate=0.01, steps=800))
    detector = HybridAnomalyDetector(seed=0).fit(train)
    result = detector.score(test)
    truth = test["IsAnomaly"].to_numpy().astype(bool)
    clean = ~test["SensorFault"].to_numpy(bool)
    hybrid = binary_metrics(truth[clean], (result["AnomalyKind"] == "statistical").to_numpy()[clean])
    assert detector.threshold >= 5.0 and detector.training_info["trimmed_rows"] > 0
    assert hybrid["precision"] >= 0.85 and hybrid["recall"] >= 0.95, hybrid


def test_sensor_faults_are_their_own_kind(prepared: pd.DataFrame, fitted: HybridAnomalyDetector) -> None:
    result = fitted.score(prepared)
    faults = prepared["SensorFault"].to_numpy(bool)
    assert faults.sum() == 6
    assert (result.loc[faults, "AnomalyKind"] == "sensor_fault").all()
    assert (result.loc[faults, "AnomalyFlag"] == 1).all()
    assert result.loc[faults, "AnomalyReason"].str.contains("CellVoltage: 0xFFFF sentinel").all()
    # readable reason on statistical flags: feature name, value with unit, robust SD
    stat = result[result["AnomalyKind"] == "statistical"]
    assert stat["AnomalyReason"].notna().all()
    assert (
        stat["AnomalyReason"]
        .str.match(r"^\w+ = -?[\d.e+-]+( \S+)? \(.+, \d+\.\d robust SD (above|below) normal\)$")
        .all()
    )
    assert (result.loc[result["AnomalyFlag"] == 0, "AnomalyReason"].isna()).all()


def test_thermal_anomalies_are_explained_by_temperature(prepared: pd.DataFrame, fitted: HybridAnomalyDetector) -> None:
    result = fitted.score(prepared)
    thermal = (
        prepared["AnomalyType"].eq("thermal").fillna(False).to_numpy(bool) & (result["AnomalyFlag"] == 1).to_numpy()
    )
    assert thermal.sum() >= 5
    top = result.loc[thermal, "AnomalyFeature"]
    assert top.isin(["TempDevChange", "TemperatureRateDevString", "TemperatureFluctuationVsString"]).mean() >= 0.8


def test_registered_model_gives_the_same_flags(
    workspace, prepared: pd.DataFrame, fitted: HybridAnomalyDetector
) -> None:
    version, folder = register_detector(fitted)
    assert version == "v0001"
    files = {p.name for p in folder.iterdir()}
    assert {
        "config.json",
        "scaler.skops",
        "isolation_forest.skops",
        "nystroem.skops",
        "sgd_ocsvm.skops",
        "vae.npz",
        "calibration.npz",
        "reference_features.parquet",
        "metadata.json",
    } <= files
    reference = pd.read_parquet(folder / "reference_features.parquet")
    assert list(reference.columns) == fitted.features and len(reference) == min(5000, fitted.training_info["rows"])
    loaded = load_detector("latest", cache=False)
    assert loaded.model_version == "v0001"
    a, b = fitted.score(prepared), loaded.score(prepared)
    pd.testing.assert_frame_equal(a, b)
    assert load_detector("latest") is load_detector("v0001")  # cached, no re-reading per call


def test_a_registered_model_loads_and_scores_without_torch(workspace, prepared: pd.DataFrame, fitted) -> None:
    """Scoring processes never import torch (about 4 s of start-up each): the VAE scores in NumPy."""
    import json
    import os
    import subprocess
    import sys

    register_detector(fitted)
    path = workspace / "prepared.parquet"
    prepared.to_parquet(path)
    code = (
        "import sys, json, pandas as pd\n"
        "from bms_anomaly.persistence import load_detector\n"
        f"scores = load_detector('latest', cache=False).score(pd.read_parquet({str(path)!r}))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'flags': int(scores['AnomalyFlag'].sum()),"
        " 'vae': float(scores['VAEScore'].sum())}))\n"
        # a process that loaded a model can still train one (the anomaly server does both): torch imports
        "import torch, sklearn.externals.array_api_compat.torch as adapter\n"
        "assert float(torch.ones(3).sum()) == 3.0 and adapter.__name__.endswith('.torch')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    expected = fitted.score(prepared)
    assert got["torch"] is False
    assert got["flags"] == int(expected["AnomalyFlag"].sum()) > 0
    assert got["vae"] == pytest.approx(float(expected["VAEScore"].sum()), rel=1e-12)


def test_scores_a_single_raw_reading(workspace, prepared: pd.DataFrame, fitted: HybridAnomalyDetector) -> None:
    raw_cols = [
        "CellID",
        "DeviceID",
        "CellNumber",
        "Timestamp",
        "CellVoltage",
        "CellTemperature",
        "CellSpecificGravity",
        "InstantaneousCurrent",
        "AmbientTemperature",
    ]
    one = prepared.loc[[100], raw_cols]
    result = fitted.score(one)
    assert len(result) == 1 and result.index[0] == 100
    assert np.isfinite(result["AnomalyScore"]).all()
    assert result.attrs["missing_features"] == []  # derived: history features are 0, peers are the cell itself
    # A live caller passes the recent history of the string; the newest packet is then scored with
    # every feature (trailing baselines, runs, rates) exactly as in training.
    times = np.sort(prepared["Timestamp"].unique())
    window = prepared[(prepared["DeviceID"] == "D1") & prepared["Timestamp"].between(times[200], times[300])][raw_cols]
    newest = window["Timestamp"] == times[300]
    hot = window.copy()
    hot_row = hot.index[newest.to_numpy()][2]
    hot.loc[hot_row, "CellTemperature"] += 12.0
    scored = fitted.score(hot)
    assert scored.loc[hot_row, "AnomalyFlag"] == 1
    assert scored.loc[hot_row, "AnomalyFeature"] in ("TempDevChange", "TemperatureRateDevString")
    assert "degC" in scored.loc[hot_row, "AnomalyReason"]
    untouched = fitted.score(window)
    assert untouched.loc[hot_row, "AnomalyFlag"] == 0


def test_contamination_override_without_retraining(prepared: pd.DataFrame, fitted: HybridAnomalyDetector) -> None:
    base = fitted.score(prepared)["AnomalyKind"].eq("statistical").mean()
    wide = fitted.score(prepared, contamination=0.1)["AnomalyKind"].eq("statistical").mean()
    assert base == pytest.approx(0.03, abs=0.012)
    assert wide == pytest.approx(0.10, abs=0.03)


def test_seed_rule_flags_top_five_percent() -> None:
    scores = np.column_stack([np.arange(1000.0), np.arange(1000.0)[::-1] * 0 + 5])
    total, flags = seed_rule(scores)
    assert flags.sum() == 50 and flags[-50:].all()
    assert total.max() == pytest.approx(1.0)


def test_bad_inputs(workspace, prepared: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="no usable numeric features: the anomaly detector needs at least two of"):
        HybridAnomalyDetector().fit(pd.DataFrame({"CellID": ["a"] * 500, "Note": ["x"] * 500}))
    with pytest.raises(
        InputError, match=r"too few rows to train the anomaly detector: \d+ usable rows .* need at least 100"
    ):
        HybridAnomalyDetector().fit(prepared.iloc[:50])
    with pytest.raises(InputError, match=r"feature column\(s\) Nope not in the data"):
        HybridAnomalyDetector(features=["VoltageDevString", "Nope"]).fit(prepared)
    with pytest.raises(
        ModelError,
        match="no 'anomaly_hybrid' model is registered in this workspace: train one first "
        "with the train_anomaly_detector tool",
    ):
        load_detector("latest", cache=False)
    with pytest.raises(ModelError, match="not trained"):
        HybridAnomalyDetector().score(prepared)


def test_registered_model_with_other_features_is_refused(workspace, prepared: pd.DataFrame) -> None:
    custom = prepared.assign(Humidity=np.random.default_rng(0).normal(50, 5, len(prepared)))
    # fitted on 3 of the 24 cells: the refusal depends on the feature names only (the whole fleet took ~5 s)
    detector = HybridAnomalyDetector(features=["VoltageDevString", "Humidity"]).fit(custom.iloc[:1200])
    register_detector(detector)
    with pytest.raises(ModelError, match=r"trained on feature\(s\) Humidity that the data does not have"):
        detect(prepared)


def test_forest_scores_do_not_depend_on_batch_size() -> None:
    """Small batches take the packed forest walk, large ones per-tree apply: identical scores either way."""
    from bms_anomaly.detectors import ForestDetector
    from bms_anomaly.fast_forest import PACKED_MAX_ROWS

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    forest = ForestDetector().fit(X)
    whole = forest.score(X[:2000])
    parts = np.concatenate([forest.score(X[i : i + 100]) for i in range(0, 2000, 100)])
    assert 100 <= PACKED_MAX_ROWS < 2000
    np.testing.assert_array_equal(whole, parts)
