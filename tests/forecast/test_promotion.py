"""Forecaster under the model protocol: gated promotion on the same held-out data, no specific gravity.

The champion trains on days 0-8 of two strings; a deliberately worse candidate trains on the
next 2 days only (tiny data, a small training budget). Both are scored on the last 15 % of the
candidate's data, which neither trained on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from bms_forecast.config import TrainConfig
from bms_forecast.model import Forecaster
from bms_forecast.persistence import load_forecaster
from bms_forecast.service import forecast_cell, train_and_register
from bms_forecast.training import ForecastHoldout
from bms_schema import ModelError, ModelRegistry
from forecast.synthetic import synthetic_readings

STEPS = 12
GOOD = TrainConfig(max_steps=STEPS, max_train_pairs=8000, max_backtest_origins=300)
TINY = TrainConfig(max_steps=STEPS, max_train_pairs=1000, max_backtest_origins=300, n_estimators=5)


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    from bms_schema.clean import clean_readings

    frame, _ = clean_readings(synthetic_readings(devices=2, cells=3, days=10, seed=11))
    cut = frame["Timestamp"].min() + pd.Timedelta(days=8)
    return frame.loc[frame["Timestamp"] < cut], frame.loc[frame["Timestamp"] >= cut]


def test_predict_never_trains_and_names_the_training_tool(workspace: Path, fleet) -> None:
    with pytest.raises(ModelError, match="train one first with the train_forecaster tool"):
        forecast_cell(fleet[0], "D1-1", 5)
    assert not (workspace / "models" / "forecaster").exists()


def test_worse_candidate_stays_challenger_promote_moves_it(workspace: Path, fleet) -> None:
    old, new = fleet
    registry = ModelRegistry()
    champion, _, v1, _ = train_and_register(old, GOOD)
    assert (v1, champion.metadata["decision"]["alias"]) == ("v0001", "champion")
    # the fitted model is the returned one; predicting twice gives the same answer and does not change it
    a = champion.predict(old, "D1-2", 6)
    pd.testing.assert_frame_equal(a, champion.predict(old, "D1-2", 6))

    tiny, _, v2, _ = train_and_register(new.loc[new["DeviceID"] == "D1"], TINY)
    decision = tiny.metadata["decision"]
    assert (v2, decision["alias"]) == ("v0002", "challenger")
    record = registry.decisions("forecaster")[-1]
    ev = record["evaluation"]
    assert ev["metric"] == "mase_mean" and ev["champion_version"] == "v0001"
    assert ev["candidate"] > ev["champion"], ev  # lower MASE is better: the tiny model is worse on the same rows
    assert f"does not beat champion v0001 mase_mean {ev['champion']:.4g}" in record["reason"]
    # the champion scored itself on exactly the candidate's held-out window: same evaluation, reproducible
    holdout = ForecastHoldout(frame=new.loc[new["DeviceID"] == "D1"], holdout_fraction=0.15, steps=STEPS)
    assert Forecaster.load("v0001").evaluate(holdout)["mase_mean"] == pytest.approx(ev["champion"])
    assert ev["dataset"] == holdout.fingerprint()
    assert registry.resolve("forecaster") == "v0001"
    assert forecast_cell(old, "D1-2", 6).forecaster.version == "v0001"  # predict serves the champion

    _, _, v3, _ = train_and_register(new.loc[new["DeviceID"] == "D1"], TINY, promote=True)
    assert registry.aliases("forecaster") == {"champion": "v0003", "challenger": "v0002"}
    assert registry.decisions("forecaster")[-1]["forced"] is True
    assert forecast_cell(old, "D1-2", 6).forecaster.version == "v0003"
    assert load_forecaster("challenger").version == "v0002"


def test_vrla_without_specific_gravity_trains_forecasts_and_compares(workspace: Path, fleet) -> None:
    old, new = fleet
    flooded, _, _, _ = train_and_register(old, GOOD)  # champion with SG
    vrla = new.assign(CellSpecificGravity=float("nan"))  # VRLA: no SG reading at all
    model, report, version, _ = train_and_register(vrla, GOOD)
    assert "CellSpecificGravity" not in model.targets and "CellSpecificGravity" not in report["metrics"]
    ev = ModelRegistry().decisions("forecaster")[-1]["evaluation"]
    # compared on what the VRLA data measures: both have a figure, neither is scored on SG
    assert "CellSpecificGravity" not in ev["champion_metrics"]["targets"]
    assert ev["candidate"] is not None and ev["champion"] is not None
    table = model.predict(vrla, "D2-1", STEPS)
    assert sorted(set(table["Target"])) == [
        "AmbientTemperature",
        "CellTemperature",
        "CellVoltage",
        "InstantaneousCurrent",
    ]
    assert flooded.version == "v0001" and version == "v0002"
