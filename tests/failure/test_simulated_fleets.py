"""The failure model on the project simulator's ageing physics (``bms_datagen``), small and fast.

Seeds 9411-9414 are used by no benchmark (``bench/bench_failure.py`` holds out 7301-7312) and by no
other test. 4 strings x 24 cells, 150 days hourly, failure rate 8 % a month, history cut at 70 % of
the span; every living cell is scored as of the cut against what happened next:

- with labels (trained on the history before the cut) and without them (``IsDead`` removed, the
  model trained on another simulated fleet), ranking at 14 and 30 days vs the best IEEE rule;
- the per-cell table and its columns, any horizon up to the longest time to death seen in training
  (one survival curve), remaining life censored beyond it as "> N d";
- a VRLA fleet (no SG column): dry-out and thermal-runaway precursors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from bms_failure.features import build_feature_grid
from bms_failure.model import FailureModel
from bms_failure.training import train_failure_model
from bms_failure.trends import rule_scores
from bms_schema import InputError
from sklearn.metrics import roc_auc_score

SIZE: dict[str, Any] = dict(devices=4, cells_per_device=24, days=150, interval_minutes=60, failure_rate=0.08)
TABLE_COLUMNS = (
    "DeviceID",
    "CellNumber",
    "FailureProbability",
    "StateOfHealth",
    "RemainingLifeDays",
    "RemainingLifeP10",
    "RemainingLifeP90",
)


def _fleet(seed: int, **kwargs: Any) -> tuple[pd.DataFrame, Any]:
    from bms_datagen.simulator import simulate_fleet_with_truth
    from bms_schema.clean import clean_readings

    sim = simulate_fleet_with_truth(seed=seed, **SIZE, **kwargs)
    frame, _ = clean_readings(sim.readings)
    return frame, sim


def _cut(frame: pd.DataFrame) -> pd.Timestamp:
    start, end = frame["Timestamp"].min(), frame["Timestamp"].max()
    return start + 0.7 * (end - start)


SUDDEN = ("internal_short",)


def _score(
    model: FailureModel, history: pd.DataFrame, frame: pd.DataFrame, cut: pd.Timestamp, sim: Any
) -> dict[str, Any]:
    """ROC-AUC of the model and of the best IEEE rule at 14 / 30 days for the cells alive at the cut;
    ``wearout``: the model's ROC-AUC with the sudden failures (internal shorts, days of warning) left out."""
    table = model.predict(history, horizon_days=14)
    last = build_feature_grid(history, model.config).last_rows().set_index("CellID").loc[table["CellID"]]
    death = frame.loc[frame["IsDead"] == 1].groupby("CellID")["Timestamp"].min().reindex(table["CellID"])
    alive = (death.isna() | (death > cut)).to_numpy() & ~table["AlreadyDead"].to_numpy()
    days = ((death - cut).dt.total_seconds() / 86400.0).to_numpy()
    rules = rule_scores(last.reset_index())
    mode = sim.cells.set_index("CellID")["FailureMode"].reindex(table["CellID"]).to_numpy()
    gradual = ~np.isin(mode, SUDDEN)[alive]
    out: dict[str, Any] = {"table": table}
    for h in (14, 30):
        y = np.nan_to_num(days <= h).astype(bool)[alive]
        p = table[f"FailureProbability{h}d"].to_numpy()[alive]
        out[f"{h}d"] = {
            "dying": int(y.sum()),
            "model": roc_auc_score(y, p),
            "wearout": roc_auc_score(y[gradual], p[gradual]),
            "best_rule": max(roc_auc_score(y, v[alive]) for v in rules.values()),
        }
    return out


@pytest.fixture(scope="module")
def flooded() -> dict[str, Any]:
    frame, sim = _fleet(9411)
    cut = _cut(frame)
    history = frame.loc[frame["Timestamp"] <= cut].reset_index(drop=True)
    return {"frame": frame, "sim": sim, "cut": cut, "history": history}


@pytest.fixture(scope="module")
def own_model(flooded: dict[str, Any]) -> FailureModel:
    return train_failure_model(flooded["history"], 7.0, seed=0, validate=False).model


@pytest.fixture(scope="module")
def fleet_model() -> FailureModel:
    """The registered-model case: trained on another simulated fleet (the whole of it)."""
    frame, _ = _fleet(9412)
    return train_failure_model(frame, 7.0, seed=0, validate=False).model


