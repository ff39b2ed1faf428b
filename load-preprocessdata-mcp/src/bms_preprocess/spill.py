"""Spill files of the file engine (Arrow IPC, memory-mapped on read) and the final assembly."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.reader import CSVTableWriter, table_format

from .scaling import BMSScaler, scaled_column

Progress = Callable[[float, str], None]
#: schema metadata key of a spill file: its Arrow-backed pandas string columns (a JSON list)
ARROW_STRINGS = b"bms.arrow_strings"


# -- spill files (Arrow IPC, memory-mapped on read) ----------------------------------------------
class Spill:
    """Blocks as Arrow tables: the first ones held in memory up to ``budget_bytes``, the rest in files.

    :meth:`tables` gives them all in the order written (held ones first: once a block goes to a
    file, every later one does too). The Dask path lists spill files by name (``paths``) and uses no
    budget.
    """

    def __init__(self, folder: Path, prefix: str, budget_bytes: int = 0):
        self.folder = folder
        self.prefix = prefix
        self.paths: list[Path] = []
        self.budget_bytes = max(0, int(budget_bytes))
        self.held: list[Any] = []
        self.held_bytes = 0

    def write(
        self,
        frame: pd.DataFrame,
        extra: dict[str, np.ndarray] | None = None,
        exclude: set[str] | frozenset[str] = frozenset(),
        passthrough: Any = None,
        marker: str | None = None,
    ) -> Any:
        """Spill ``frame`` without the ``exclude`` columns, plus ``extra`` arrays as columns; returns that table.

        ``passthrough`` (an Arrow table of ``frame``'s rows) takes the place of ``frame``'s column ``marker``.
        """
        import pyarrow as pa

        keep = [c for c in frame.columns if c not in exclude and c not in (extra or {})]
        table = pa.Table.from_pandas(frame, columns=keep, preserve_index=False)
        if passthrough is not None and marker is not None:
            at = table.column_names.index(marker)
            table = pa.Table.from_arrays(
                [*table.columns[:at], *passthrough.columns, *table.columns[at + 1 :]],
                names=[*table.column_names[:at], *passthrough.column_names, *table.column_names[at + 1 :]],
            )
        for name, values in (extra or {}).items():
            table = table.append_column(name, pa.array(values))
        strings = [
            c for c in keep if isinstance(frame[c].dtype, pd.StringDtype) and frame[c].dtype.storage == "pyarrow"
        ]
        if strings:  # Arrow's pandas metadata does not keep a string column's storage: the file does
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), ARROW_STRINGS: json.dumps(strings)})
        if not self.paths and self.held_bytes + table.nbytes <= self.budget_bytes:
            self.held.append(table)
            self.held_bytes += table.nbytes
            return table
        self._write_file(table)
        return table

    def _write_file(self, table: Any) -> None:
        """Append ``table`` as the next spill file."""
        path = self.folder / f"{self.prefix}-{len(self.paths):05d}.arrow"
        _write_arrow(table, path)
        self.paths.append(path)

    def tables(self) -> list[Any]:
        """Every block as an Arrow table (files memory-mapped), in the order written."""
        return [*self.held, *(_read_arrow(p) for p in self.paths)]

    def frames(self) -> Iterator[pd.DataFrame]:
        """The blocks as frames, with the dtypes they were written with (``extra`` arrays as NumPy columns)."""
        for table in self.held:
            yield _to_pandas(table)
        for path in self.paths:
            yield _to_pandas(_read_arrow(path))


class HeldBlocks:
    """Blocks kept in memory up to ``budget_bytes``, the later ones spilled to ``spill``; read back in order.

    Stage 1 of the engine finalises blocks that stage 2 reads once, in order, after the MICE fit: a
    file that fits the budget skips the round trip through Arrow files (conversion both ways), a
    bigger one keeps bounded memory. Each block is released as it is handed out.
    """

    def __init__(self, spill: Spill, budget_bytes: int):
        self.spill = spill
        self.budget_bytes = max(0, int(budget_bytes))
        self.held_bytes = 0
        self._blocks: list[tuple[pd.DataFrame | Path, Any]] = []

    def __len__(self) -> int:
        return len(self._blocks)

    def write(self, frame: pd.DataFrame, side: Any = None) -> None:
        """Keep ``frame`` (and ``side``, an Arrow table of its rows handed back with it by :meth:`items`)."""
        size = _frame_bytes(frame) + (0 if side is None else int(side.nbytes))
        if not self.spill.paths and self.held_bytes + size <= self.budget_bytes:
            self._blocks.append((frame, side))
            self.held_bytes += size
        else:  # once one block is spilled, the rest follow it (memory stays where it is)
            self.spill.write(frame)
            path = self.spill.paths[-1]
            if side is not None:
                side_path = path.with_name(path.stem + "-side.arrow")
                _write_arrow(side, side_path)
                side = side_path
            self._blocks.append((path, side))

    def frames(self) -> Iterator[pd.DataFrame]:
        for frame, _ in self.items():
            yield frame

    def items(self) -> Iterator[tuple[pd.DataFrame, Any]]:
        """``(frame, side)`` of every block in the order written, each released as it is handed out."""
        while self._blocks:
            item, side = self._blocks.pop(0)
            if isinstance(item, Path):
                frame = _to_pandas(_read_arrow(item))
                item.unlink(missing_ok=True)
                if isinstance(side, Path):
                    path, side = side, _read_arrow(side)
                    path.unlink(missing_ok=True)  # the mapping keeps the data readable
                yield frame, side
            else:
                self.held_bytes -= _frame_bytes(item) + (0 if side is None else int(side.nbytes))
                yield item, side


def _frame_bytes(frame: pd.DataFrame) -> int:
    """Memory of ``frame``: its arrays, plus ~56 bytes per value of an object column (a small Python object)."""
    objects = sum(1 for dtype in frame.dtypes if pd.api.types.is_object_dtype(dtype))
    return int(frame.memory_usage(index=False, deep=False).sum()) + 56 * objects * len(frame)


def _to_pandas(table: Any) -> pd.DataFrame:
    """``table.to_pandas()``, keeping Arrow-backed string columns Arrow-backed (not a Python object per value)."""
    import pyarrow as pa

    arrow_strings = json.loads((table.schema.metadata or {}).get(ARROW_STRINGS, b"[]"))
    if not arrow_strings:
        return table.to_pandas()
    names = table.column_names
    frame = table.drop_columns(arrow_strings).to_pandas()
    mapper = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}.get
    strings = table.select(arrow_strings).to_pandas(types_mapper=mapper)
    position = {name: i for i, name in enumerate(names)}
    for name in sorted(arrow_strings, key=position.__getitem__):  # each at its own position, in order
        frame.insert(position[name], name, strings[name])
    return frame


def _write_arrow(table: Any, path: Path) -> None:
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_arrow(path: Path) -> Any:
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _unified_schema(tables: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fields: dict[str, Any] = {}
        for t in tables:
            for f in t.schema:
                if f.name in fields and not fields[f.name].type.equals(f.type):
                    fields[f.name] = pa.field(f.name, pa.large_string())
                else:
                    fields.setdefault(f.name, f)
        return pa.schema(list(fields.values()))


def _cast(table: Any, schema: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.schema.equals(schema):
        return table
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            col = table[f.name]
            if not col.type.equals(f.type):
                col = (
                    pc.cast(col, f.type)
                    if not pa.types.is_large_string(f.type)
                    else pc.cast(pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col, f.type)
                )
            arrays.append(col)
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.table(arrays, schema=schema)


class CSVLines:
    """A table's rows as the lines pyarrow's CSV writer gives them (no header), each ending in ``end``.

    ``data[offsets[i]:offsets[i + 1]]`` is row ``i``. Formatted while the engine still computes later
    blocks, so that only the scaled columns (known once every block is seen) are left to format at
    the end; :func:`assemble` puts ``,`` between the two parts of a row.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray, schema: Any):
        self.data = data
        self.offsets = offsets
        self.schema = schema

    @classmethod
    def format(cls, table: Any, end: bytes = b"\n") -> "CSVLines | None":
        """The lines of ``table``; None when a value holds a line break (rows not told apart by them)."""
        import io

        import pyarrow as pa
        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        step = CSVTableWriter.SLICE_ROWS
        found: list[np.ndarray] = []
        try:
            options = pacsv.WriteOptions(include_header=False, batch_size=step)
            for at in range(0, table.num_rows, step):  # line ends looked for while the text is in cache
                start = buffer.tell()
                pacsv.write_csv(table.slice(at, step), buffer, write_options=options)
                with buffer.getbuffer() as view:
                    found.append(np.flatnonzero(np.frombuffer(view, np.uint8, offset=start) == ord("\n")) + start)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None  # the assembly formats it the usual way (and reports the error)
        ends = np.concatenate(found) if found else np.zeros(0, np.int64)
        if len(ends) != table.num_rows:
            return None
        data = np.frombuffer(buffer.getbuffer(), np.uint8)
        if end != b"\n":
            data[ends] = ord(end)
        offsets = np.empty(len(ends) + 1, np.int64)
        offsets[0] = 0
        offsets[1:] = ends + 1
        return cls(data, offsets, table.schema)

    def array(self, start: int = 0, length: int | None = None) -> Any:
        """Rows ``start`` to ``start + length`` as an Arrow large-string array (no copy)."""
        import pyarrow as pa

        length = len(self.offsets) - 1 - start if length is None else length
        bounds = pa.py_buffer(self.offsets[start : start + length + 1])
        return pa.LargeStringArray.from_buffers(length, bounds, pa.py_buffer(self.data))


