"""The chunked CSV reader parses the next chunk on a thread (``read_ahead``): same chunks, same errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bms_schema.reader import (
    StreamFailed,
    _csv_blocks,
    _parse_block,
    first_lines,
    iter_csv_tables,
    read_ahead,
    text_columns,
)


def _write(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "Id": np.arange(rows),
            "Voltage": rng.normal(2.0, 0.1, rows).round(4),
            "Site": np.where(np.arange(rows) % 3 == 0, "north", "south"),
        }
    )
    frame.loc[frame.index % 11 == 0, "Voltage"] = np.nan
    frame.to_csv(path, index=False)
    return path


def _sequential(path: Path, chunksize: int) -> list:
    header, first = first_lines(path)
    assert first is not None
    names = header[: len(first)]
    types = text_columns(path, names)
    return [_parse_block(block, names, header[len(first) :], types) for block in _csv_blocks(path, chunksize)]


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("read-ahead") and t.is_alive()]


def test_read_ahead_gives_the_sequential_chunks(tmp_path):
    path = _write(tmp_path / "packets.csv", 5_000)
    expected = _sequential(path, 700)
    got = list(iter_csv_tables(path, 700))
    assert len(expected) >= 6
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.equals(b)
    assert sum(t.num_rows for t in got) == 5_000
    ids = np.concatenate([t.column("Id").to_numpy() for t in got])
    np.testing.assert_array_equal(ids, np.arange(5_000))
    assert not _read_ahead_threads()


def test_an_error_in_a_later_chunk_surfaces_with_its_message_after_the_chunks_before(tmp_path):
    path = _write(tmp_path / "packets.csv", 3_000)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2_500] = lines[2_500].rstrip(b"\n") + b",extra\n"  # one row with a fourth field
    path.write_bytes(b"".join(lines))
    blocks = list(_csv_blocks(path, 500))
    bad = next(k for k, block in enumerate(blocks) if b",extra" in block)
    assert bad >= 3
    with pytest.raises(StreamFailed) as sequential:
        _sequential(path, 500)
    got = []
    with pytest.raises(StreamFailed) as ahead:
        for table in iter_csv_tables(path, 500):
            got.append(table)
    assert str(ahead.value) == str(sequential.value)
    assert "Expected 3 columns, got 4" in str(ahead.value)
    assert len(got) == bad
    assert not _read_ahead_threads()


def test_read_ahead_order_errors_and_early_close():
    calls: list[int] = []

    def work(x: int) -> int:
        calls.append(x)
        if x == 4:
            raise ValueError("item 4 is bad")
        return x * 10

    def items(n: int) -> Iterator[int]:
        yield from range(n)

    with pytest.raises(ValueError, match="item 4 is bad"):
        got = []
        for value in read_ahead(items(8), work):
            got.append(value)
    assert got == [0, 10, 20, 30]

    def failing_items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk went away")

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for value in read_ahead(failing_items(), lambda x: x + 100):
            got.append(value)
    assert got == [101, 102]  # both results before the failing read, as a sequential loop gives them

    closed = []

    def tracked() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.append(True)

    calls.clear()
    gen = read_ahead(tracked(), work)
    assert next(gen) == 0
    gen.close()
    assert closed == [True]
    assert len(calls) <= 2  # at most one item ahead of the caller
    assert not _read_ahead_threads()
