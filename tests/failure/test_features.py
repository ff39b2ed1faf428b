"""Feature grid: exact values on small hand-made frames, and no look-ahead (causality)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_failure.config import FEATURES, FeatureConfig, format_reason, readable
from bms_failure.features import build_feature_grid
from bms_schema import InputError, normalize, sort_readings
from failure.fleet import canonical_fleet


def _frame(hours: int = 72, cells: int = 4, **overrides) -> pd.DataFrame:
    """Cells of one string, hourly readings, flat values; ``overrides`` maps column -> per-(cell, hour) array."""
    times = pd.date_range("2026-01-01", periods=hours, freq="h", tz="UTC")
    n = hours * cells
    frame = pd.DataFrame(
        {
            "DeviceID": "A",
            "CellNumber": np.repeat(np.arange(1, cells + 1), hours),
            "Timestamp": np.tile(times, cells),
            "CellVoltage": np.full(n, 2.23),
            "CellTemperature": np.full(n, 26.0),
            "CellSpecificGravity": np.full(n, 1.215),
            "InstantaneousCurrent": np.full(n, 0.5),
            "AmbientTemperature": np.full(n, 25.0),
        }
    )
    for column, values in overrides.items():
        frame[column] = np.asarray(values, dtype=float).reshape(-1)
    canonical, _ = normalize(frame)
    return sort_readings(canonical)


def _last(grid, cell: str) -> pd.Series:
    last = grid.last_rows().set_index("CellID")
    return last.loc[cell]


def test_levels_deviation_and_temperature_over_ambient() -> None:
    voltage = np.full((4, 72), 2.23)
    voltage[2] -= 0.05  # cell A-3 sits 50 mV below its peers
    temperature = np.full((4, 72), 26.0)
    temperature[1] += 4.0  # cell A-2 runs 4 degC hotter
    grid = build_feature_grid(_frame(CellVoltage=voltage, CellTemperature=temperature))
    a3, a2, a1 = _last(grid, "A-3"), _last(grid, "A-2"), _last(grid, "A-1")
    assert a3["voltage_mean_short"] == pytest.approx(2.18, abs=1e-6)
    assert a3["voltage_dev_string_short"] == pytest.approx(-0.05, abs=1e-6)
    assert a3["voltage_dev_string_long"] == pytest.approx(-0.05, abs=1e-6)
    assert a1["voltage_dev_string_short"] == pytest.approx(0.0, abs=1e-6)
    assert a2["temp_over_ambient_short"] == pytest.approx(5.0, abs=1e-5)
    assert a1["temp_over_ambient_short"] == pytest.approx(1.0, abs=1e-5)
    assert a2["temp_dev_string_short"] == pytest.approx(4.0, abs=1e-5)
    assert a3["voltage_std_short"] == pytest.approx(0.0, abs=1e-6)
    assert a3["rule_float_voltage"] == pytest.approx(2.18, abs=1e-6)
    assert set(FEATURES) <= set(grid.table.columns)
    assert len(grid.table) == 4 * 72


def test_trend_is_the_least_squares_slope_per_day() -> None:
    hours = 24 * 10
    voltage = np.full((4, hours), 2.23)
    voltage[0] = 2.23 - 0.002 * np.arange(hours) / 24.0  # -2 mV per day
    sg = np.full((4, hours), 1.215)
    sg[0] = 1.215 - 0.001 * np.arange(hours) / 24.0
    grid = build_feature_grid(_frame(hours=hours, CellVoltage=voltage, CellSpecificGravity=sg))
    a1 = _last(grid, "A-1")
    assert a1["voltage_trend_long"] == pytest.approx(-0.002, rel=1e-3)
    assert a1["sg_trend_long"] == pytest.approx(-0.001, rel=1e-3)
    # The peers are flat, so the cell drifts away from the string median at the same rate.
    assert a1["voltage_dev_trend_long"] == pytest.approx(-0.002, rel=1e-3)
    assert _last(grid, "A-2")["voltage_trend_long"] == pytest.approx(0.0, abs=1e-7)


def test_resistance_proxy_sees_the_extra_drop_under_discharge() -> None:
    hours = 48
    current = np.tile(np.where(np.arange(hours) % 12 == 0, -20.0, 0.5), (4, 1))
    voltage = 2.23 + current * 0.004
    voltage[1] = 2.23 + current[1] * 0.009  # 5 mOhm more than its peers
    grid = build_feature_grid(_frame(hours=hours, CellVoltage=voltage, InstantaneousCurrent=current))
    assert _last(grid, "A-2")["resistance_proxy_long"] == pytest.approx(0.005, rel=1e-4)
    assert _last(grid, "A-1")["resistance_proxy_long"] == pytest.approx(0.0, abs=1e-9)
    # Float voltage ignores the discharge readings.
    assert _last(grid, "A-2")["voltage_float_mean_short"] == pytest.approx(2.23 + 0.5 * 0.009, abs=1e-9)


def test_data_age_missing_rate_and_anomaly_rate() -> None:
    hours = 72
    frame = _frame(hours=hours)
    stale = (frame["CellID"] == "A-4") & (frame["Timestamp"] > frame["Timestamp"].max() - pd.Timedelta(hours=10))
    frame = frame.loc[~stale].reset_index(drop=True)
    holes = (frame["CellID"] == "A-1") & (frame["Timestamp"].dt.hour % 4 == 0)
    frame.loc[holes, "CellSpecificGravity"] = np.nan
    anomalies = frame[["CellID", "Timestamp"]].copy()
    anomalies["AnomalyFlag"] = (anomalies["CellID"] == "A-2") & (anomalies["Timestamp"].dt.hour % 2 == 0)
    grid = build_feature_grid(frame, anomalies=anomalies)
    assert _last(grid, "A-4")["data_age_hours"] == pytest.approx(10.0)
    assert _last(grid, "A-3")["data_age_hours"] == pytest.approx(0.0)
    assert _last(grid, "A-1")["missing_rate_short"] == pytest.approx(0.25)
    assert _last(grid, "A-2")["anomaly_rate_short"] == pytest.approx(0.5)
    assert _last(grid, "A-3")["anomaly_rate_long"] == pytest.approx(0.0)
    without = build_feature_grid(frame)
    assert without.table["anomaly_rate_short"].isna().all()


def test_features_never_look_ahead() -> None:
    """Changing every reading after a cut leaves all features up to the cut unchanged."""
    frame = canonical_fleet(devices=2, cells_per_device=6, days=20, seed=4)
    cut = pd.Timestamp("2026-01-12", tz="UTC")
    changed = frame.copy()
    later = changed["Timestamp"] >= cut
    rng = np.random.default_rng(0)
    for column in ("CellVoltage", "CellSpecificGravity", "CellTemperature", "InstantaneousCurrent"):
        changed.loc[later, column] = changed.loc[later, column] * rng.uniform(0.7, 1.3, int(later.sum()))
    a = build_feature_grid(frame).table
    b = build_feature_grid(changed).table
    upto = a["Timestamp"] <= cut
    assert upto.sum() > 0 and (~upto).sum() > 0
    pd.testing.assert_frame_equal(a.loc[upto].reset_index(drop=True), b.loc[upto].reset_index(drop=True))
    assert not np.allclose(a.loc[~upto, "voltage_mean_short"], b.loc[~upto, "voltage_mean_short"])


def test_cells_are_per_device_and_reasons_are_readable() -> None:
    frame = canonical_fleet(devices=2, cells_per_device=3, days=20, seed=1)
    grid = build_feature_grid(frame)
    assert sorted(grid.cells["CellID"]) == ["D1-1", "D1-2", "D1-3", "D2-1", "D2-2", "D2-3"]
    assert readable("sg_dev_string_long") == "specific gravity vs string peers, 7 days"
    assert readable("voltage_mean_short", FeatureConfig(short_window_hours=12)) == "cell voltage, 12 h mean"
    assert (
        format_reason("voltage_dev_string_short", -0.0512, 0.83) == "voltage vs string peers, 24 h = -0.0512 V (+0.83)"
    )


def test_bad_inputs_are_clear() -> None:
    # specific gravity is optional (VRLA); temperature is not
    no_temp = _frame(hours=30).drop(columns=["CellTemperature", "CellTemperature_Quality", "CellID"])
    with pytest.raises(InputError, match="required column 'CellTemperature' is missing"):
        build_feature_grid(no_temp)
    with pytest.raises(InputError, match="step_hours must be positive"):
        FeatureConfig(step_hours=0)
    with pytest.raises(InputError, match="use a larger step_hours"):
        build_feature_grid(_frame(hours=48), FeatureConfig(max_grid_rows=100))


def test_canonical_names_without_quality_codes_are_still_normalised() -> None:
    """A table that only uses the canonical column names still has its 0xFFFF sentinels turned into gaps."""
    flat = _frame(hours=30, cells=2)
    plain = flat[
        [
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
    ].copy()
    plain.loc[plain.index[-1], "CellVoltage"] = 65.535  # a sentinel, no CellVoltage_Quality column to say so
    last = build_feature_grid(plain).last_rows().set_index("CellID")
    assert last["voltage_mean_short"].to_numpy() == pytest.approx([2.23, 2.23])