class BlockLines:
    """A block's :class:`CSVLines` in parts of consecutive rows (formatted on several threads)."""

    def __init__(self, parts: list[CSVLines]):
        self.parts = parts
        self.starts = np.cumsum([0, *(len(p.offsets) - 1 for p in parts)])
        self.schema: Any = parts[0].schema if parts else None

    @classmethod
    def of(cls, parts: list[CSVLines | None]) -> "BlockLines | None":
        return None if not parts or any(p is None for p in parts) else cls([p for p in parts if p is not None])

    def arrays(self, start: int, length: int) -> list[Any]:
        """Rows ``start`` to ``start + length`` as Arrow large-string arrays (no copy), in order."""
        out = []
        end = start + length
        for part, first, stop in zip(self.parts, self.starts[:-1], self.starts[1:]):
            lo, hi = max(start, int(first)), min(end, int(stop))
            if lo < hi:
                out.append(part.array(lo - int(first), hi - lo))
        return out


def _slice_items(items: list[Any], at: int, length: int) -> list[Any]:
    """Rows ``at`` to ``at + length`` of the rows of ``items`` (arrays or tables) one after another."""
    out, first = [], 0
    for item in items:
        lo, hi = max(at, first), min(at + length, first + len(item))
        if lo < hi:
            out.append(item.slice(lo - first, hi - lo))
        first += len(item)
    return out


