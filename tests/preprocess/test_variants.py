"""The preprocessing engine on VRLA (no SG), no discharge and one-cell strings: accepted, reported, chunk-invariant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_preprocess.engine import PreprocessOptions, run_preprocess
from bms_schema.features import FEATURE_COLUMNS
from bms_schema.loader import load_canonical


@pytest.fixture(scope="module")
def fleet_csv(tmp_path_factory) -> Path:
    """A VRLA string of 6 cells with no discharge, plus a one-cell monobloc string (no peers)."""
    from bms_datagen.simulator import simulate_fleet

    big = simulate_fleet(
        devices=1,
        cells_per_device=6,
        days=2,
        interval_minutes=15,
        seed=2,
        discharge_every_days=0,
        chemistry="vrla",
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
    )
    mono = simulate_fleet(
        devices=1,
        cells_per_device=1,
        days=2,
        interval_minutes=15,
        seed=3,
        discharge_every_days=0,
        chemistry="vrla",
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
    )
    mono["DeviceID"] = "mono"
    path = tmp_path_factory.mktemp("variants") / "vrla.csv"
    pd.concat([big, mono], ignore_index=True).sort_values("PacketDateTime", kind="stable").to_csv(path, index=False)
    return path


def test_full_chain_accepts_vrla_without_discharge_and_reports_it(fleet_csv, tmp_path):
    out = tmp_path / "out.csv"
    result = run_preprocess(fleet_csv, out, PreprocessOptions(impute="mice", sample_rows=500))
    frame = pd.read_csv(out)
    assert result.rows == len(frame) > 1000
    report = result.report
    assert report["measurements_without_value"] == ["CellSpecificGravity"]
    assert {"SGRollMean", "StateOfCharge", "ResistanceProxy"} <= set(report["skipped_features"])
    # columns with no value are not scaled (and say so) instead of stopping the run
    assert "ResistanceProxy" in report["not_scaled"] and "CellSpecificGravity" not in result.scaler.columns
    assert "ResistanceProxy_scaled" not in frame.columns and "CellVoltage_scaled" in frame.columns
    assert report["single_cell_strings"] == ["mono"]
    assert frame[["CellVoltage", "CellTemperature"]].notna().all().all()


def test_chunked_equals_one_pass_and_the_loader(fleet_csv, tmp_path):
    one = run_preprocess(fleet_csv, tmp_path / "one.csv", PreprocessOptions(impute="interpolate", scale=False))
    chunked = run_preprocess(
        fleet_csv, tmp_path / "chunked.csv", PreprocessOptions(impute="interpolate", scale=False, chunksize=200)
    )
    assert chunked.chunks > 3 and chunked.rows == one.rows
    a, b = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "chunked.csv")
    cols = list(FEATURE_COLUMNS)
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=1e-9, atol=1e-9)
    loaded = load_canonical(fleet_csv)
    np.testing.assert_allclose(a[cols].to_numpy(float), loaded[cols].to_numpy(float), rtol=1e-9, atol=1e-9)
    mono = loaded["DeviceID"] == "mono"
    np.testing.assert_allclose(
        loaded.loc[mono, "VoltageDevString"],
        loaded.loc[mono, "CellVoltage"] - loaded.loc[mono, "VoltageRollMean"],
        atol=1e-12,
    )
