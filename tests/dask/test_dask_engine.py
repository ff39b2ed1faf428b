"""The Dask engine gives the single-process results (LocalCluster, 2 worker processes).

Tolerances: preprocessing rows equal, every float column within 1e-9 (the scaler's merged
moments differ by rounding only); anomaly scores within 1e-9 and flags/kinds/reasons equal;
failure grids and per-cell scores within 1e-9; the xgboost.dask booster's forecast MAE on the
calibration pairs within 5 % of the single-machine booster's (same pairs, same parameters).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = ["DeviceID", "CellNumber", "Timestamp"]


def assert_tables_equal(a: pd.DataFrame, b: pd.DataFrame, key: list[str], atol: float = 1e-9) -> None:
    a = a.sort_values(key, kind="stable").reset_index(drop=True)
    b = b.sort_values(key, kind="stable").reset_index(drop=True)
    assert a.shape == b.shape
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        x, y = a[name], b[name]
        if pd.api.types.is_float_dtype(x):
            assert (x.isna() == y.isna()).all(), name
            diff = np.abs(x.to_numpy(dtype=np.float64) - y.to_numpy(dtype=np.float64))
            if x.dtype == np.float32:  # stored in float32: within 2 units in the last place
                bound = 2 * np.spacing(np.abs(x.to_numpy()).astype(np.float32)).astype(np.float64)
                ok = np.isnan(diff) | (diff <= np.maximum(np.nan_to_num(bound), atol))
                assert ok.all(), (name, np.nanmax(diff))
            else:
                assert np.nanmax(diff, initial=0.0) <= atol, (name, np.nanmax(diff, initial=0.0))
        else:
            assert x.astype(str).equals(y.astype(str)), name


def test_without_the_switch_nothing_of_dask_is_imported(fleet_dataset: Path, tmp_path: Path) -> None:
    code = f"""
import sys, json
from pathlib import Path
import bms_preprocess.server, bms_anomaly.server, bms_failure.server, bms_forecast.server, bms_datagen.server
from bms_schema.distributed import scheduler_address
from bms_schema.loader import load_canonical
from bms_preprocess.engine import PreprocessOptions, run_preprocess
assert scheduler_address() is None
frame = load_canonical(Path({str(fleet_dataset)!r}))
run_preprocess(Path({str(fleet_dataset)!r}), Path({str(tmp_path / "out.parquet")!r}), PreprocessOptions(impute="interpolate"))
print(json.dumps({{"rows": len(frame), "loaded": sorted(m for m in ("dask", "distributed") if m in sys.modules)}}))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "BMS_DASK_SCHEDULER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["rows"] == 4 * 8 * 6 * 144


def test_dataset_layout_round_trip(fleet_dataset: Path, tmp_path: Path) -> None:
    from bms_schema.dataset import is_dataset, list_partitions, read_device, write_partitions
    from bms_schema.reader import column_names, count_rows, read_table

    assert is_dataset(fleet_dataset)
    parts = list_partitions(fleet_dataset)
    assert [p.device for p in parts] == ["1", "2", "3", "4"]
    assert all(len(p.files) == 6 for p in parts)  # one file per day
    assert all("day=2025-01-0" in str(f) for p in parts for f in p.files)
    whole = read_table(fleet_dataset)
    assert len(whole) == count_rows(fleet_dataset) == sum(len(read_device(p)) for p in parts)
    assert "device" not in whole.columns and "day" not in whole.columns  # the folder names are only the index
    assert column_names(fleet_dataset) == list(whole.columns)
    assert whole["DeviceID"].dtype == np.int64 and whole["Date"].str.match(r"\d\d/\d\d/\d{4}").all()
    # a frame written and read back is the same rows in the same order per device
    again = tmp_path / "again"
    write_partitions(whole, again)
    back = read_table(again)
    assert_tables_equal(
        whole.assign(_i=np.arange(len(whole))), back.assign(_i=np.arange(len(back))), ["DeviceID", "_i"]
    )


def test_preprocessing_on_the_cluster_equals_one_pass(fleet_dataset: Path, cluster: str, tmp_path: Path) -> None:
    from bms_preprocess.distributed import run_preprocess_distributed
    from bms_preprocess.engine import PreprocessOptions, run_preprocess
    from bms_schema.dataset import is_dataset, list_partitions
    from bms_schema.features import FEATURE_COLUMNS
    from bms_schema.reader import read_table

    options = PreprocessOptions(impute="interpolate")
    single = run_preprocess(fleet_dataset, tmp_path / "single.parquet", options)
    dist = run_preprocess_distributed(fleet_dataset, tmp_path / "dist", options, cluster)
    assert is_dataset(tmp_path / "dist") and len(list_partitions(tmp_path / "dist")) == 4
    a, b = read_table(single.output), read_table(dist.output)
    assert len(a) == single.rows == dist.rows > 25_000
    assert set(FEATURE_COLUMNS) <= set(b.columns)
    assert_tables_equal(a, b, KEY)
    assert dist.report == single.report
    assert dist.imputed_counts == single.imputed_counts
    assert dist.scaler is not None and single.scaler is not None
    for name in single.scaler.columns:
        assert dist.scaler.mean_[name] == pytest.approx(single.scaler.mean_[name], rel=1e-12, abs=1e-15)


