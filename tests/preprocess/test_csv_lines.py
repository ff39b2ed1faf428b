"""The assembly's pre-formatted path (block lines formatted early, scaled columns at the end): same bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from bms_preprocess.scaling import BMSScaler
from bms_preprocess.spill import BlockLines, CSVLines, Spill, assemble


def _block(n: int, seed: int, note: str = 'a "quoted", value') -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(2.1, 0.1, n)
    x[::7] = np.nan
    return pd.DataFrame(
        {
            "DeviceID": [f"D{(i // 5) % 3}" for i in range(n)],
            "CellNumber": (np.arange(n) % 5 + 1).astype(np.int64),
            "Timestamp": pd.date_range("2025-01-01", periods=n, freq="s", tz="UTC") + pd.Timedelta(seed, "D"),
            "CellVoltage": x,
            "Zero": np.where(np.arange(n) % 2 == 0, 0.0, -0.0),
            "Note": [note if i % 3 else None for i in range(n)],
            "Flag": np.arange(n) % 2 == 0,
        }
    )


def _run(tmp_path, frames, name, with_lines, ahead=None):
    spill = Spill(tmp_path, name, budget_bytes=10**9)
    scaler = BMSScaler(columns=["CellVoltage"])
    lines = []
    for frame in frames:
        scaler.partial_fit(frame)
        table = spill.write(frame)
        third = max(1, -(-table.num_rows // 3))  # in parts, as the engine's threads format them
        parts = [] if ahead is not None and len(lines) >= ahead else range(0, len(frame), third)
        lines.append(BlockLines.of([CSVLines.format(table.slice(at, third), b",") for at in parts]))
    out = tmp_path / f"{name}.csv"
    rows, names = assemble(spill, out, scaler, batch_rows=9000, lines=lines if with_lines else None)
    return out.read_bytes(), rows, names


@pytest.mark.parametrize(
    "frames,joined",
    [
        ([_block(20_000, 1), _block(2, 2), _block(13_000, 3)], True),
        ([_block(300, 4, note="line\nbreak")], False),  # a value with a line break: formatted the usual way
    ],
)
def test_pre_formatted_lines_give_the_same_bytes(tmp_path, monkeypatch, frames, joined):
    from bms_preprocess import spill

    calls = []
    real = spill._joined_lines
    monkeypatch.setattr(spill, "_joined_lines", lambda *a: calls.append(1) or real(*a))
    ours, rows, names = _run(tmp_path, frames, "lines", True)
    assert bool(calls) == joined
    plain, plain_rows, plain_names = _run(tmp_path, frames, "plain", False)
    assert ours == plain
    assert (rows, names) == (plain_rows, plain_names) and rows == sum(len(f) for f in frames)
    assert names[-1] == "CellVoltage_scaled"


def test_a_block_of_other_types_is_formatted_the_usual_way(tmp_path):
    other = _block(50, 5).assign(CellNumber=lambda f: f["CellNumber"].astype(float))  # double, not int64
    frames = [_block(100, 6), other]
    ours, *_ = _run(tmp_path, frames, "lines", True)
    plain, *_ = _run(tmp_path, frames, "plain", False)
    assert ours == plain


def test_line_ends_are_found_per_row():
    table = pa.table({"a": pa.array(["x", None, 'y"z']), "b": pa.array([1.5, None, -0.0])})
    lines = CSVLines.format(table, b",")
    assert lines is not None
    assert [lines.array()[i].as_py() for i in range(3)] == ['"x",1.5,', ",,", '"y""z",-0,']
    assert CSVLines.format(pa.table({"a": pa.array(["two\nlines"])})) is None


@pytest.mark.parametrize("note", ['a "quoted", value', "line\nbreak"])
def test_blocks_past_the_budget_are_formatted_with_the_scaled_columns(tmp_path, monkeypatch, note):
    from bms_preprocess import spill

    calls = []
    real = spill._joined_lines
    monkeypatch.setattr(spill, "_joined_lines", lambda *a: calls.append(1) or real(*a))
    frames = [_block(9_000, 7), _block(12_000, 8, note=note), _block(4_000, 9)]
    ours, *_ = _run(tmp_path, frames, "lines", True, ahead=1)  # lines for the first block only
    assert calls
    plain, *_ = _run(tmp_path, frames, "plain", False)
    assert ours == plain


def test_the_engine_formats_blocks_ahead_up_to_the_budget_only(sample_csv, tmp_path, monkeypatch):
    from bms_preprocess import engine

    real = engine._lines_bytes
    seen = []
    # the first two blocks are within the budget, the rest over it (formatted at the end)
    monkeypatch.setattr(engine, "_lines_bytes", lambda *a: seen.append(1) or (0 if len(seen) <= 2 else 1e18))
    ahead = tmp_path / "ahead.csv"
    engine.run_preprocess(sample_csv, ahead, engine.PreprocessOptions(chunksize=120))
    assert len(seen) == 3  # asked until the first block over the budget, not after
    monkeypatch.setattr(engine, "_lines_bytes", real)
    plain = tmp_path / "plain.csv"
    engine.run_preprocess(sample_csv, plain, engine.PreprocessOptions(chunksize=120, memory_budget_mb=0))
    assert ahead.read_bytes() == plain.read_bytes()
