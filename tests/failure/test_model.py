"""The survival model on small fleets whose cells age for weeks before they die, cut at 70 % of the span:
ranking against what happened next at 14 and 30 days (vs the IEEE rules), remaining life, alarms,
prediction without labels by a model trained on another fleet, the per-cell table, registry, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_failure.api import predict_failure, train_and_register
from bms_failure.config import FEATURES, MODEL_NAME
from bms_failure.model import PREDICTION_COLUMNS, load_failure_model
from bms_failure.training import train_failure_model
from bms_schema import InputError, ModelError, ModelRegistry, load_readings
from failure.fleet import canonical_fleet
from sklearn.metrics import roc_auc_score

FLEET = dict(devices=6, cells_per_device=12, days=120, failing_fraction=0.5, ramp_days=(20, 45))


def _deaths(frame: pd.DataFrame) -> pd.Series:
    return frame.loc[frame["IsDead"] == 1].groupby("CellID")["Timestamp"].min()


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return canonical_fleet(seed=11, **FLEET)


@pytest.fixture(scope="module")
def cut(fleet: pd.DataFrame) -> pd.Timestamp:
    start, end = fleet["Timestamp"].min(), fleet["Timestamp"].max()
    return start + 0.7 * (end - start)


@pytest.fixture(scope="module")
def history(fleet: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    return fleet.loc[fleet["Timestamp"] <= cut].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(history: pd.DataFrame):
    return train_failure_model(history, 7.0, seed=0)


@pytest.fixture(scope="module")
def other_model():
    """A model trained on a different fleet (another seed): for data without labels."""
    return train_failure_model(canonical_fleet(seed=12, **FLEET), 7.0, seed=0, validate=False).model


def _truth_at_cut(table: pd.DataFrame, fleet: pd.DataFrame, cut: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    death = _deaths(fleet).reindex(table["CellID"])
    alive = (death.isna() | (death > cut)).to_numpy()
    days = ((death - cut).dt.total_seconds() / 86400.0).to_numpy()
    return alive, days


def test_ranks_cells_dying_within_14_and_30_days_above_the_rules(fleet, cut, history, trained) -> None:
    """As of the cut, the model trained on the history before it ranks the cells that die within 14/30 days
    (what happened next) above the others, and at least as well as the best IEEE rule."""
    table = trained.model.predict(history)
    last = trained.grid.last_rows().set_index("CellID").loc[table["CellID"]]
    alive, days = _truth_at_cut(table, fleet, cut)
    from bms_failure.trends import rule_scores

    rules = rule_scores(last.reset_index())
    for h, goal in ((14, 0.85), (30, 0.85)):
        y = (days <= h)[alive]
        assert y.sum() >= 3, "the scenario must contain cells dying within the horizon after the cut"
        p = table[f"FailureProbability{h}d"].to_numpy()[alive]
        auc = roc_auc_score(y, p)
        best_rule = max(roc_auc_score(y, r[alive]) for r in rules.values())
        assert auc >= goal and auc >= best_rule - 0.02, (h, auc, best_rule)
        if h == 14:  # recall of the dying cells in the top 2k of the ranking
            k = int(y.sum())
            assert y[np.argsort(-p)[: 2 * k]].sum() / k >= 0.75
    # Out-of-fold validation (cells x time split) agrees, at every horizon, and reports every rule.
    for key in ("7d", "14d", "30d"):
        entry = trained.metrics["horizons"][key]
        if key != "30d":  # 30 days after a split of an 84-day history: every known label is a death
            assert entry["model_roc_auc"] >= 0.85
        assert set(entry["rules_roc_auc"]) == {
            "ieee450_float_voltage",
            "ieee450_sg",
            "ieee1188_ohmic",
            "trend_to_threshold",
        }


def test_remaining_life_and_one_coherent_distribution(fleet, cut, history, trained) -> None:
    table = trained.model.predict(history)
    living = table.loc[~table["AlreadyDead"]]
    p = living[["FailureProbability7d", "FailureProbability14d", "FailureProbability30d"]].to_numpy()
    assert (np.diff(p, axis=1) >= 0).all(), "P(7 d) <= P(14 d) <= P(30 d): one distribution"
    assert (living["RemainingLifeP10"] < living["RemainingLifeDays"]).all()
    assert (living["RemainingLifeDays"] < living["RemainingLifeP90"]).all()
    near = living.loc[living["FailureProbability30d"] > 0.6]
    assert (near["RemainingLifeDays"] < 30).all(), "P(30 d) > 0.5 exactly when the median life is under 30 days"
    alive, days = _truth_at_cut(table, fleet, cut)
    dying = alive & (days <= 60)
    assert dying.sum() >= 4
    p50 = table["RemainingLifeDays"].to_numpy()[dying]
    truth = days[dying]
    # Cells early in their ageing look healthy, so the error is larger than the benchmark's goal on
    # the project simulator; the trend carries the ranking, the band has to hold the truth.
    # Measured 0.82 here with the discrete-time hazard model (0.66 with the former AFT model, whose error on
    # the project simulator's development fleets was 1.36 with labels against 0.79 now).
    assert np.median(np.abs(p50 - truth) / truth) <= 0.9
    inside = (table["RemainingLifeP10"].to_numpy()[dying] <= truth) & (
        truth <= table["RemainingLifeP90"].to_numpy()[dying]
    )
    assert inside.mean() >= 0.5
    life = trained.metrics["remaining_life"]
    assert life["samples"] > 0 and 0.0 <= life["p10_p90_coverage"] <= 1.0


def test_alarms_stay_within_the_operators_budget(fleet, cut, trained, history) -> None:
    """Over the month after the cut (as of every 6 days), at most 10 % of the cells that survive are ever
    alarmed; dying cells are alarmed days to weeks ahead, each alarm with its trigger and action."""
    death = _deaths(fleet)
    fate = fleet.attrs["death_hours"]  # simulator truth: also cells that die after the end of the data
    survivors = {cell for cell, hours in fate.items() if hours is None}
    alarmed: set[str] = set()
    first_alarm: dict[str, pd.Timestamp] = {}
    for days in range(0, 31, 6):
        at = cut + pd.Timedelta(days=days)
        table = trained.model.predict(fleet.loc[fleet["Timestamp"] <= at].drop(columns="IsDead"))
        hit = table.loc[table["Alarm"], "CellID"]
        alarmed |= set(hit)
        for cell in hit:
            first_alarm.setdefault(cell, at)
    assert len(alarmed & survivors) / len(survivors) <= 0.10
    dying = death.loc[(death > cut) & (death <= cut + pd.Timedelta(days=30))]
    caught = [c for c in dying.index if c in first_alarm and first_alarm[c] < dying[c]]
    assert len(caught) / len(dying) >= 0.6
    lead = np.median([(dying[c] - first_alarm[c]).total_seconds() / 86400 for c in caught])
    assert lead >= 7, "warned a week or more ahead"
    table = trained.model.predict(history)
    alarmed_rows = table.loc[table["Alarm"]]
    assert len(alarmed_rows) > 0 and (alarmed_rows["RiskBand"] == "high").all()
    assert (alarmed_rows["AlarmTrigger"] != "").all() and (alarmed_rows["AlarmLeadDays"] > 0).all()
    assert alarmed_rows["RecommendedAction"].str.match(r"^(replace|equalize|re-test)").all()
    assert trained.metrics["alarms"]["lead_time"]["caught_fraction"] >= 0.5


def test_predicts_without_labels_with_a_model_from_another_fleet(fleet, cut, history, other_model) -> None:
    unlabelled = history.drop(columns="IsDead")
    table = other_model.predict(unlabelled, horizon_days=14)
    alive, days = _truth_at_cut(table, fleet, cut)
    dead_by_cut = set(_deaths(fleet).loc[lambda d: d <= cut].index)
    assert set(table.loc[table["AlreadyDead"], "CellID"]) == dead_by_cut
    y = (days <= 14)[alive]
    assert roc_auc_score(y, table["FailureProbability"].to_numpy()[alive]) >= 0.8
    assert (table["HorizonDays"] == 14).all()
    # The physics estimate beside it: days until a trend crosses an IEEE threshold, and which rule.
    trend = table.loc[~table["AlreadyDead"] & table["TrendDaysToThreshold"].notna()]
    assert len(trend) > 0 and trend["TrendRule"].str.contains("IEEE").all()
    trend_y = (pd.Series(days, index=table.index).loc[trend.index] <= 60).mean()
    assert trend_y >= 0.5, "cells whose trend heads for a threshold are mostly dying ones"


def test_table_shape_unknown_inputs_and_vrla(history, trained) -> None:
    table = trained.model.predict(history)
    assert list(table.columns) == list(PREDICTION_COLUMNS)
    assert len(table) == history["CellID"].nunique() == 72
    assert table["Rank"].tolist() == list(range(1, 73))
    assert table["FailureProbability"].between(0, 1).all()
    assert table.loc[~table["AlreadyDead"], "StateOfHealth"].between(50, 100).all()
    top = table.loc[~table["AlreadyDead"]].iloc[0]
    assert " = " in top["TopReasons"] and "hazard odds x" in top["TopReasons"]
    assert not any(f in top["TopReasons"] for f in FEATURES), "reasons use readable names, not column names"
    # A cell whose voltage sensor went silent for the last day is 'unknown', never a confident answer.
    cell = table.loc[~table["AlreadyDead"], "CellID"].iloc[-1]
    silent = history.copy()
    last_day = silent["Timestamp"] > silent["Timestamp"].max() - pd.Timedelta(hours=30)
    silent.loc[last_day & (silent["CellID"] == cell), "CellVoltage"] = np.nan
    row = trained.model.predict(silent).set_index("CellID").loc[cell]
    assert (
        row["RiskBand"] == "unknown" and np.isnan(row["FailureProbability"]) and row["MissingInputs"] == "CellVoltage"
    )
    assert np.isnan(row["RemainingLifeDays"]) and "unknown: no CellVoltage" in row["TopReasons"]
    # Without SG (VRLA) every cell is still scored from voltage, temperature and ohmic trends.
    vrla = trained.model.predict(history.drop(columns=["IsDead"]).assign(CellSpecificGravity=np.nan))
    assert vrla.loc[~vrla["AlreadyDead"], "FailureProbability"].notna().all()


def test_register_champion_challenger_and_load(workspace, history, trained) -> None:
    registered = trained.model.register(trained.model.holdout)
    assert registered.version == "v0001" and registered.alias == "champion"
    loaded = load_failure_model()
    assert loaded.version == "v0001" and loaded.card.primary_metric == "roc_auc_14d"
    meta = ModelRegistry().load(MODEL_NAME).metadata
    assert set(meta["files"]) == {"model.ubj", "survival.json", "dead_state.ubj", "reference_features.parquet"}
    assert meta["card"]["metrics"]["roc_auc_14d"] == trained.model.holdout_metrics["roc_auc_14d"]
    unlabelled = history.drop(columns="IsDead")
    pd.testing.assert_frame_equal(trained.model.predict(unlabelled), loaded.predict(unlabelled))
    # Predicting never changes the model; any horizon is answered by the same model.
    assert load_failure_model(horizon_days=30).predict(unlabelled)["HorizonDays"].iloc[0] == 30
    # A worse candidate (a week of data from a few cells) stays challenger; the champion keeps serving.
    few = history.loc[history["CellID"].isin(history["CellID"].unique()[:24])]
    worse = train_and_register(
        few.loc[few["Timestamp"] <= few["Timestamp"].min() + pd.Timedelta(days=60)], 7.0, validate=False
    )
    assert worse.registered.version == "v0002"
    assert worse.registered.alias == "challenger", worse.registered.decision
    assert load_failure_model().version == "v0001"
    outcome = predict_failure(history, 14.0)
    assert outcome.model.version == "v0001" and outcome.input_evaluation is not None
    assert outcome.input_evaluation["14d"]["model_roc_auc"] > 0.8


def test_errors_a_user_can_act_on(workspace, history, sample_csv) -> None:
    with pytest.raises(ModelError, match="train_failure_model"):
        predict_failure(history.drop(columns="IsDead"), 7.0)  # predict never trains
    assert not ModelRegistry().versions(MODEL_NAME)
    with pytest.raises(InputError, match="no cell dies in the data"):
        train_failure_model(history.assign(IsDead=0))
    with pytest.raises(InputError, match="horizon_days must be a positive number of days, got 0"):
        train_failure_model(history, 0)
    with pytest.raises(InputError, match="'CellVoltage' has no valid reading"):
        train_failure_model(history.assign(CellVoltage=np.nan))
    with pytest.raises(InputError, match="training needs the label column 'IsDead'"):
        train_failure_model(history.drop(columns="IsDead"))
    sample, _ = load_readings(sample_csv)
    with pytest.raises(InputError, match="no cell dies|too little history"):
        train_failure_model(sample.assign(IsDead=0))
