"""Normalisation of both input shapes, sentinels, limits, labels and every reader error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_schema import InputError, Limits, PathError, load_readings, normalize, read_table
from bms_schema import columns as C


def test_sample_counts_exact(sample_csv: Path) -> None:
    frame, report = load_readings(sample_csv)
    assert frame.shape[0] == 750
    assert report.input_format == "raw_packet"
    assert report.devices == 3 and report.cells == 15
    assert frame[C.CELL_ID].nunique() == 15
    assert report.sentinel_rows == 146
    assert int(frame[C.SENSOR_FAULT].sum()) == 146
    assert report.sentinel_by_column == {
        "CellVoltage": 146,
        "CellTemperature": 146,
        "CellSpecificGravity": 146,
        "InstantaneousCurrent": 0,
        "AmbientTemperature": 0,
        "StringVoltage": 0,
    }
    # sentinels are missing values, never numbers
    assert frame[C.VOLTAGE].max() < 3.0
    assert frame[C.TEMPERATURE].max() < 100
    assert frame[C.VOLTAGE].isna().sum() == 146
    assert (frame.loc[frame[C.SENSOR_FAULT], C.quality_column(C.VOLTAGE)] == "sentinel").all()
    # dtypes and UTC timestamps
    assert str(frame[C.TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert frame[C.CELL_NUMBER].dtype == np.int64
    assert frame[C.TIMESTAMP].min() == pd.Timestamp("2025-05-07T09:12:46Z")
    # unknown raw columns pass through unchanged
    raw = pd.read_csv(sample_csv)
    assert (frame["SerialNumber"].to_numpy() == raw["SerialNumber"].to_numpy()).all()
    assert "PacketID" in frame.columns


def test_cells_identified_per_device(sample_csv: Path) -> None:
    frame, _ = load_readings(sample_csv)
    ids = set(frame[C.CELL_ID])
    assert {"1-3", "2-3", "3-3"} <= ids
    assert frame.groupby(C.CELL_ID)[C.DEVICE_ID].nunique().max() == 1


def minimal_frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Cell ID": [1, 2] * (n // 2),
            "Timestamp": pd.date_range("2025-01-01", periods=n, freq="15min").astype(str),
            "CellVoltage": [2.23] * n,
            "CellTemperature": [25.0] * n,
            "InstantaneousCurrent": [0.5] * n,
            "AmbientTemperature": [24.0] * n,
            "CellSpecificGravity": [1.215] * n,
            "IsDead": [0, 1] * (n // 2),
            "MyNote": ["keep me"] * n,
        }
    )


def test_minimal_shape_and_labels_untouched() -> None:
    src = minimal_frame()
    frame, report = normalize(src)
    assert report.input_format == "minimal"
    assert list(frame[C.CELL_ID].unique()) == ["default-1", "default-2"]
    assert frame["IsDead"].tolist() == src["IsDead"].tolist()
    assert frame["MyNote"].eq("keep me").all()
    assert report.renamed["Cell ID"] == "CellNumber"


def test_result_shares_no_memory_with_the_input() -> None:
    src = minimal_frame(4)
    frame, _ = normalize(src)
    again, _ = normalize(frame)  # canonical input: timestamps and flags already in their final dtypes
    frame.loc[0, ["IsDead", "MyNote"]] = [1, "changed"]
    again.loc[0, C.TIMESTAMP] = pd.Timestamp("2030-01-01", tz="UTC")
    assert src["IsDead"].tolist() == [0, 1, 0, 1] and src["MyNote"].eq("keep me").all()
    assert frame.loc[0, C.TIMESTAMP] != pd.Timestamp("2030-01-01", tz="UTC")


def test_date_and_time_columns(sample_csv: Path) -> None:
    raw = pd.read_csv(sample_csv).drop(columns=["PacketDateTime"])
    frame, _ = normalize(raw)
    assert frame[C.TIMESTAMP].iloc[0] == pd.Timestamp("2025-05-07T09:12:46Z")


def test_timezone_aware_input_converted_to_utc() -> None:
    src = minimal_frame(2)
    src["Timestamp"] = ["2025-01-01T12:00:00+02:00", "2025-01-01T12:15:00+02:00"]
    frame, _ = normalize(src)
    assert frame[C.TIMESTAMP].iloc[0] == pd.Timestamp("2025-01-01T10:00:00Z")


def test_impossible_values_flagged_and_missing() -> None:
    src = minimal_frame(4)
    src.loc[0, "CellVoltage"] = 7.5
    src.loc[1, "CellSpecificGravity"] = 0.5
    frame, report = normalize(src)
    assert np.isnan(frame.loc[0, C.VOLTAGE])
    assert frame.loc[0, C.quality_column(C.VOLTAGE)] == "out_of_range"
    assert frame[C.OUT_OF_RANGE].tolist() == [True, True, False, False]
    assert report.out_of_range_by_column["CellVoltage"] == 1
    assert not frame[C.SENSOR_FAULT].any()


def test_limits_configurable() -> None:
    src = minimal_frame(2)
    frame, _ = normalize(src, limits=Limits().with_overrides({"CellVoltage": (2.3, 2.5)}))
    assert frame[C.OUT_OF_RANGE].all()


def test_renormalising_keeps_flags(sample_csv: Path) -> None:
    frame, _ = load_readings(sample_csv)
    filled = frame.copy()
    filled[C.VOLTAGE] = filled[C.VOLTAGE].fillna(2.2)
    again, report = normalize(filled)
    assert report.input_format == "canonical"
    assert int(again[C.SENSOR_FAULT].sum()) == 146
    assert (again[C.quality_column(C.VOLTAGE)] == "sentinel").sum() == 146
    assert again[C.VOLTAGE].isna().sum() == 0


def test_parquet_and_csv_agree(sample_csv: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(sample_csv)
    pq = tmp_path / "s.parquet"
    raw.to_parquet(pq)
    a, _ = load_readings(sample_csv)
    b, _ = load_readings(pq)
    pd.testing.assert_series_equal(a[C.VOLTAGE], b[C.VOLTAGE])
    assert a[C.CELL_ID].tolist() == b[C.CELL_ID].tolist()


def test_gzip_csv(sample_csv: Path, tmp_path: Path) -> None:
    gz = tmp_path / "s.csv.gz"
    gz.write_bytes(gzip.compress(sample_csv.read_bytes()))
    frame, report = load_readings(gz)
    assert len(frame) == 750 and report.sentinel_rows == 146


# ---------------------------------------------------------------- errors
def test_missing_required_column_names_it_and_aliases() -> None:
    src = minimal_frame().drop(columns=["CellTemperature"])
    with pytest.raises(
        InputError, match="required column 'CellTemperature' is missing: accepted names are 'CellTemperature'"
    ):
        normalize(src)


def test_optional_measurements_may_be_absent() -> None:
    """VRLA strings have no specific gravity: the column is there, with no value, and reported absent."""
    src = minimal_frame().drop(columns=["CellSpecificGravity", "AmbientTemperature"])
    frame, report = normalize(src)
    assert report.absent_columns == ["CellSpecificGravity", "AmbientTemperature"]
    assert frame["CellSpecificGravity"].isna().all() and (frame["CellSpecificGravity_Quality"] == "missing").all()
    assert report.missing_by_column["CellSpecificGravity"] == len(frame) and report.sentinel_rows == 0


def test_missing_timestamp_mentions_date_time() -> None:
    with pytest.raises(InputError, match="'Timestamp' is missing \\(or the pair 'Date'"):
        normalize(minimal_frame().drop(columns=["Timestamp"]))


def test_text_where_numbers_belong() -> None:
    src = minimal_frame()
    src["CellVoltage"] = ["2.2", "abc", "2.3", "x", "2.1", "2.2"]
    with pytest.raises(
        InputError,
        match=r"column 'CellVoltage' holds text where numbers belong: 2 of 6 values are not numbers \(first: 'abc' at row 1\)",
    ):
        normalize(src)


def test_unreadable_timestamps() -> None:
    src = minimal_frame()
    src["Timestamp"] = "yesterday"
    with pytest.raises(InputError, match="no row has a readable timestamp"):
        normalize(src)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(InputError, match="file is empty: empty.csv has 0 bytes"):
        read_table(p)


def test_header_only(tmp_path: Path) -> None:
    p = tmp_path / "head.csv"
    p.write_text("CellNumber,Timestamp,CellVoltage\n")
    with pytest.raises(InputError, match="head.csv has a header but no rows"):
        read_table(p)


def test_not_a_table(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    p.write_text('{"readings": [1, 2, 3]}\n')
    with pytest.raises(InputError, match="not a table"):
        read_table(p)


def test_binary_garbage(tmp_path: Path) -> None:
    p = tmp_path / "junk.parquet"
    p.write_bytes(b"\x00\x01garbage" * 50)
    with pytest.raises(InputError, match="junk.parquet is not a readable PARQUET table"):
        read_table(p)


def test_unknown_file_type(tmp_path: Path) -> None:
    p = tmp_path / "data.xlsx"
    p.write_text("x")
    with pytest.raises(InputError, match=r"unknown file type for 'data.xlsx'"):
        read_table(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="file not found"):
        read_table(tmp_path / "nope.csv")


@pytest.mark.parametrize("seed", [3, 17])
def test_sort_readings_matches_pandas_stable_sort(seed):
    """One lexsort over integer keys gives exactly pandas' stable multi-column sort, missing values last."""
    from bms_schema import sort_readings

    rng = np.random.default_rng(seed)
    n = 5_000
    stamps = pd.Series(pd.to_datetime(rng.integers(0, 50, n), unit="h", utc=True), dtype="datetime64[ns, UTC]").mask(
        rng.random(n) < 0.05
    )
    frame = pd.DataFrame(
        {
            "DeviceID": pd.Series(rng.choice(["B-2", "A-10", "A-9", None], n), dtype=object),
            "CellNumber": rng.integers(1, 5, n).astype(float),
            "Timestamp": stamps,
            "row": np.arange(n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "CellNumber"] = np.nan
    frame.index = rng.permutation(n)  # any index in, a fresh RangeIndex out
    expected = frame.sort_values(["DeviceID", "CellNumber", "Timestamp"], kind="stable").reset_index(drop=True)
    got = sort_readings(frame)
    pd.testing.assert_frame_equal(got, expected)
    assert got["DeviceID"].isna().to_numpy()[-1] and got.index.equals(pd.RangeIndex(n))
    # the input is not changed, and the result does not share its memory
    got.loc[0, "row"] = -1
    assert (frame["row"] >= 0).all()


def test_concat_rows_equals_pandas_concat():
    """All-missing object columns take the fast join; the result is pd.concat's, column order kept."""
    from bms_schema.normalize import concat_rows

    def part(n: int, offset: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "DeviceID": pd.Series([f"D{i % 3}" for i in range(n)], dtype=object),
                "ProtocolVersion": pd.Series([None] * n, dtype=object),
                "CellVoltage": np.linspace(2.0, 2.3, n),
                "ServerTime": pd.Series([None] * n, dtype=object),
                "CellNumber": np.arange(n) + offset,
                "Note": pd.Series(["x"] * n, dtype="string[pyarrow]"),
            },
            index=np.arange(n) + 100,
        )

    frames = [part(7, 0), part(5, 7)]
    got = concat_rows(frames)
    pd.testing.assert_frame_equal(got, pd.concat(frames, ignore_index=True))
    assert list(got.columns) == list(frames[0].columns) and got["ProtocolVersion"].isna().all()
    # different columns: plain pd.concat semantics
    other = frames[1].drop(columns=["Note"])
    pd.testing.assert_frame_equal(concat_rows([frames[0], other]), pd.concat([frames[0], other], ignore_index=True))
