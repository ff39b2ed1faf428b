"""Training, backtest, intervals, registry round trip and the in-process forecast API.

One small forecaster is trained per module on the fleet simulator's raw packets (4 strings x 3
cells x 8 days at 15 min, 19 % sentinel dropouts, duplicates, late packets, discharges, anomalies)
with the last 25 readings of every cell hidden, and shared by the tests.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_forecast.config import WINDOW, TrainConfig
from bms_forecast.model import FORECAST_COLUMNS, describe_strategy
from bms_forecast.persistence import load_forecaster, save_forecaster
from bms_forecast.training import fit_forecaster, min_training_readings
from bms_schema import InputError, ModelError, ModelRegistry
from forecast.synthetic import synthetic_readings

HIDDEN = 25
CONFIG = TrainConfig(max_steps=HIDDEN, max_train_pairs=20_000, max_backtest_origins=400)


def split_last(frame: pd.DataFrame, hidden: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = frame.sort_values(["CellID", "Timestamp"], kind="stable")
    rank = frame.groupby("CellID").cumcount(ascending=False)
    return frame.loc[rank >= hidden], frame.loc[rank < hidden]


@pytest.fixture(scope="module")
def trained() -> tuple:
    from bms_datagen.simulator import simulate_fleet
    from bms_schema.clean import clean_readings

    full, _ = clean_readings(simulate_fleet(devices=4, cells_per_device=3, days=8, seed=0))
    history, hidden = split_last(full, HIDDEN)
    forecaster, report = fit_forecaster(history, CONFIG)
    return forecaster, report, history, hidden


def hidden_scores(trained: tuple) -> tuple[dict[str, tuple[float, float]], float]:
    """Per target (model MAE, last-value MAE) over every cell's hidden 25 readings, and pooled coverage."""
    forecaster, _, history, hidden = trained
    errors: dict[str, list[list[float]]] = {}
    inside = []
    for cell, actual in hidden.groupby("CellID"):
        table = forecaster.forecast(history, cell, HIDDEN)
        past = history.loc[history["CellID"] == cell]
        for target, part in table.groupby("Target"):
            truth = actual[target].to_numpy()
            ok = np.isfinite(truth)
            last = past[target].dropna().iloc[-1]
            pair = errors.setdefault(target, [[], []])
            pair[0].extend(np.abs(part["Forecast"].to_numpy() - truth)[ok])
            pair[1].extend(np.abs(last - truth)[ok])
            inside.extend(((truth >= part["Lower"].to_numpy()) & (truth <= part["Upper"].to_numpy()))[ok])
    return {t: (float(np.mean(a)), float(np.mean(b))) for t, (a, b) in errors.items()}, float(np.mean(inside))


def test_forecast_beats_last_value_on_hidden_readings(trained) -> None:
    scores, coverage = hidden_scores(trained)
    for target in ("CellVoltage", "CellTemperature"):
        model_mae, naive_mae = scores[target]
        assert model_mae < naive_mae, f"{target}: model {model_mae:.5f} vs last value {naive_mae:.5f}"
    # one 25-reading window of 12 cells is a small, correlated sample: roughly nominal, not exactly
    assert 0.6 <= coverage <= 0.95, f"pooled 80% interval coverage on the hidden readings: {coverage:.3f}"


def test_forecast_table_has_exact_shape_and_columns(trained) -> None:
    forecaster, _, history, _ = trained
    table = forecaster.forecast(history, "1-3", 7)
    assert list(table.columns) == list(FORECAST_COLUMNS)
    assert len(table) == 7 * 5 and table.groupby("Target").size().eq(7).all()
    assert set(table["Target"]) == {
        "CellVoltage",
        "CellTemperature",
        "CellSpecificGravity",
        "InstantaneousCurrent",
        "AmbientTemperature",
    }
    assert table["Step"].tolist()[:7] == list(range(1, 8))
    assert (table["Lower"] <= table["Forecast"]).all() and (table["Forecast"] <= table["Upper"]).all()
    last = history.loc[history["CellID"] == "1-3", "Timestamp"].max()
    first = table.loc[table["Step"] == 1, "Timestamp"].iloc[0]
    assert first - last == pd.Timedelta(minutes=15)
    assert str(table["Timestamp"].dtype) == "datetime64[ns, UTC]"
    # a wider nominal coverage gives a wider interval around the same forecast
    wide = forecaster.forecast(history, "1-3", 7, coverage=0.95)
    assert np.allclose(wide["Forecast"], table["Forecast"])
    assert ((wide["Upper"] - wide["Lower"]) >= (table["Upper"] - table["Lower"]) - 1e-12).all()


