"""The regular-grid panel and the feature matrices, on tiny hand-made tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_forecast.config import WINDOW
from bms_forecast.features import build_features, feature_names, history_window, target_context
from bms_forecast.panel import build_panel, forward_fill
from bms_schema import InputError


def table(n: int = 40, cells: int = 2, step_min: int = 60, voltage=None) -> pd.DataFrame:
    times = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) * step_min, unit="min")
    rows = []
    for c in range(1, cells + 1):
        v = np.arange(n, dtype=float) * 0.001 + 2.0 + c * 0.01 if voltage is None else np.asarray(voltage, float)
        rows.append(
            pd.DataFrame(
                {
                    "DeviceID": "A",
                    "CellNumber": c,
                    "Timestamp": times,
                    "CellVoltage": v,
                    "CellTemperature": 25.0 + c,
                    "CellSpecificGravity": 1.21,
                    "InstantaneousCurrent": 1.0,
                    "AmbientTemperature": 24.0,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_grid_averages_duplicates_and_marks_dropped_packets() -> None:
    frame = table(n=10, cells=1)
    dup = frame.iloc[[3]].assign(CellVoltage=2.021)  # resent packet at slot 3 with another value
    frame = pd.concat([frame.drop(index=[5]), dup], ignore_index=True).sample(frac=1, random_state=0)  # shuffled
    panel = build_panel(frame)
    assert panel.length.tolist() == [10] and panel.readings.tolist() == [10]
    v = panel.values["CellVoltage"]
    assert v[3] == pytest.approx((2.013 + 2.021) / 2)  # 2.0 + 0.01 + 0.003 and the resent 2.021
    assert not panel.observed["CellVoltage"][5]  # the dropped packet's slot
    assert v[5] == pytest.approx(v[4])  # forward-filled, never interpolated from slot 6
    assert panel.step_seconds.tolist() == [3600.0] and panel.period.tolist() == [24]


def test_sentinels_are_missing_and_fill_is_causal() -> None:
    frame = table(n=12, cells=1)
    frame.loc[4, "CellVoltage"] = 65.535  # 0xFFFF register
    panel = build_panel(frame)
    assert not panel.observed["CellVoltage"][4]
    assert panel.values["CellVoltage"][4] == pytest.approx(panel.values["CellVoltage"][3])


def test_imputed_values_are_not_taken_for_readings() -> None:
    from bms_schema import normalize

    canonical, _ = normalize(table(n=12, cells=1))
    canonical.loc[6, "CellVoltage_Quality"] = "sentinel"  # an earlier step imputed this value
    panel = build_panel(canonical)
    assert not panel.observed["CellVoltage"][6] and panel.observed["CellVoltage"].sum() == 11
    assert panel.values["CellVoltage"][6] == pytest.approx(panel.values["CellVoltage"][5])


def test_forward_fill_never_crosses_cells() -> None:
    values = np.array([1.0, np.nan, np.nan, 5.0, np.nan])
    cell = np.array([0, 0, 1, 1, 1])
    out = forward_fill(values, cell, np.array([0, 2]))
    assert np.isnan(out[2]) and out.tolist()[:2] == [1.0, 1.0] and out.tolist()[3:] == [5.0, 5.0]


def test_peer_median_is_the_string_median_at_the_same_time() -> None:
    frame = table(n=10, cells=3)
    panel = build_panel(frame)
    expected = frame.groupby("Timestamp")["CellVoltage"].median().to_numpy()
    for c in range(3):
        s = panel.start[c]
        assert np.allclose(panel.peer_median["CellVoltage"][s : s + 10], expected)


def test_missing_timestamp_column_is_a_clear_error() -> None:
    frame = table(n=10, cells=1).drop(columns="Timestamp")
    with pytest.raises(InputError, match="'Timestamp' is missing"):
        build_panel(frame)


def test_features_on_a_linear_series_have_exact_values() -> None:
    n = 60  # hourly readings: period 24 steps
    panel = build_panel(table(n=n, cells=1, voltage=np.arange(n, dtype=float) / 100 + 2.0))
    ctx = target_context(panel, "CellVoltage")
    names = feature_names("CellVoltage", panel.targets)
    origin, h = np.array([40, 40]), np.array([1, 5])
    x = build_features(panel, ctx, "CellVoltage", origin, h)
    assert x.shape == (2, len(names))
    f = dict(zip(names, x[1]))
    assert f["lag1"] == pytest.approx(-0.01) and f["lag11"] == pytest.approx(-0.11)
    assert f["roll_mean3"] == pytest.approx(-0.01) and f["roll_std3"] == pytest.approx(
        np.std([0, 1, 2]) / 100, rel=1e-4
    )
    assert f["season_level"] == pytest.approx((h[1] - 24) / 100, rel=1e-4)  # value 24 steps before the target time
    assert f["season_delta"] == pytest.approx(h[1] / 100, rel=1e-4)
    assert f["horizon"] == 5 and f["level"] == pytest.approx(2.40)
    # the recursive step k=1 has the same features as the direct horizon 1
    buffer = history_window(panel, "CellVoltage", origin[:1])
    same = build_features(panel, ctx, "CellVoltage", origin[:1], np.array([1]), buffer=buffer, base_offset=0)
    assert np.array_equal(same[0], x[0])
    assert buffer.shape == (1, WINDOW)


def test_no_seasonal_feature_before_a_full_day_of_history() -> None:
    panel = build_panel(table(n=30, cells=1))
    ctx = target_context(panel, "CellVoltage")
    names = feature_names("CellVoltage", panel.targets)
    x = build_features(panel, ctx, "CellVoltage", np.array([15]), np.array([3]))
    assert np.isnan(x[0, names.index("season_level")])


def test_timestamp_unit_or_text_timestamps_give_the_same_grid() -> None:
    """Seconds come from the timestamps whatever their unit; a canonical CSV read back has text timestamps."""
    from bms_schema import normalize

    canonical, _ = normalize(table(n=10, cells=1))
    reference = build_panel(canonical)
    micro = canonical.assign(Timestamp=canonical["Timestamp"].astype("datetime64[us, UTC]"))
    text = canonical.assign(Timestamp=canonical["Timestamp"].astype(str))
    for frame in (micro, text):
        panel = build_panel(frame)
        assert panel.step_seconds.tolist() == [3600.0] and panel.period.tolist() == [24]
        assert np.array_equal(panel.time_s, reference.time_s)


def test_split_is_one_common_cut_in_time_for_every_cell() -> None:
    """Cells covering different spans: no training reading is later than any calibration/test reading."""
    from bms_forecast.config import TrainConfig
    from bms_forecast.training import split_windows

    early = table(n=400, cells=2)
    late = table(n=200, cells=1)
    late["CellNumber"] = 3
    late["Timestamp"] = late["Timestamp"] + pd.Timedelta(hours=200)  # starts halfway, ends together
    panel = build_panel(pd.concat([early, late], ignore_index=True))
    windows = split_windows(panel, TrainConfig(max_steps=25, holdout_fraction=0.2))
    pos = np.arange(panel.size)
    in_train = pos < windows.train_end[panel.cell]
    in_cal = ~in_train & (pos < windows.cal_end[panel.cell])
    in_test = pos >= windows.cal_end[panel.cell]
    assert panel.time_s[in_train].max() < panel.time_s[in_cal].min()
    assert panel.time_s[in_cal].max() < panel.time_s[in_test].min()
    # the 400-hour span is cut at 320 h and 240 h for all three cells
    starts = panel.time_s[panel.start]
    assert list((panel.time_s[windows.cal_end] - starts.min()) / 3600) == [320.0, 320.0, 320.0]
    assert list((panel.time_s[windows.train_end] - starts.min()) / 3600) == [240.0, 240.0, 240.0]
