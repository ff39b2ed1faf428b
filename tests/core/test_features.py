"""Features: exact definitions, per cell in time order, never across cells, against pandas references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_schema import InputError
from bms_schema.clean import clean_readings
from bms_schema.features import FEATURE_COLUMNS, add_features
from bms_schema.interpolate import interpolate_readings


@pytest.fixture
def featured(cleaned_sample) -> pd.DataFrame:
    return add_features(interpolate_readings(cleaned_sample), window=12)


def test_adds_exactly_the_documented_columns(cleaned_sample, featured):
    assert FEATURE_COLUMNS == (
        "VoltageRate",
        "TemperatureRate",
        "VoltageRollMean",
        "VoltageRollStd",
        "TemperatureRollMean",
        "TemperatureRollStd",
        "SGRollMean",
        "SGRollStd",
        "TempAboveAmbient",
        "SGCorrected25C",
        "VoltageDevString",
        "SGDevString",
        "ResistanceProxy",
        "StateOfCharge",
        "HourOfDay",
    )
    imputed = interpolate_readings(cleaned_sample)
    assert list(featured.columns) == [*imputed.columns, *FEATURE_COLUMNS]
    assert len(featured) == 750
    # on gap-free input only ResistanceProxy has NaN: before each cell's first current step
    nan = featured[list(FEATURE_COLUMNS)].isna().sum()
    assert nan.drop("ResistanceProxy").sum() == 0 and nan["ResistanceProxy"] == 15


def test_rates_and_rolling_match_pandas_groupby(featured):
    g = featured.groupby("CellID", sort=False)
    hours = g["Timestamp"].diff().dt.total_seconds() / 3600
    np.testing.assert_allclose(featured["VoltageRate"], (g["CellVoltage"].diff() / hours).fillna(0.0), atol=1e-9)
    np.testing.assert_allclose(
        featured["TemperatureRate"], (g["CellTemperature"].diff() / hours).fillna(0.0), atol=1e-9
    )
    for prefix, column in (
        ("Voltage", "CellVoltage"),
        ("Temperature", "CellTemperature"),
        ("SG", "CellSpecificGravity"),
    ):
        rolling = g[column].rolling(12, min_periods=1)
        mean = rolling.mean().reset_index(level=0, drop=True).sort_index()
        std = g[column].rolling(12, min_periods=2).std().reset_index(level=0, drop=True).sort_index().fillna(0.0)
        np.testing.assert_allclose(featured[f"{prefix}RollMean"], mean, atol=1e-12)
        np.testing.assert_allclose(featured[f"{prefix}RollStd"], std, atol=1e-12)


def test_never_across_cell_boundaries(featured):
    first = featured.groupby("CellID").head(1)
    assert len(first) == 15
    assert (first["VoltageRate"] == 0).all() and (first["TemperatureRate"] == 0).all()
    np.testing.assert_allclose(first["VoltageRollMean"], first["CellVoltage"])
    assert (first["VoltageRollStd"] == 0).all() and first["ResistanceProxy"].isna().all()


def test_physical_features(featured):
    f = featured
    np.testing.assert_allclose(f["TempAboveAmbient"], f["CellTemperature"] - f["AmbientTemperature"])
    np.testing.assert_allclose(f["SGCorrected25C"], f["CellSpecificGravity"] + 0.0007 * (f["CellTemperature"] - 25))
    soc = np.clip((f["SGCorrected25C"] - 1.100) / (1.280 - 1.100) * 100, 0, 100)
    np.testing.assert_allclose(f["StateOfCharge"], soc)
    assert f["StateOfCharge"].between(0, 100).all() and (f["StateOfCharge"] == 100).any()
    ts = f["Timestamp"]
    np.testing.assert_allclose(f["HourOfDay"], ts.dt.hour + ts.dt.minute / 60 + ts.dt.second / 3600)
    assert f["HourOfDay"].iloc[0] == pytest.approx(9 + 12 / 60 + 46 / 3600)


def test_string_deviation_is_ieee450_median(featured):
    f = featured
    for column, feature in (("CellVoltage", "VoltageDevString"), ("CellSpecificGravity", "SGDevString")):
        median = f.groupby(["DeviceID", "Timestamp"])[column].transform("median")
        np.testing.assert_allclose(f[feature], f[column] - median)
    # a string of 5 cells: the median cell has deviation 0 at every packet
    zero = (f["VoltageDevString"] == 0).groupby([f["DeviceID"], f["Timestamp"]]).any()
    assert zero.all()


def test_resistance_proxy_on_a_current_step(minimal):
    rows = [
        ("A", 1, "2025-01-01T00:00:00", 2.20, 25, 1.24, 0.0, 24),
        ("A", 1, "2025-01-01T00:01:00", 2.21, 25, 1.24, 0.5, 24),  # 0.5 A change: below the 1 A threshold
        ("A", 1, "2025-01-01T00:02:00", 2.10, 25, 1.24, -10.5, 24),  # step of -11 A, voltage -0.11 V
        ("A", 1, "2025-01-01T00:03:00", 2.11, 25, 1.24, -10.4, 24),  # no step: carried forward
        ("A", 2, "2025-01-01T00:00:00", 2.20, 25, 1.24, 0.0, 24),  # another cell: never inherits
        ("A", 2, "2025-01-01T00:01:00", 2.30, 25, 1.24, 5.0, 24),  # step of +5 A, +0.1 V
    ]
    cleaned, _ = clean_readings(minimal(rows))
    out = add_features(cleaned)
    proxy = out["ResistanceProxy"].to_numpy()
    assert np.isnan(proxy[0]) and np.isnan(proxy[1])
    assert proxy[2] == pytest.approx(0.01) and proxy[3] == pytest.approx(0.01)
    assert np.isnan(proxy[4]) and proxy[5] == pytest.approx(0.02)
    # rates use real time deltas: +0.01 V in 60 s = 0.6 V/h
    assert out["VoltageRate"].iloc[1] == pytest.approx(0.6)


def test_unsorted_input_gives_the_same_features(featured):
    shuffled = featured.drop(columns=list(FEATURE_COLUMNS)).sample(frac=1.0, random_state=1)
    again = add_features(shuffled).sort_index()
    pd.testing.assert_frame_equal(again[list(FEATURE_COLUMNS)], featured[list(FEATURE_COLUMNS)])


def test_window_is_configurable_and_validated(cleaned_sample):
    frame = interpolate_readings(cleaned_sample)
    three = add_features(frame, window=3)
    g = frame.groupby("CellID", sort=False)["CellVoltage"]
    expected = g.rolling(3, min_periods=1).mean().reset_index(level=0, drop=True).sort_index()
    np.testing.assert_allclose(three["VoltageRollMean"], expected, atol=1e-12)
    with pytest.raises(InputError, match="window must be a whole number of readings >= 1, got 0"):
        add_features(frame, window=0)
    with pytest.raises(InputError, match="missing column"):
        add_features(frame.drop(columns="CellVoltage"))