def test_forecast_from_recent_rows_equals_forecast_from_the_whole_history(trained) -> None:
    from bms_forecast.panel import build_panel

    forecaster, _, history, _ = trained
    string = history.loc[history["DeviceID"] == "3"]
    panel = build_panel(string, forecaster.targets)
    whole = forecaster.forecast_panel(panel, panel.cell_index("3-2"), 25)
    pd.testing.assert_frame_equal(forecaster.forecast(history, "3-2", 25), whole)


def test_preprocessed_history_gives_the_same_forecast(trained) -> None:
    """An interpolated + featured table from the data core is read through its quality codes."""
    from bms_schema.loader import load_canonical

    forecaster, _, history, _ = trained
    string = history.loc[history["DeviceID"] == "2"]
    prepared = load_canonical(string, impute="interpolate")
    assert prepared["CellVoltage"].notna().all()  # gaps were filled by the preprocessing
    pd.testing.assert_frame_equal(forecaster.forecast(prepared, "2-3", 25), forecaster.forecast(string, "2-3", 25))


def test_backtest_report_has_metrics_per_target_and_horizon(trained) -> None:
    _, report, _, _ = trained
    assert set(report["metrics"]) == set(report["targets"])
    for target, m in report["metrics"].items():
        assert set(m["strategy_selection"]) == {"direct", "recursive"}
        by_step = {s: np.array(v["calibration_mae_by_step"]) for s, v in m["strategy_selection"].items()}
        k = m["recursive_steps"]
        combined = by_step["recursive"][:k].sum() + by_step["direct"][k:].sum()
        for other in range(HIDDEN + 1):  # the switch step is the best of all "recursive 1..k, direct after"
            assert combined <= by_step["recursive"][:other].sum() + by_step["direct"][other:].sum() + 1e-12
        assert m["strategy"] == describe_strategy(k, HIDDEN)
        for method in ("model", "naive_last", "naive_seasonal", "strategy_direct", "strategy_recursive"):
            for metric in ("mae", "rmse", "mase"):
                assert len(m["by_horizon"][method][metric]) == HIDDEN
        assert len(m["by_horizon"]["coverage"]) == HIDDEN
        mae, rmse = np.array(m["by_horizon"]["model"]["mae"]), np.array(m["by_horizon"]["model"]["rmse"])
        assert (rmse >= mae - 1e-12).all()
        assert 0.65 <= m["coverage"] <= 0.95, (target, m["coverage"])
    for target in ("CellVoltage", "CellTemperature"):
        summary = report["metrics"][target]["summary"]
        assert summary["model"]["mae_mean"] < 0.8 * summary["naive_last"]["mae_mean"]
        assert summary["model"]["mae_mean"] < summary["naive_seasonal"]["mae_mean"]
    assert report["training_data"]["rows"] == len(trained[2]) and report["training_data"]["cells"] == 12
    assert len(report["training_data"]["sha256"]) == 64


