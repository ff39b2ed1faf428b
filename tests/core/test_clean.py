"""Clean step: exact counts on the real sample, duplicates, sorting, flags, pass-through, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_schema import InputError
from bms_schema.clean import clean_readings

CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]


def test_sample_counts(raw_sample):
    cleaned, report = clean_readings(raw_sample)
    assert report["rows_in"] == 750 and report["rows_out"] == 750 == len(cleaned)
    assert report["cells"] == 15 and report["devices"] == 3
    assert report["duplicates_dropped"] == 0
    assert report["sentinel_rows"] == 146 == int(cleaned["SensorFault"].sum())
    assert report["sentinel_by_column"] == {
        "CellVoltage": 146,
        "CellTemperature": 146,
        "CellSpecificGravity": 146,
        "InstantaneousCurrent": 0,
        "AmbientTemperature": 0,
        "StringVoltage": 0,
    }
    assert report["out_of_range_rows"] == 0
    # sentinels are missing values, never numbers
    assert cleaned["CellVoltage"].isna().sum() == 146 and cleaned["CellVoltage"].max() < 3
    per_cell = report["per_cell"]
    assert len(per_cell) == 15 and sum(c["rows"] for c in per_cell.values()) == 750
    assert sum(c["sentinel_rows"] for c in per_cell.values()) == 146
    assert per_cell["1-1"]["sentinel_rows"] == 12 and per_cell["1-1"]["sentinel_rate"] == pytest.approx(12 / 50)
    assert per_cell["1-1"]["median_interval_s"] == 5.0 and report["time_gaps"] == 0


def test_sorted_by_cell_then_time(raw_sample):
    shuffled = raw_sample.sample(frac=1.0, random_state=3)
    cleaned, _ = clean_readings(shuffled)
    keys = cleaned[["DeviceID", "CellNumber", "Timestamp"]]
    assert keys.equals(keys.sort_values(["DeviceID", "CellNumber", "Timestamp"]).reset_index(drop=True))
    assert list(cleaned["CellID"].unique()[:3]) == ["1-1", "1-2", "1-3"]


def test_exact_duplicates_and_conflicts_dropped(raw_sample):
    dupes = raw_sample.iloc[[0, 1, 2, 10, 20]]
    conflict = raw_sample.iloc[[30]].copy()
    conflict["StringVoltage"] = 99.0  # same cell and time, other values: a resent packet
    cleaned, report = clean_readings(pd.concat([raw_sample, dupes, conflict], ignore_index=True))
    assert report["rows_in"] == 756
    assert report["duplicates_dropped"] == 5 and report["conflicting_rows_dropped"] == 1
    assert len(cleaned) == 750 and not cleaned.duplicated(["CellID", "Timestamp"]).any()
    assert (cleaned["StringVoltage"] != 99.0).all()  # the first row in file order is kept


def test_out_of_range_flagged_and_counted(raw_sample):
    bad = raw_sample.copy()
    bad.loc[0, "CellVoltage"] = 7.5  # impossible for a 2 V cell (not a sentinel)
    bad.loc[1, "AmbientTemperature"] = 150.0
    cleaned, report = clean_readings(bad)
    assert report["out_of_range_rows"] == 2
    assert report["out_of_range_by_column"]["CellVoltage"] == 1
    assert report["out_of_range_by_column"]["AmbientTemperature"] == 1
    row = cleaned[(cleaned["CellID"] == "1-1") & (cleaned["Timestamp"] == cleaned["Timestamp"].min())].iloc[0]
    assert np.isnan(row["CellVoltage"]) and row["CellVoltage_Quality"] == "out_of_range" and row["OutOfRange"]


def test_custom_limits(raw_sample):
    _, report = clean_readings(raw_sample, limits={"CellVoltage": (2.05, 2.35)})
    observed = raw_sample["CellVoltage"][raw_sample["CellVoltage"] < 60]
    expected = int(((observed < 2.05) | (observed > 2.35)).sum())
    assert expected > 0 and report["out_of_range_by_column"]["CellVoltage"] == expected


def test_unknown_columns_and_labels_pass_through(raw_sample):
    frame = raw_sample.assign(MyNote=[f"note-{i}" for i in range(len(raw_sample))], IsDead=0)
    cleaned, _ = clean_readings(frame)
    assert {"MyNote", "IsDead", "SerialNumber", "SiteID"} <= set(cleaned.columns)
    original = frame.set_index("MyNote")["SerialNumber"]
    assert (cleaned.set_index("MyNote")["SerialNumber"] == original.loc[cleaned["MyNote"]]).all()


def test_time_gaps_per_cell(minimal):
    times = [
        "2025-01-01T00:00:00",
        "2025-01-01T00:05:00",
        "2025-01-01T00:10:00",
        "2025-01-01T01:10:00",
        "2025-01-01T01:15:00",
    ]
    rows = [("A", c, t, 2.1, 25.0, 1.24, 1.0, 24.0) for c in (1, 2) for t in times]
    rows = [r for r in rows if not (r[1] == 2 and r[2] == times[3])]
    _, report = clean_readings(minimal(rows))
    assert report["per_cell"]["A-1"]["gaps"] == 1 and report["per_cell"]["A-1"]["longest_interval_s"] == 3600
    assert report["per_cell"]["A-2"]["gaps"] == 1 and report["per_cell"]["A-2"]["longest_interval_s"] == 3900
    assert report["time_gaps"] == 2


def test_devices_counted_with_text_cell_ids_holding_a_dash(minimal):
    rows = [
        (d, c, t, 2.1, 25.0, 1.24, 1.0, 24.0)
        for d in ("A", "B")
        for c in ("B1-07", "B2-08")
        for t in ("2025-01-01T00:00:00", "2025-01-01T00:05:00")
    ]
    cleaned, report = clean_readings(minimal(rows))
    assert sorted(report["per_cell"]) == ["A-B1-07", "A-B2-08", "B-B1-07", "B-B2-08"]
    assert report["devices"] == 2 == cleaned["DeviceID"].nunique() and report["cells"] == 4


def test_single_row_is_refused(raw_sample):
    with pytest.raises(InputError, match="only 1 row after cleaning"):
        clean_readings(raw_sample.iloc[:1])


def test_all_missing_required_column_is_refused(raw_sample):
    frame = raw_sample.assign(CellTemperature=np.nan)
    with pytest.raises(InputError, match="column 'CellTemperature' has no usable value in any of the 750 rows"):
        clean_readings(frame)


def test_all_missing_specific_gravity_is_accepted_and_reported(raw_sample):
    cleaned, report = clean_readings(raw_sample.assign(CellSpecificGravity=np.nan))
    assert len(cleaned) == 750 and cleaned["CellSpecificGravity"].isna().all()
    assert report["measurements_without_value"] == ["CellSpecificGravity"]
    assert "CellSpecificGravity" not in report["measurements_present"]
    assert set(report["skipped_features"]) == {
        "SGRollMean",
        "SGRollStd",
        "SGCorrected25C",
        "SGDevString",
        "StateOfCharge",
    }
    assert "VRLA" in report["skipped_features"]["SGRollMean"]


def test_text_in_numeric_column(raw_sample):
    frame = raw_sample.astype({"CellTemperature": object})
    frame.loc[7, "CellTemperature"] = "hot"
    with pytest.raises(InputError, match="column 'CellTemperature' holds text where numbers belong"):
        clean_readings(frame)


def test_missing_required_column(raw_sample):
    with pytest.raises(InputError, match="required column 'CellVoltage' is missing"):
        clean_readings(raw_sample.drop(columns="CellVoltage"))


def test_already_canonical_is_not_renormalised(cleaned_sample):
    again, report = clean_readings(cleaned_sample)
    assert report["input_format"] == "canonical" and report["sentinel_rows"] == 146
    pd.testing.assert_frame_equal(again, cleaned_sample)
