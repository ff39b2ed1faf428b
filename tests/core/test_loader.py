"""The one loader: every input shape gives the same canonical, interpolated, featured frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_schema import InputError
from bms_schema.features import FEATURE_COLUMNS
from bms_schema.loader import load_canonical

CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]


@pytest.fixture
def reference(sample_csv) -> pd.DataFrame:
    return load_canonical(sample_csv)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) == len(b) == 750
    assert (a["CellID"].to_numpy() == b["CellID"].to_numpy()).all()
    assert (a["Timestamp"].to_numpy() == b["Timestamp"].to_numpy()).all()
    cols = [*CORE, *FEATURE_COLUMNS]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=1e-12, atol=1e-12)


def test_raw_packets_give_the_documented_frame(sample_csv, reference):
    frame, report = load_canonical(sample_csv, return_report=True)
    assert report["input_format"] == "raw_packet" and report["columns_read"] == 73
    assert report["features_added"] is True and report["sentinel_rows"] == 146
    assert len(frame) == 750 and frame["CellID"].nunique() == 15
    assert frame[CORE].isna().sum().sum() == 0  # interpolated
    assert int(frame["CellVoltage_Imputed"].sum()) == 146
    assert all(c in frame.columns for c in FEATURE_COLUMNS)
    # sorted by cell, then time
    assert frame.equals(frame.sort_values(["DeviceID", "CellNumber", "Timestamp"], kind="stable"))


def test_used_columns_only(sample_csv):
    frame, report = load_canonical(sample_csv, features=False, impute="none", columns="used", return_report=True)
    assert report["columns_read"] == 11
    assert "SerialNumber" not in frame.columns and frame["CellVoltage"].isna().sum() == 146


def test_parquet_and_minimal_and_dataframe_agree(sample_csv, raw_sample, tmp_path, reference):
    raw_sample.to_parquet(tmp_path / "raw.parquet")
    _same(load_canonical(tmp_path / "raw.parquet"), reference)
    _same(load_canonical(raw_sample), reference)
    minimal = raw_sample[["DeviceID", "CellNumber", "PacketDateTime", *CORE]].rename(
        columns={"PacketDateTime": "Timestamp"}
    )
    frame, report = load_canonical(minimal, return_report=True)
    assert report["input_format"] == "minimal"
    _same(frame, reference)
    minimal.to_csv(tmp_path / "minimal.csv", index=False)
    _same(load_canonical(tmp_path / "minimal.csv"), reference)


def test_dataset_folders_of_either_shape(raw_sample, tmp_path, reference):
    raw_folder = tmp_path / "raw"
    raw_sample.to_parquet(raw_folder, partition_cols=["DeviceID"])  # hive: DeviceID=1/...
    assert len(list(raw_folder.rglob("*.parquet"))) == 3
    _same(load_canonical(raw_folder), reference)
    minimal = raw_sample[["DeviceID", "CellNumber", "PacketDateTime", *CORE]]
    csv_folder = tmp_path / "csv"
    csv_folder.mkdir()
    for device, part in minimal.groupby("DeviceID"):
        part.to_csv(csv_folder / f"device-{device}.csv", index=False)
    _same(load_canonical(csv_folder), reference)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no CSV or Parquet"):
        load_canonical(tmp_path / "empty")


def test_canonical_input_keeps_its_features_and_is_not_reprocessed(reference):
    marked = reference.assign(VoltageRate=123.0)
    frame, report = load_canonical(marked, return_report=True)
    assert report["input_format"] == "canonical" and report["features_added"] is False
    assert (frame["VoltageRate"] == 123.0).all()
    # without every feature column the features are computed
    again, report = load_canonical(reference.drop(columns=["VoltageRate"]), return_report=True)
    assert report["features_added"] is True
    np.testing.assert_allclose(again["VoltageRate"], reference["VoltageRate"])


def test_canonical_csv_round_trip(reference, tmp_path):
    reference.to_csv(tmp_path / "canonical.csv", index=False)
    frame = load_canonical(tmp_path / "canonical.csv")
    _same(frame, reference)
    assert isinstance(frame["Timestamp"].dtype, pd.DatetimeTZDtype)


def test_bad_arguments_are_clear(sample_csv):
    with pytest.raises(InputError, match="unknown imputation method 'mice' for the loader"):
        load_canonical(sample_csv, impute="mice")
    with pytest.raises(InputError, match="expected a DataFrame"):
        load_canonical(42)  # type: ignore[arg-type]
