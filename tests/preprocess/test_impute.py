"""Imputation: interpolation per cell, MICE (deterministic, honest quality), labels never imputed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_preprocess.mice import MiceImputer, neighbour_estimate
from bms_preprocess.pipeline import prepare_readings
from bms_schema.interpolate import interpolate_readings

CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]


def test_interpolation_fills_every_gap_per_cell(cleaned_sample):
    out = interpolate_readings(cleaned_sample)
    assert out[CORE].isna().sum().sum() == 0
    assert int(out["CellVoltage_Imputed"].sum()) == 146 and int(out["AmbientTemperature_Imputed"].sum()) == 0
    assert (out["CellVoltage_Imputed"] == cleaned_sample["CellVoltage"].isna()).all()

    def reference(group: pd.DataFrame) -> pd.Series:
        s = group.set_index("Timestamp")["CellVoltage"].interpolate(method="time").ffill().bfill()
        return pd.Series(s.to_numpy(), index=group.index)

    expected = cleaned_sample.groupby("CellID", group_keys=False)[["Timestamp", "CellVoltage"]].apply(reference)
    np.testing.assert_allclose(out["CellVoltage"], expected.sort_index(), atol=1e-12)
    # known values are untouched
    known = cleaned_sample["CellVoltage"].notna()
    assert (out.loc[known, "CellVoltage"] == cleaned_sample.loc[known, "CellVoltage"]).all()


def test_neighbour_estimate_is_leave_one_out():
    values = np.array([1.0, 2.0, np.nan, 4.0, 10.0, 20.0])
    seconds = np.array([0.0, 1.0, 2.0, 3.0, 0.0, 1.0])
    starts = np.array([0, 0, 0, 0, 4, 4])
    est = neighbour_estimate(values, seconds, starts)
    # row 1 from rows 0 and 3 (itself excluded), row 2 from rows 1 and 3, edges from the nearest, never cell 2
    np.testing.assert_allclose(est, [2.0, 2.0, 3.0, 2.0, 20.0, 10.0])


def test_mice_is_deterministic_complete_and_reports_quality(cleaned_sample):
    labelled = cleaned_sample.assign(IsDead=np.where(np.arange(750) % 7 == 0, np.nan, 0.0))
    imputer = MiceImputer(random_state=0)
    out = imputer.fit(labelled).transform(labelled)
    again = MiceImputer(random_state=0).fit(labelled).transform(labelled)
    assert out[CORE].isna().sum().sum() == 0
    np.testing.assert_array_equal(out[CORE].to_numpy(), again[CORE].to_numpy())
    assert int(out["CellTemperature_Imputed"].sum()) == 146
    # labels are never modelled or imputed
    assert out["IsDead"].isna().sum() == labelled["IsDead"].isna().sum() and "IsDead_Imputed" not in out
    known = cleaned_sample["CellVoltage"].notna()
    assert (out.loc[known, "CellVoltage"] == cleaned_sample.loc[known, "CellVoltage"]).all()
    imputed = out.loc[out["CellVoltage_Imputed"], "CellVoltage"]
    assert imputed.between(1.9, 2.5).all()  # plausible cell voltages, not sentinels
    q = imputer.quality_
    assert set(q) == {"CellVoltage", "CellTemperature", "CellSpecificGravity"}
    for entry in q.values():
        assert entry["masked_values"] == 60  # 10 % of the 604 known values of the 750-row sample
        assert entry["mice"]["n"] == 60 and entry["interpolation"]["n"] == 60
        assert entry["mice"]["mae"] > 0 and entry["interpolation"]["mae"] > 0
    # on this sample MICE (with the string and neighbour predictors) beats plain interpolation
    assert q["CellTemperature"]["mice"]["mae"] < q["CellTemperature"]["interpolation"]["mae"]


def test_mice_transform_is_independent_of_the_rows_passed(cleaned_sample):
    imputer = MiceImputer(random_state=0).fit(cleaned_sample)
    whole = imputer.transform(cleaned_sample)
    first_cells = cleaned_sample[cleaned_sample["DeviceID"] == "1"]
    part = imputer.transform(first_cells)
    np.testing.assert_array_equal(part[CORE].to_numpy(), whole.loc[first_cells.index, CORE].to_numpy())


def test_other_seed_changes_the_masking_not_the_completeness(cleaned_sample):
    a = MiceImputer(random_state=0).fit(cleaned_sample)
    b = MiceImputer(random_state=1).fit(cleaned_sample)
    assert a.quality_["CellVoltage"]["mice"]["mae"] != b.quality_["CellVoltage"]["mice"]["mae"]
    assert b.transform(cleaned_sample)[CORE].isna().sum().sum() == 0


def test_sample_is_bounded(cleaned_sample):
    imputer = MiceImputer(sample_rows=200, random_state=0).fit(cleaned_sample)
    assert imputer.sample_size_ == 200


@pytest.mark.parametrize("method", ["interpolate", "mice"])
def test_prepare_readings_leaves_no_gap_in_the_core_columns(sample_csv, method):
    out, report = prepare_readings(sample_csv, impute=method, return_report=True)
    assert len(out) == 750 and report["sentinel_rows"] == 146
    assert out[CORE].isna().sum().sum() == 0
    assert sum(int(out[f"{c}_Imputed"].sum()) for c in CORE) == 3 * 146


def test_prepare_readings_none_keeps_gaps(raw_sample):
    out = prepare_readings(raw_sample, impute="none")
    assert out["CellVoltage"].isna().sum() == 146 and "CellVoltage_Imputed" not in out