def _plain_lines(rows: Any, suffix: Any) -> bytes:
    """pyarrow's CSV lines of ``rows`` with the ``suffix`` columns after them (no header)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.Table.from_arrays([*rows.columns, *suffix.columns], names=[*rows.column_names, *suffix.column_names])
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, write_options=pacsv.WriteOptions(include_header=False, batch_size=8192))
    return buffer.getvalue()


def _joined_lines(prefix: list[Any], suffix: Any, rows: Any) -> Any:
    """Each row's ``prefix`` line (ending in ``,``) then its ``suffix`` columns' CSV line, as buffers.

    ``prefix``: line arrays, or tables (rows of a block not formatted ahead) formatted here; ``rows``
    (the same rows as one table) is formatted whole instead when a value holds a line break.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    heads = []
    for item in prefix:
        if isinstance(item, pa.Table):
            text = CSVLines.format(item, b",")
            if text is None:
                return _plain_lines(rows, suffix)
            heads.append(text.array())
        else:
            heads.append(item)
    tail = CSVLines.format(suffix)
    if tail is None:  # (never for the float columns of the scaler)
        return _plain_lines(rows, suffix)
    head = pa.chunked_array(heads, type=pa.large_string())
    parts = []
    for lines in pc.binary_join_element_wise(head, tail.array(), pa.scalar("", pa.large_string())).chunks:
        ends = np.frombuffer(lines.buffers()[1], np.int64, count=len(lines) + 1, offset=8 * lines.offset)
        parts.append(lines.buffers()[2][int(ends[0]) : int(ends[-1])])
    return parts


