"""Labels from IsDead and the leakage-free split (a random row split must be caught)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_failure.config import FeatureConfig
from bms_failure.evaluation import check_no_leakage, split_samples
from bms_failure.features import build_feature_grid
from bms_failure.labels import death_times, label_grid, sample_rows
from bms_failure.trends import recommended_action, rule_scores, trend_to_threshold
from bms_schema import InputError
from failure.fleet import canonical_fleet


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return canonical_fleet(devices=4, cells_per_device=10, days=60, failing_fraction=0.4, seed=2)


@pytest.fixture(scope="module")
def samples(fleet: pd.DataFrame) -> pd.DataFrame:
    grid = build_feature_grid(fleet)
    return sample_rows(label_grid(grid, death_times(fleet), 7 * 24.0), grid)


def test_death_times_and_labels_follow_isdead(fleet: pd.DataFrame) -> None:
    deaths = death_times(fleet)
    truth = fleet.loc[fleet["IsDead"] == 1].groupby("CellID")["Timestamp"].min()
    assert deaths.notna().sum() == len(truth) > 0
    pd.testing.assert_series_equal(
        deaths.dropna(), truth.rename("DeathTime"), check_names=False, check_index_type=False
    )

    grid = build_feature_grid(fleet)
    labelled = label_grid(grid, deaths, 7 * 24.0)
    cell = truth.index[0]
    death = truth.iloc[0]
    rows = labelled.loc[labelled["CellID"] == cell]
    t = rows["Timestamp"]
    expected = (t <= death) & (death < t + pd.Timedelta(days=7))
    assert (rows["Label"].astype(bool) == expected).all()
    assert not rows.loc[t > death, "Alive"].any()
    # Censoring: a cell that never dies has no known label in the last 7 days of the data.
    never = labelled.loc[labelled["DeathTime"].isna()]
    end = fleet["Timestamp"].max()
    assert not never.loc[never["Timestamp"] + pd.Timedelta(days=7) > end, "Known"].any()
    assert never.loc[never["Timestamp"] + pd.Timedelta(days=7) <= end, "Known"].all()


def test_samples_are_alive_known_aligned_with_history(samples: pd.DataFrame) -> None:
    config = FeatureConfig()
    assert samples["Alive"].all() and samples["Known"].all()
    assert (samples["HistoryHours"] >= config.min_history_hours).all()
    assert (samples["Timestamp"].dt.hour % 6 == 0).all()
    assert 0 < samples["Label"].mean() < 0.2


def test_split_is_grouped_by_cell_and_in_time(samples: pd.DataFrame) -> None:
    split = split_samples(samples, 7 * 24.0, seed=0)
    check_no_leakage(split.train, split.test, 7 * 24.0)
    check_no_leakage(split.calib, split.test, 7 * 24.0)
    assert not set(split.train["CellID"]) & set(split.calib["CellID"])
    assert split.train["Label"].sum() > 0 and split.test["Label"].sum() > 0
    assert (split.train["Timestamp"] + pd.Timedelta(days=7) <= split.split_time).all()
    assert (split.test["Timestamp"] >= split.split_time).all()
    # Every cell is in exactly one fold.
    folds = split.cells
    assert sum(len(v) for v in folds.values()) == samples["CellID"].nunique()


def test_leakage_check_catches_a_random_row_split(samples: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    mask = rng.random(len(samples)) < 0.75
    with pytest.raises(AssertionError, match="cells are in both train and test"):
        check_no_leakage(samples.loc[mask], samples.loc[~mask], 7 * 24.0)
    # A split by cell only (no time cut) is caught too: its training labels reach into the test period.
    cells = samples["CellID"].unique()
    train_cells = set(cells[: len(cells) // 2])
    by_cell = samples["CellID"].isin(train_cells)
    with pytest.raises(AssertionError, match="training labels reach"):
        check_no_leakage(samples.loc[by_cell], samples.loc[~by_cell], 7 * 24.0)


def test_ieee_rules_fire_at_their_thresholds() -> None:
    table = pd.DataFrame(
        {
            "rule_float_voltage": [2.20, 2.12, 2.20, np.nan, 2.14],
            "rule_sg_below_string_mean": [0.0, 0.0, 0.030, 0.026, 0.024],
            "rule_ohmic_rise": [0.1, np.nan, 0.55, 0.2, 0.49],
        }
    )
    fires = {k: (v > 0).tolist() for k, v in rule_scores(table).items()}
    assert fires == {
        "ieee450_float_voltage": [False, True, False, False, False],
        "ieee450_sg": [False, False, True, True, False],
        "ieee1188_ohmic": [False, False, True, False, False],
    }


def test_trend_to_threshold_extrapolates_each_cells_own_trend() -> None:
    table = pd.DataFrame(
        {
            # ohmic 30 % over baseline rising 1 %/day -> 50 % in 20 days (IEEE 1188)
            "ohmic_rise": [0.30, 0.05, np.nan, 0.60, 0.30],
            "ohmic_rise_slope": [0.01, 0.01, np.nan, 0.0, -0.01],
            "voltage_float_mean_short": [2.23, 2.23, 2.16, 2.23, 2.23],
            "voltage_float_slope_trend": [0.0, 0.0, -0.003, 0.0, 0.0],  # 2.16 V falling 3 mV/day -> 2.13 V in 10 d
            "voltage_dev_vs_initial_long": [0.0] * 5,
            "voltage_dev_slope_trend": [0.0] * 5,
            "sg_dev_vs_initial_long": [np.nan] * 5,
            "sg_dev_slope_trend": [np.nan] * 5,  # VRLA: no SG
            "temp_dev_vs_initial_long": [0.0] * 5,
            "temp_dev_slope_trend": [0.0] * 5,
        }
    )
    out = trend_to_threshold(table)
    days = out["TrendDaysToThreshold"].to_numpy()
    assert days[0] == pytest.approx(20.0) and "IEEE 1188" in out["TrendRule"].iloc[0]
    assert np.isnan(days[1]), "5 % over baseline is noise: not extrapolated"
    assert days[2] == pytest.approx(10.0) and "2.13 V" in out["TrendRule"].iloc[2]
    assert days[3] == 0.0, "already beyond the threshold"
    assert np.isnan(days[4]) and out["TrendRule"].iloc[4] == "", "a falling trend heads away from the threshold"
    actions = recommended_action(
        np.array(["trend towards float voltage below 2.13 V (IEEE 450)", "ohmic"]),
        np.array([0.1, 0.1]),
        np.array([0.1, 0.6]),
    )
    assert actions[0].startswith("equalize") and actions[1].startswith("replace")


def test_death_times_needs_isdead(fleet: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="training needs the label column 'IsDead'"):
        death_times(fleet.drop(columns="IsDead"))