def test_with_labels_ranks_the_dying_cells_above_the_rules(flooded: dict[str, Any], own_model: FailureModel) -> None:
    got = _score(own_model, flooded["history"], flooded["frame"], flooded["cut"], flooded["sim"])
    assert got["14d"]["dying"] == 5 and got["30d"]["dying"] == 9
    # measured: 14 d 0.94 (best rule 0.56), 30 d 0.99 (best rule 0.67)
    assert got["14d"]["model"] >= 0.90 and got["14d"]["model"] >= got["14d"]["best_rule"] + 0.05
    assert got["30d"]["model"] >= 0.85 and got["30d"]["model"] >= got["30d"]["best_rule"] + 0.05


def test_without_labels_a_model_trained_on_another_fleet(flooded: dict[str, Any], fleet_model: FailureModel) -> None:
    unlabelled = flooded["history"].drop(columns="IsDead")
    got = _score(fleet_model, unlabelled, flooded["frame"], flooded["cut"], flooded["sim"])
    # Two of the five cells dying within 14 days are internal shorts (no warning weeks ahead): they look
    # healthier than the many cells that are months into a wear-out precursor (dying after 14 days), so
    # they rank below most of the negatives and cap the ROC-AUC near 3/5. Measured ROC-AUC 0.62 at 14 d
    # (best rule 0.56), 0.81 at 30 d; without the shorts 0.97 / 1.00.
    assert got["14d"]["model"] >= 0.58 and got["14d"]["model"] >= got["14d"]["best_rule"] + 0.05
    assert got["14d"]["wearout"] >= 0.95 and got["30d"]["wearout"] >= 0.95
    assert got["30d"]["model"] >= 0.77
    table = got["table"]
    # without labels, the physics estimate is reported beside the model, with the rule that fired
    fired = table["TrendDaysToThreshold"].notna()
    assert fired.any() and (table.loc[fired, "TrendRule"].str.len() > 0).all()
    assert table["DeadSource"].isin(["", "voltage below 1.5 V"]).all() or table["AlreadyDead"].any()


def test_per_cell_table_any_horizon_and_censored_life(flooded: dict[str, Any], fleet_model: FailureModel) -> None:
    history = flooded["history"].drop(columns="IsDead")
    table = fleet_model.predict(history, horizon_days=14)
    assert set(TABLE_COLUMNS) <= set(table.columns)
    living = table.loc[~table["AlreadyDead"]]
    assert np.allclose(living["FailureProbability"], living["FailureProbability14d"])
    assert living["StateOfHealth"].between(50, 100).all()
    # any horizon up to the longest time to death seen in training, from the same curve
    limit = fleet_model.max_horizon_days
    assert limit is not None and 30 <= limit <= 150
    p21 = fleet_model.predict(history, horizon_days=21).set_index("CellID")["FailureProbability"]
    p21 = p21.reindex(living["CellID"]).to_numpy()
    assert (living["FailureProbability14d"].to_numpy() <= p21 + 1e-12).all()
    assert (p21 <= living["FailureProbability30d"].to_numpy() + 1e-12).all()
    with pytest.raises(InputError, match="answers horizons up to"):
        fleet_model.predict(history, horizon_days=limit + 10)
    # remaining life beyond what training saw is censored, not an absurd number of days
    beyond = living["RemainingLifeDays"] > limit
    assert beyond.any() and living.loc[beyond, "RemainingLifeText"].str.startswith("> ").all()
    within = living.loc[~beyond, "RemainingLifeText"]
    assert within.str.contains("p10").all()


def test_vrla_fleet_without_specific_gravity() -> None:
    frame, sim = _fleet(9413, chemistry="vrla")
    other, _ = _fleet(9414, chemistry="vrla")
    assert "CellSpecificGravity" not in sim.readings.columns
    assert set(sim.cells["FailureMode"]) & {"dry_out", "thermal_runaway"}
    model = train_failure_model(other, 7.0, seed=0, validate=False).model
    cut = _cut(frame)
    history = frame.loc[frame["Timestamp"] <= cut].drop(columns="IsDead").reset_index(drop=True)
    got = _score(model, history, frame, cut, sim)
    # measured: 14 d 0.99 (best rule 0.92), 30 d 0.97 (0.87); 4 of the 8 cells dying within 14 days are
    # thermal runaways, seen coming by their weeks of float-current and temperature rise
    assert got["14d"]["model"] >= 0.90 and got["30d"]["model"] >= 0.90
    assert got["table"]["StateOfHealth"].notna().sum() >= 80
