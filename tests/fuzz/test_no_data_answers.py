"""No confident answer from no data: cells whose inputs are missing are "unknown", training refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_schema import InputError, ModelRegistry
from bms_schema.coverage import input_coverage, mark_unknown, require_inputs
from failure_fleet import synthetic_fleet

CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]


def test_coverage_counts_values_per_cell() -> None:
    frame = pd.DataFrame(
        {
            "CellID": ["A-1"] * 3 + ["A-2"] * 2,
            "CellVoltage": [2.2, np.nan, 2.21, np.nan, np.inf],
            "CellTemperature": [25.0, 25.1, None, 24.0, 24.2],
        }
    )
    coverage = input_coverage(frame, ("CellVoltage", "CellTemperature", "CellSpecificGravity"))
    assert coverage.counts.loc["A-1"].tolist() == [2, 2, 0] and coverage.counts.loc["A-2"].tolist() == [0, 2, 0]
    assert coverage.missing_by_cell(["CellVoltage"]) == {"A-2": ["CellVoltage"]}
    assert coverage.empty_columns() == ["CellSpecificGravity"]
    table = pd.DataFrame({"CellID": ["A-1", "A-2"], "P": [0.1, 0.9], "Band": ["low", "high"], "Why": ["x", "y"]})
    out, marked = mark_unknown(table, coverage, ["CellVoltage"], probability="P", band="Band", reasons="Why")
    assert marked == {"A-2": ["CellVoltage"]}
    assert out["Band"].tolist() == ["low", "unknown"] and np.isnan(out["P"].iloc[1])
    assert out["Why"].iloc[1] == "unknown: no CellVoltage reading for this cell"
    with pytest.raises(
        InputError,
        match=r"cannot train X: column\(s\) CellSpecificGravity have no value in any of "
        r"the 5 readings \(2 cells",
    ):
        require_inputs(frame.assign(CellSpecificGravity=np.nan), ["CellSpecificGravity"], "train X")
    with pytest.raises(InputError, match=r"column\(s\) StringVoltage are not in the table"):
        require_inputs(frame, ["StringVoltage"], "train X", measurements=())


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return synthetic_fleet(devices=2, cells_per_device=12, days=40, seed=0)


def test_cells_without_inputs_are_unknown_not_high_or_low(workspace, fleet: pd.DataFrame) -> None:
    """One registered model, two inputs: one device without voltage; then no measurement at all."""
    from bms_failure.api import predict_failure, train_and_register

    train_and_register(fleet, 7.0, seed=0)
    frame = fleet.drop(columns="IsDead")
    blank = frame["DeviceID"].eq("D1")
    frame.loc[blank, "CellVoltage"] = np.nan
    outcome = predict_failure(frame, 7.0)
    table = outcome.table.set_index("CellID")
    d1 = table.index.str.startswith("D1-")
    assert d1.sum() == 12
    assert (table.loc[d1, "RiskBand"] == "unknown").all() and table.loc[d1, "FailureProbability"].isna().all()
    assert table.loc[d1, "TopReasons"].eq("unknown: no CellVoltage reading for this cell").all()
    assert not table.loc[d1, "AlreadyDead"].any()
    assert (table.loc[~d1, "RiskBand"] != "unknown").all() and table.loc[~d1, "FailureProbability"].notna().all()
    assert any("12 cell(s) unknown: no CellVoltage" in note for note in outcome.notes)

    for name in CORE:  # all five measurements empty: every cell unknown, none "low"
        if name in frame.columns:
            frame[name] = np.nan
    outcome = predict_failure(frame, 7.0)
    assert (outcome.table["RiskBand"] == "unknown").all()
    assert outcome.table["FailureProbability"].isna().all()


def test_training_without_voltage_refuses_and_registers_nothing(workspace, fleet: pd.DataFrame) -> None:
    from bms_failure.api import train_and_register

    frame = fleet.copy()
    frame["CellVoltage"] = np.nan
    with pytest.raises(InputError, match=r"cannot train the failure model: column\(s\) CellVoltage have no value"):
        train_and_register(frame, 7.0, seed=0)
    assert ModelRegistry().names() == []
