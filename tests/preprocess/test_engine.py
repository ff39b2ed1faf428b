"""File engine: chunked == one pass, equal to the in-memory API, order check, output formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_preprocess.engine import PreprocessOptions, count_rows, run_preprocess
from bms_preprocess.pipeline import prepare_readings
from bms_schema import InputError
from bms_schema.features import FEATURE_COLUMNS

CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]


def _run(src: Path, out: Path, **kw) -> tuple[pd.DataFrame, object]:
    result = run_preprocess(src, out, PreprocessOptions(**kw))
    frame = pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)
    return frame, result


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert (a["CellID"].astype(str).to_numpy() == b["CellID"].astype(str).to_numpy()).all()
    assert (a["Timestamp"].astype(str).to_numpy() == b["Timestamp"].astype(str).to_numpy()).all()
    numeric = a.select_dtypes("number").columns
    np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=1e-9, atol=1e-9)
    for column in a.columns.difference(numeric):
        assert (a[column].astype(str).to_numpy() == b[column].astype(str).to_numpy()).all(), column


@pytest.mark.parametrize("impute", ["interpolate", "mice"])
def test_chunked_equals_one_pass(sample_csv, tmp_path, impute):
    one, r1 = _run(sample_csv, tmp_path / "one.csv", impute=impute)
    assert r1.chunks == 1 and len(one) == 750
    for chunksize in (45, 160) if impute == "interpolate" else (120,):
        chunked, r2 = _run(sample_csv, tmp_path / f"c{chunksize}.csv", impute=impute, chunksize=chunksize)
        assert r2.chunks > 3  # really streamed
        _assert_same(one, chunked)
        assert r2.report["sentinel_rows"] == r1.report["sentinel_rows"] == 146
        assert r2.report["per_cell"] == r1.report["per_cell"]
        assert r2.imputed_counts == r1.imputed_counts
        if impute == "mice":
            assert r2.mice_quality == r1.mice_quality
        assert r2.scaler.to_dict()["mean"] == pytest.approx(r1.scaler.to_dict()["mean"], rel=1e-12)


def test_full_chain_output(sample_csv, tmp_path):
    out, result = _run(sample_csv, tmp_path / "full.csv", impute="mice")
    assert len(out) == 750 and out[CORE].isna().sum().sum() == 0
    assert set(FEATURE_COLUMNS) <= set(out.columns)
    for column in (*CORE, *FEATURE_COLUMNS):
        assert f"{column}_scaled" in out.columns
    # raw columns keep raw units; scaled ones are standardised
    assert out["CellVoltage"].between(1.9, 2.5).all()
    assert abs(out["CellVoltage_scaled"].mean()) < 1e-9 and out["CellVoltage_scaled"].std(ddof=0) == pytest.approx(1)
    assert result.report["rows_out"] == 750 and sum(result.imputed_counts.values()) == 3 * 146
    # pass-through columns survive
    assert {"SerialNumber", "SiteID", "PacketID"} <= set(out.columns)


def test_engine_matches_in_memory_api(sample_csv, tmp_path):
    out, _ = _run(sample_csv, tmp_path / "e.parquet", impute="mice", scale=False)
    mem = prepare_readings(sample_csv, impute="mice")
    cols = [*CORE, *FEATURE_COLUMNS]
    np.testing.assert_allclose(out[cols].to_numpy(float), mem[cols].to_numpy(float), rtol=1e-9, atol=1e-9)
    assert (out["CellID"].to_numpy() == mem["CellID"].to_numpy()).all()


def test_canonical_output_can_be_fed_back(sample_csv, tmp_path):
    cleaned, _ = _run(sample_csv, tmp_path / "clean.csv", impute="none", features=False, scale=False)
    assert cleaned["CellVoltage"].isna().sum() == 146
    again, result = _run(tmp_path / "clean.csv", tmp_path / "again.csv", impute="interpolate", chunksize=100)
    assert result.report["input_format"] == "canonical" and result.report["sentinel_rows"] == 146
    assert len(again) == 750 and again[CORE].isna().sum().sum() == 0


def test_chunked_needs_time_order_per_device(raw_sample, tmp_path):
    backwards = raw_sample.iloc[::-1]
    path = tmp_path / "backwards.csv"
    backwards.to_csv(path, index=False)
    with pytest.raises(InputError, match="needs the rows of each device in time order"):
        run_preprocess(path, tmp_path / "out.csv", PreprocessOptions(impute="interpolate", chunksize=100))
    assert not (tmp_path / "out.csv").exists()
    # one pass sorts it fine
    result = run_preprocess(path, tmp_path / "out.csv", PreprocessOptions(impute="interpolate"))
    assert result.rows == 750


def test_bad_options(sample_csv, tmp_path):
    for chunksize in (0, -5):
        with pytest.raises(InputError, match=f"chunksize must be a positive number of rows, got {chunksize}"):
            run_preprocess(sample_csv, tmp_path / "o.csv", PreprocessOptions(chunksize=chunksize))
    with pytest.raises(InputError, match="unknown imputation method 'knn'"):
        run_preprocess(sample_csv, tmp_path / "o.csv", PreprocessOptions(impute="knn"))
    assert not list(tmp_path.iterdir())  # no partial output, no spill left behind


def test_count_rows(sample_csv, tmp_path):
    assert count_rows(sample_csv) == 750
    pd.DataFrame({"a": range(7)}).to_parquet(tmp_path / "x.parquet")
    assert count_rows(tmp_path / "x.parquet") == 7


def test_parquet_input_streams_too(raw_sample, tmp_path):
    src = tmp_path / "raw.parquet"
    raw_sample.to_parquet(src)
    one, _ = _run(src, tmp_path / "one.parquet", impute="interpolate")
    chunked, result = _run(src, tmp_path / "chunked.parquet", impute="interpolate", chunksize=100)
    assert result.chunks == 8
    _assert_same(one, chunked)


def test_big_files_stream_without_a_chunksize(sample_csv, raw_sample, tmp_path, monkeypatch):
    import bms_preprocess.engine as engine

    monkeypatch.setattr(engine, "AUTO_STREAM_BYTES", 1000)
    monkeypatch.setattr(engine, "AUTO_CHUNKSIZE", 150)
    auto, result = _run(sample_csv, tmp_path / "auto.csv", impute="interpolate")
    assert result.chunks > 3
    monkeypatch.setattr(engine, "AUTO_STREAM_BYTES", 10**12)
    one, _ = _run(sample_csv, tmp_path / "one.csv", impute="interpolate")
    _assert_same(one, auto)
    # rows out of time order: the automatic streaming falls back to one pass instead of failing
    monkeypatch.setattr(engine, "AUTO_STREAM_BYTES", 1000)
    backwards = tmp_path / "backwards.csv"
    raw_sample.iloc[::-1].to_csv(backwards, index=False)
    out, result = _run(backwards, tmp_path / "b.csv", impute="interpolate")
    assert result.chunks == 1 and len(out) == 750


def test_minimal_table_with_labels(raw_sample, tmp_path):
    minimal = pd.DataFrame(
        {
            "Cell ID": raw_sample["CellNumber"] + 10 * raw_sample["DeviceID"].astype(int),  # 15 cells, one string
            "Timestamp": raw_sample["PacketDateTime"],
            "Cell Voltage": raw_sample["CellVoltage"],
            "Cell Temperature": raw_sample["CellTemperature"],
            "Cell Specific Gravity": raw_sample["CellSpecificGravity"],
            "Instantaneous Current": raw_sample["InstantaneousCurrent"],
            "Ambient Temperature": raw_sample["AmbientTemperature"],
            "IsDead": (raw_sample["CellNumber"] == 3).astype(int),
        }
    ).sort_values("Timestamp", kind="stable")
    src = tmp_path / "minimal.csv"
    minimal.to_csv(src, index=False)
    one, r1 = _run(src, tmp_path / "one.csv", impute="mice")
    chunked, _ = _run(src, tmp_path / "chunked.csv", impute="mice", chunksize=150)
    _assert_same(one, chunked)
    assert r1.report["input_format"] == "minimal" and r1.report["cells"] == 15 and r1.report["devices"] == 1
    assert one[CORE].isna().sum().sum() == 0 and "IsDead_scaled" not in one and "IsDead_Imputed" not in one
    assert one.groupby("CellNumber")["IsDead"].first().to_dict() == {
        n: int(n % 10 == 3) for n in sorted(one["CellNumber"].unique())
    }


def test_optional_column_never_reported(raw_sample, tmp_path, monkeypatch):
    import bms_preprocess.engine as engine

    monkeypatch.setattr(engine, "MIN_HELD", 0)  # held rows are capped at 5 x chunksize
    src = tmp_path / "no_string_voltage.csv"
    raw_sample.assign(StringVoltage=np.nan).to_csv(src, index=False)
    out, result = _run(src, tmp_path / "out.csv", impute="mice")
    chunked, streamed = _run(src, tmp_path / "chunked.csv", impute="mice", chunksize=100)
    _assert_same(out, chunked)
    assert streamed.report["streaming_forced_flushes"] == 0
    assert out[CORE].isna().sum().sum() == 0 and out["StringVoltage"].isna().all()
    assert "StringVoltage_scaled" not in out and "StringVoltage" not in result.scaler.columns


def test_spill_round_trip_keeps_every_dtype(tmp_path):
    """A spilled block comes back as it went in: Arrow-backed strings stay Arrow-backed, order kept."""
    from bms_preprocess.spill import Spill

    frame = pd.DataFrame(
        {
            "CellID": pd.Series(["1-1", "1-2", "1-3"], dtype=object),
            "SiteID": pd.Series(["A", None, "C"], dtype="string[pyarrow]"),
            "CellVoltage": [2.2, np.nan, 2.25],
            "Quality": pd.Categorical(["ok", "missing", "ok"], categories=["ok", "missing"]),
            "Serial": pd.Series(["s1", "s2", "s3"], dtype="string[pyarrow]"),
            "Drop": [1, 2, 3],
        }
    )
    spill = Spill(tmp_path, "clean")
    spill.write(frame, extra={"VoltageRate": np.array([0.0, 0.1, 0.2])}, exclude={"Drop"})
    (back,) = list(spill.frames())
    expected = frame.drop(columns=["Drop"]).assign(VoltageRate=[0.0, 0.1, 0.2])
    pd.testing.assert_frame_equal(back, expected)
    assert back["Serial"].dtype == pd.StringDtype("pyarrow")


def test_held_blocks_memory_then_spill_in_order(tmp_path):
    """Blocks stay in memory up to the budget, later ones go to files; all come back once, in order."""
    from bms_preprocess.spill import HeldBlocks, Spill

    blocks = [pd.DataFrame({"CellID": [f"c{k}"] * 100, "v": np.arange(100.0) + k}) for k in range(5)]
    one = blocks[0].memory_usage(index=False).sum() + 56 * 100
    held = HeldBlocks(Spill(tmp_path, "clean"), budget_bytes=int(2.5 * one))
    for block in blocks:
        held.write(block)
    assert len(held) == 5 and len(held.spill.paths) == 3 and held.held_bytes == 2 * one
    back = list(held.frames())
    for a, b in zip(back, blocks):
        pd.testing.assert_frame_equal(a, b)
    assert back[0] is blocks[0] and back[4] is not blocks[4]  # held ones are handed back, not copied
    assert held.held_bytes == 0 and len(held) == 0 and not list(tmp_path.iterdir())


def test_memory_budget_does_not_change_the_output(sample_csv, tmp_path):
    outputs = []
    for budget in (0, 1024):
        out = tmp_path / f"b{budget}.csv"
        result = run_preprocess(sample_csv, out, PreprocessOptions(chunksize=120, memory_budget_mb=budget))
        assert result.chunks > 3
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    with pytest.raises(InputError, match="memory_budget_mb must be a number of MB >= 0, got -1"):
        run_preprocess(sample_csv, tmp_path / "o.csv", PreprocessOptions(memory_budget_mb=-1))


def test_spill_holds_tables_up_to_its_budget(tmp_path):
    from bms_preprocess.spill import Spill

    blocks = [pd.DataFrame({"DeviceID": ["1"] * 50, "v": np.arange(50.0) + k}) for k in range(4)]
    first = Spill(tmp_path, "probe", budget_bytes=10**9)
    first.write(blocks[0])
    size = first.held_bytes
    spill = Spill(tmp_path, "features", budget_bytes=2 * size)
    for block in blocks:
        spill.write(block)
    assert len(spill.held) == 2 and len(spill.paths) == 2 and spill.held_bytes == 2 * size
    assert [t.column("v")[0].as_py() for t in spill.tables()] == [0.0, 1.0, 2.0, 3.0]
    for a, b in zip(spill.frames(), blocks):
        pd.testing.assert_frame_equal(a, b)


def test_pass_through_columns_kept_in_arrow_give_the_same_file(sample_csv, tmp_path, monkeypatch):
    """Stage 1 keeps the columns normalisation does not read as Arrow tables: the same bytes as carrying them
    in the frame, duplicates told apart by every column (a resent packet that differs only in a
    pass-through column is a conflict, not a duplicate), an integer column with a gap in one chunk."""
    from bms_preprocess import streams

    lines = sample_csv.read_text().splitlines()
    fields = [line.split(",") for line in lines]
    site = fields[0].index("SiteID")
    maker = fields[0].index("BMSManufacturerID")
    other = list(fields[300])
    other[site] = "CHARGER-9"
    fields[400][maker] = ""
    rows = [*fields[:101], fields[100], *fields[101:301], other, *fields[301:]]  # exact copy; differs in SiteID
    src = tmp_path / "packets.csv"
    src.write_text("\n".join(",".join(r) for r in rows) + "\n")

    used = []
    split = streams.PassThrough.split
    monkeypatch.setattr(streams.PassThrough, "split", lambda self, table: used.append(1) or split(self, table))
    arrow = run_preprocess(src, tmp_path / "arrow.csv", PreprocessOptions(chunksize=120))
    assert len(used) == arrow.chunks > 3
    monkeypatch.setattr(streams.PassThrough, "for_columns", classmethod(lambda cls, columns: None))
    frame = run_preprocess(src, tmp_path / "frame.csv", PreprocessOptions(chunksize=120))
    assert (tmp_path / "arrow.csv").read_bytes() == (tmp_path / "frame.csv").read_bytes()
    for result in (arrow, frame):
        assert result.report["duplicates_dropped"] == 1 and result.report["conflicting_rows_dropped"] == 1
        assert result.rows == 750
    out = pd.read_csv(tmp_path / "arrow.csv")
    assert out["BMSManufacturerID"].isna().sum() == 1 and list(out.columns[:4]) == [
        "CellID",
        "DeviceID",
        "CellNumber",
        "Timestamp",
    ]