def assemble(
    spill: Spill,
    output: Path,
    scaler: BMSScaler | None,
    batch_rows: int,
    progress: Progress | None = None,
    lines: list[BlockLines | None] | None = None,
) -> tuple[int, list[str]]:
    """Write spilled blocks in cell-then-time order (plus scaled columns) to ``output`` atomically.

    ``lines``: each block's :class:`BlockLines` (lines ending in ``,``) or None, in the order written,
    for a CSV output with scaled columns: then only the scaled columns (and the blocks without lines)
    are formatted here (same bytes).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from bms_schema.atomic import atomic_path

    tables = spill.tables()
    spill.held = []  # from here only the list below holds them (until the output is written)
    schema = _unified_schema(tables)
    if schema.metadata and ARROW_STRINGS in schema.metadata:  # a spill file's note, not the output's
        schema = schema.with_metadata({k: v for k, v in schema.metadata.items() if k != ARROW_STRINGS})
    fmt = table_format(output)
    if not (
        lines is not None
        and fmt == "csv"
        and scaler is not None
        and scaler.columns
        and len(lines) == len(tables)
        and any(t is not None for t in lines)
        and all(t is None or (t.schema is not None and t.schema.equals(schema)) for t in lines)
        and all(t.schema.equals(schema) for t in tables)
    ):
        lines = None  # (a block of other column types is cast first: formatted the usual way)
    tables = [_cast(t, schema) for t in tables]
    # (device, cell number) runs of every block
    runs: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
    for i, table in enumerate(tables):
        keys = pd.DataFrame({"d": table[C.DEVICE_ID].to_pandas().astype(str), "n": table[C.CELL_NUMBER].to_numpy()})
        change = (
            np.flatnonzero(
                (keys["d"].to_numpy()[1:] != keys["d"].to_numpy()[:-1])
                | (keys["n"].to_numpy()[1:] != keys["n"].to_numpy()[:-1])
            )
            + 1
        )
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(keys)]])
        for s, e in zip(starts, ends):  # one entry per cell and block, not per row
            runs.setdefault((keys["d"].iat[s], int(keys["n"].iat[s])), []).append((i, int(s), int(e - s)))
    order = sorted(runs)
    out_schema = schema
    scale = scaler.scale_ if scaler is not None else {}
    means = scaler.mean_ if scaler is not None else {}

    def scaled(table: Any, name: str) -> Any:
        """Column ``name`` of ``table`` standardised with the fitted scaler."""
        return pc.divide(pc.subtract(pc.cast(table[name], pa.float64()), means[name]), scale[name])

    if scaler is not None:
        for name in scaler.columns:
            out_schema = out_schema.append(pa.field(scaled_column(name), pa.float64()))
    written = 0
    with atomic_path(output) as tmp:
        writer = pq.ParquetWriter(str(tmp), out_schema) if fmt == "parquet" else CSVTableWriter(tmp)
        try:
            batch: list[Any] = []
            prefix: list[Any] = []
            size = 0
            if lines is not None:
                writer.write_table(out_schema.empty_table())  # the header

            def flush() -> None:
                nonlocal batch, prefix, size, written
                if not batch:
                    return
                if lines is not None and scaler is not None:
                    rows = pa.concat_tables(batch)
                    suffix = pa.table(
                        [scaled(rows, name) for name in scaler.columns],
                        names=[scaled_column(name) for name in scaler.columns],
                    )
                    step = CSVTableWriter.SLICE_ROWS
                    for at in range(0, suffix.num_rows, step):  # bounded buffers, formatted on the pool
                        writer.write_formatted(
                            _joined_lines, _slice_items(prefix, at, step), suffix.slice(at, step), rows.slice(at, step)
                        )
                    written += suffix.num_rows
                    batch, prefix, size = [], [], 0
                    return
                table = pa.concat_tables(batch)
                if scaler is not None:
                    for name in scaler.columns:
                        table = table.append_column(scaled_column(name), scaled(table, name))
                writer.write_table(table)
                written += table.num_rows
                batch, size = [], 0

            for k, key in enumerate(order):  # per cell (not per row): slices are zero-copy views
                for i, start, length in runs[key]:
                    batch.append(tables[i].slice(start, length))
                    if lines is not None:
                        block = lines[i]
                        if block is None:  # formatted with the scaled columns
                            prefix.append(tables[i].slice(start, length))
                        else:
                            prefix.extend(block.arrays(start, length))
                    size += length
                if size >= batch_rows:
                    flush()
                    if progress is not None:
                        progress(0.85 + 0.14 * (k + 1) / len(order), f"writing cell {k + 1} of {len(order)}")
            flush()
        finally:
            writer.close()
    return written, list(out_schema.names)
