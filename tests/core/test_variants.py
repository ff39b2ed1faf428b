"""The data core on the strings users have: VRLA (no SG), no discharge, one cell, irregular time stamps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_schema.features import FEATURE_COLUMNS
from bms_schema.loader import load_canonical

SG_FEATURES = {"SGRollMean", "SGRollStd", "SGCorrected25C", "SGDevString", "StateOfCharge"}


@pytest.fixture(scope="module")
def vrla_no_discharge() -> pd.DataFrame:
    from bms_datagen.simulator import simulate_fleet

    return simulate_fleet(
        devices=1, cells_per_device=8, days=3, interval_minutes=15, seed=1, discharge_every_days=0, chemistry="vrla"
    )


def test_vrla_without_specific_gravity_is_accepted_and_says_what_it_skipped(vrla_no_discharge):
    assert "CellSpecificGravity" not in vrla_no_discharge.columns
    frame, report = load_canonical(vrla_no_discharge, return_report=True)
    assert len(frame) == report["rows_out"] > 2000 and frame["CellID"].nunique() == 8
    assert frame["CellSpecificGravity"].isna().all()
    assert report["measurements_without_value"] == ["CellSpecificGravity"]
    assert SG_FEATURES <= set(report["skipped_features"])
    assert all(frame[c].isna().all() for c in SG_FEATURES)
    # everything that does not need SG has values
    others = [c for c in FEATURE_COLUMNS if c not in SG_FEATURES | {"ResistanceProxy"}]
    assert frame[others].notna().all().all()
    assert report["operating_state"]["chemistry"] == "vrla"
    assert set(frame["OperatingState"].unique()) <= {"float", "charge", "discharge", "rest", "equalize"}


def test_no_discharge_leaves_resistance_proxy_absent_and_says_why(vrla_no_discharge):
    frame, report = load_canonical(vrla_no_discharge, return_report=True)
    assert frame["ResistanceProxy"].isna().all()
    assert "no charge or discharge" in report["skipped_features"]["ResistanceProxy"]
    assert (frame["OperatingState"] != "discharge").mean() > 0.99


def _one_string(cells: int, steps: int, device: str = "M1") -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ts = pd.date_range("2026-03-01", periods=steps, freq="5min", tz="UTC")
    n = cells * steps
    return pd.DataFrame(
        {
            "DeviceID": device,
            "CellNumber": np.tile(np.arange(1, cells + 1), steps),
            "Timestamp": np.repeat(ts, cells),
            "CellVoltage": 2.25 + rng.normal(0, 0.01, n),
            "CellTemperature": 24 + rng.normal(0, 0.3, n),
            "InstantaneousCurrent": np.where(np.arange(n) % 40 < 10, -15.0, 0.3),
        }
    )


def test_one_cell_string_falls_back_to_its_own_history_and_says_so():
    frame, report = load_canonical(_one_string(1, 40), return_report=True)
    assert report["single_cell_strings"] == ["M1"] and "own rolling mean" in report["peer_fallback"]
    expected = frame["CellVoltage"] - frame["VoltageRollMean"]
    np.testing.assert_allclose(frame["VoltageDevString"], expected, atol=1e-12)
    assert frame["VoltageDevString"].abs().max() > 0  # not the constant 0 a string median of itself gives
    # a string with peers keeps the string median
    many, report = load_canonical(_one_string(4, 40, "S"), return_report=True)
    assert report["single_cell_strings"] == [] and report["peer_fallback"] is None
    median = many.groupby("Timestamp")["CellVoltage"].transform("median")
    np.testing.assert_allclose(many["VoltageDevString"], many["CellVoltage"] - median, atol=1e-12)


def test_irregular_sampling_offsets_duplicates_and_late_packets():
    # 1 s to 1 h between readings, local times with their UTC offsets, a duplicate and a late packet
    local = [
        "2026-05-01T10:00:00+02:00",
        "2026-05-01T10:00:01+02:00",
        "2026-05-01T10:00:11+02:00",
        "2026-05-01T09:10:11+01:00",
        "2026-05-01T10:10:11+02:00",  # same instant as the next: conflict
        "2026-05-01T11:10:11+02:00",
        "2026-05-01T10:40:11+02:00",
    ]  # the last arrives late
    voltages = [2.20, 2.21, 2.22, 2.23, 2.99, 2.24, 2.235]
    rows = pd.DataFrame(
        {"DeviceID": "D", "CellNumber": 1, "Timestamp": local, "CellVoltage": voltages, "CellTemperature": 25.0}
    )
    rows = pd.concat([rows, rows.iloc[[1]]], ignore_index=True)  # an exact duplicate packet
    frame, report = load_canonical(rows, return_report=True)
    assert report["duplicates_dropped"] == 1 and report["conflicting_rows_dropped"] == 1
    stamps = frame["Timestamp"].dt.strftime("%H:%M:%S").tolist()
    assert stamps == ["08:00:00", "08:00:01", "08:00:11", "08:10:11", "08:40:11", "09:10:11"]  # UTC, in order
    assert frame["CellVoltage"].tolist() == [2.20, 2.21, 2.22, 2.23, 2.235, 2.24]  # first of the conflict kept
    # rates use the real time between readings: 0.01 V in 1 s = 36 V/h; 0.005 V in 30 min = 0.01 V/h
    assert frame["VoltageRate"].iloc[1] == pytest.approx(36.0)
    assert frame["VoltageRate"].iloc[4] == pytest.approx(0.01)
    assert report["per_cell"]["D-1"]["longest_interval_s"] == 1800.0
