"""The pipelined CSV writer: byte for byte pyarrow's output, bounded queue, errors of its threads raised."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from bms_schema.reader import CSVTableWriter


def _table(n: int, offset: int = 0) -> pa.Table:
    rng = np.random.default_rng(offset)
    return pa.table(
        {
            "DeviceID": pa.array([f"D{i % 7}" for i in range(n)], pa.string()),
            "CellVoltage": pa.array(rng.normal(2.2, 0.05, n)),
            "Flag": pa.array(rng.random(n) < 0.5),
            "Timestamp": pa.array((np.arange(n) + offset) * 1_000_000_000, pa.timestamp("ns", tz="UTC")),
        }
    )


@pytest.mark.parametrize("threads,max_pending", [(1, 1), (2, 1), (2, 8)])
def test_many_tables_equal_one_pyarrow_write(tmp_path, threads, max_pending):
    parts = [_table(n, k) for k, n in enumerate([0, 45_000, 1, 61_000, 20_000])]
    ours = tmp_path / "ours.csv"
    with CSVTableWriter(ours, threads=threads, max_pending=max_pending) as writer:
        for part in parts:
            writer.write_table(part)
    theirs = tmp_path / "theirs.csv"
    pacsv.write_csv(pa.concat_tables(parts), theirs)
    assert ours.read_bytes() == theirs.read_bytes()
    assert len(ours.read_text().splitlines()) == 1 + sum(p.num_rows for p in parts)


def test_a_formatting_error_is_raised_not_lost(tmp_path):
    bad = pa.table({"x": pa.array([[1, 2]] * 50_000)})  # list columns have no CSV form
    writer = CSVTableWriter(tmp_path / "out.csv", threads=2, max_pending=1)
    writer.write_table(_table(50_000))
    writer.write_table(bad)
    with pytest.raises(pa.ArrowInvalid):
        for _ in range(5):  # raised by a later call or, at the latest, by close()
            writer.write_table(_table(50_000))
        writer.close()
    with pytest.raises(pa.ArrowInvalid):  # closing still reports it (the file is closed either way)
        writer.close()
    assert writer._handle.closed
    writer.close()  # a closed writer: nothing more to do or say