def _fast_detector(frame: pd.DataFrame):
    from bms_anomaly.detect import prepare_input
    from bms_anomaly.detectors import ForestConfig
    from bms_anomaly.hybrid import HybridAnomalyDetector, HybridConfig
    from bms_anomaly.vae import VAEConfig

    config = HybridConfig(
        forest=ForestConfig(n_estimators=25),
        vae=VAEConfig(epochs=2, max_steps=40, max_train_rows=4000),
        calibration_rows=8000,
        reference_rows=1000,
    )
    prepared, _ = prepare_input(frame)
    return HybridAnomalyDetector(config=config).fit(prepared)


def test_anomaly_scoring_on_the_cluster_equals_one_pass(fleet_dataset: Path, cluster: str, tmp_path: Path) -> None:
    from bms_anomaly.detect import detect
    from bms_anomaly.distributed import detect_distributed, plot_rows
    from bms_anomaly.hybrid import FLAG
    from bms_schema.reader import read_table

    raw = read_table(fleet_dataset)
    detector = _fast_detector(raw)
    single = detect(raw, detector=detector)
    dist = detect_distributed(fleet_dataset, tmp_path / "scored", detector, cluster)
    scored = read_table(tmp_path / "scored")
    assert_tables_equal(single.table, scored, ["CellID", "Timestamp"])
    assert int(scored[FLAG].sum()) == single.info["flagged"] == dist.info["flagged"] > 0
    assert dist.info["kinds"] == single.info["kinds"]
    pd.testing.assert_frame_equal(
        single.cell_summary.sort_values("CellID").reset_index(drop=True),
        dist.cell_summary.sort_values("CellID").reset_index(drop=True),
        rtol=1e-12,
    )
    pd.testing.assert_frame_equal(single.episodes.reset_index(drop=True), dist.episodes, rtol=1e-12)
    cells = list(single.cell_summary["CellID"].head(2))
    assert set(plot_rows(tmp_path / "scored", cells)["CellID"]) == set(cells)


def test_failure_features_and_scores_on_the_cluster_equal_one_pass(cluster: str, tmp_path: Path) -> None:
    from bms_failure.api import _unknown_without_inputs
    from bms_failure.distributed import predict_failure_distributed
    from bms_failure.features import build_feature_grid
    from bms_failure.training import train_failure_model
    from bms_schema.dataset import write_partitions
    from bms_schema.reader import read_table
    from fleet import synthetic_fleet

    frame = synthetic_fleet(devices=4, cells_per_device=6, days=50, interval_minutes=60, seed=2)
    frame = frame.loc[
        ~((frame["DeviceID"] == "D3") & (frame["Timestamp"] > frame["Timestamp"].max() - pd.Timedelta("3D")))
    ]
    model = train_failure_model(frame, validate=False).model
    write_partitions(frame, tmp_path / "fleet")
    from bms_failure.api import load_readings_frame

    canonical, _ = load_readings_frame(tmp_path / "fleet")
    grid = build_feature_grid(canonical, model.config)
    single = model.predict(canonical, grid=grid, horizon_days=7.0)
    single, _ = _unknown_without_inputs(canonical, single)
    table, info = predict_failure_distributed(tmp_path / "fleet", tmp_path / "grid", model, cluster, horizon_days=7.0)
    assert info["data_end"] == grid.data_end  # D3 ends 3 days early: its grid still runs to the fleet's end
    assert_tables_equal(single, table, ["CellID"])
    assert list(table["CellID"]) == list(single["CellID"])  # same ranking
    assert_tables_equal(grid.table, read_table(tmp_path / "grid"), ["CellID", "Bucket"])


def test_forecaster_booster_with_xgboost_dask_matches_single_machine(fleet_dataset: Path, cluster: str) -> None:
    import xgboost as xgb
    from bms_forecast.config import TrainConfig
    from bms_forecast.distributed import fit_booster_distributed, fleet_span, pair_futures
    from bms_forecast.training import fit_booster
    from bms_schema.distributed import client_for

    config = TrainConfig(max_steps=6, max_train_pairs=20_000)
    bounds, targets, partitions = fleet_span(fleet_dataset, cluster)
    futures = pair_futures(cluster, partitions, "CellVoltage", targets, config, bounds)
    dist = fit_booster_distributed(cluster, futures, "CellVoltage", config)
    pairs = [p for p in client_for(cluster).gather(futures) if len(p["y"]) and len(p["ey"])]
    x, y = np.vstack([p["x"] for p in pairs]), np.concatenate([p["y"] for p in pairs])
    ex, ey = np.vstack([p["ex"] for p in pairs]), np.concatenate([p["ey"] for p in pairs])
    booster, _, scale = fit_booster(x, y, ex, ey, config)
    assert dist.scale == scale and dist.train_pairs == len(y) > 10_000
    single_pred = booster.predict(xgb.DMatrix(ex)) * scale
    dask_pred = dist.booster.predict(xgb.DMatrix(ex)) * dist.scale
    mae_single, mae_dask = np.mean(np.abs(single_pred - ey)), np.mean(np.abs(dask_pred - ey))
    assert abs(mae_dask - mae_single) <= 0.05 * mae_single
    assert mae_dask < np.mean(np.abs(ey))  # better than "no change" (the last value)