def test_registry_round_trip_gives_identical_forecasts(trained, workspace: Path) -> None:
    forecaster, report, history, _ = trained
    version, folder = save_forecaster(forecaster, report)
    assert version == "v0001"
    boosters = [f"{t}.{s}.ubj" for t, m in forecaster.models.items() for s in m.boosters]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        boosters + ["intervals.json", "backtest.json", "metadata.json"]
    )
    for m in forecaster.models.values():  # only the boosters the strategy uses are saved
        assert set(m.boosters) == {
            s for s, used in (("recursive", m.recursive_steps > 0), ("direct", m.recursive_steps < HIDDEN)) if used
        }
    loaded = load_forecaster("latest")
    assert loaded.version == "v0001" and loaded.targets == forecaster.targets
    meta = loaded.metadata
    assert meta["metrics"]["CellVoltage"]["strategy"] == forecaster.models["CellVoltage"].strategy
    assert meta["training_data"]["sha256"] == report["training_data"]["sha256"]
    assert meta["features"]["CellVoltage"][0] == "lag1"
    a = forecaster.forecast(history, "2-1", 10)
    started = time.perf_counter()
    b = loaded.forecast(history, "2-1", 10)
    assert time.perf_counter() - started < 1.0
    pd.testing.assert_frame_equal(a, b)
    # a bare cell number works when only one device has it; here both devices do
    with pytest.raises(InputError, match="exists on 4 devices"):
        loaded.forecast(history, 1, 5)


def test_tampered_model_file_is_refused(trained, workspace: Path) -> None:
    forecaster, report, _, _ = trained
    _, folder = save_forecaster(forecaster, report)
    next(folder.glob("CellVoltage.*.ubj")).write_bytes(b"not a model")
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_forecaster("latest", ModelRegistry())


def test_bad_forecast_requests_are_clear_errors(trained) -> None:
    forecaster, _, history, _ = trained
    with pytest.raises(InputError, match="steps must be at least 1"):
        forecaster.forecast(history, "1-1", 0)
    with pytest.raises(InputError, match=f"steps=26 is above the maximum of {HIDDEN}"):
        forecaster.forecast(history, "1-1", 26)
    with pytest.raises(InputError, match="unknown cell '9-1': valid ids are 1-1, 1-2, 1-3, 2-1"):
        forecaster.forecast(history, "9-1", 5)
    short = history.loc[history["CellID"] == "1-1"].tail(WINDOW - 3)
    with pytest.raises(InputError, match=f"has only {WINDOW - 3} readings: the forecaster needs at least {WINDOW}"):
        forecaster.forecast(short, "1-1", 5)
    with pytest.raises(InputError, match="coverage must be between"):
        forecaster.forecast(history, "1-1", 5, coverage=1.0)


def test_training_on_too_short_history_says_how_much_is_needed() -> None:
    frame = synthetic_readings(devices=1, cells=3, days=0.5)  # 48 readings per cell
    need = min_training_readings(TrainConfig(max_steps=25))
    with pytest.raises(InputError, match=f"each cell needs at least {need} readings .*the longest cell has 48"):
        fit_forecaster(frame, TrainConfig(max_steps=25))
    with pytest.raises(InputError, match="max_steps must be between 1 and 96"):
        fit_forecaster(frame, TrainConfig(max_steps=0))


def test_a_parameter_without_recent_readings_is_skipped_not_fatal(workspace: Path) -> None:
    frame = synthetic_readings(devices=1, cells=3, days=6, seed=2)
    late = frame["Timestamp"] > frame["Timestamp"].min() + pd.Timedelta(days=3)
    frame.loc[late, "CellSpecificGravity"] = np.nan  # the SG sensors stopped half way
    forecaster, report = fit_forecaster(frame, TrainConfig(max_steps=12, max_train_pairs=5000))
    assert list(report["skipped_targets"]) == ["CellSpecificGravity"]
    assert (
        "no real CellSpecificGravity readings in the calibration window"
        in report["skipped_targets"]["CellSpecificGravity"]
    )
    save_forecaster(forecaster, report)
    table = load_forecaster("latest").forecast(frame, "D1-2", 12)
    assert sorted(set(table["Target"])) == [
        "AmbientTemperature",
        "CellTemperature",
        "CellVoltage",
        "InstantaneousCurrent",
    ]
    assert len(table) == 4 * 12
