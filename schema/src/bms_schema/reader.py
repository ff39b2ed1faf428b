"""Read BMS tables (CSV, Parquet, or a folder of them) with clear errors for every way a file can be wrong.

A folder is a dataset: a (partitioned, e.g. ``device=A/day=2025-05-07/``) Parquet dataset, or a
folder of CSV files of one shape. Its files are read in path order; hive partition values become
plain columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from .errors import InputError, PathError

CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
NA_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "-"]


def table_format(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file name; anything else is an error."""
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise InputError(f"unknown file type for '{path.name}': BMS-Flux reads CSV (.csv, .csv.gz) or Parquet (.parquet)")


def dataset_files(folder: Path) -> tuple[str, list[Path]]:
    """``(format, files)`` of a dataset folder: all Parquet, else all CSV; refuses an empty or mixed folder."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    parquet = [p for p in files if p.name.lower().endswith(PARQUET_SUFFIXES)]
    csv = [p for p in files if p.name.lower().endswith(CSV_SUFFIXES)]
    if parquet and not csv:
        return "parquet", parquet
    if csv and not parquet:
        return "csv", csv
    if parquet and csv:
        raise InputError(f"folder {folder.name} holds both CSV and Parquet files: a dataset folder holds one kind")
    raise InputError(f"folder {folder.name} holds no CSV or Parquet file")


def _plain_partitions(frame: pd.DataFrame) -> pd.DataFrame:
    """Hive partition columns come back as categoricals: give them their values' own dtype."""
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(frame[name].cat.categories.dtype)
    return frame


def _partitioning(folder: Path) -> str | None:
    """``None`` for a BMS dataset (:mod:`bms_schema.dataset`: its files hold every column), else ``"hive"``."""
    from .dataset import is_dataset

    return None if is_dataset(folder) else "hive"


def read_dataset(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read every file of a dataset folder into one frame (see :func:`dataset_files`)."""
    fmt, files = dataset_files(folder)
    if fmt == "csv":
        return pd.concat([read_table(p, columns=columns) for p in files], ignore_index=True)
    try:
        if _partitioning(folder) is None:
            from .dataset import read_files

            frame = read_files(files, columns)
        else:
            frame = pd.read_parquet(folder, columns=columns)
    except Exception as exc:  # pyarrow raises several types for a malformed dataset
        raise InputError(f"folder {folder.name} is not a readable Parquet dataset: {_short(exc)}") from exc
    frame = _plain_partitions(frame)
    _check_frame(frame, folder)
    return frame


def column_names(path: str | Path) -> list[str]:
    """Column names of a CSV/Parquet file or dataset folder without reading its rows."""
    path = Path(path)
    if path.is_dir():
        fmt, files = dataset_files(path)
        if fmt == "csv":
            return column_names(files[0])
        import pyarrow.dataset as ds

        return list(ds.dataset(path, format="parquet", partitioning=_partitioning(path)).schema.names)
    fmt = table_format(path)
    check_file(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputError(f"{path.name} is not a readable PARQUET table: {_short(exc)}") from exc
    names, _ = first_lines(path)
    return names


def check_file(path: Path) -> None:
    if not path.exists():
        raise PathError(f"file not found: {path}")
    if not path.is_file():
        raise PathError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"file is empty: {path.name} has 0 bytes")


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole CSV/Parquet file (or dataset folder) into a DataFrame (pyarrow engine).

    Raises :class:`InputError` for an empty file, a file that is not a table, or an
    unknown file type, each with its own message.
    """
    path = Path(path)
    if path.is_dir():
        return read_dataset(path, columns)
    fmt = table_format(path)
    check_file(path)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path, columns=columns)
        else:
            frame = _read_csv(path, columns)
    except (InputError, PathError):
        raise
    except Exception as exc:  # pyarrow raises several types for malformed files
        raise InputError(f"{path.name} is not a readable {fmt.upper()} table: {_short(exc)}") from exc
    _check_frame(frame, path)
    return frame


def first_lines(path: Path) -> tuple[list[str], list[str] | None]:
    """The header fields and the first data row's fields (``None`` when there is no data row)."""
    import csv
    import gzip
    import io

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
        head = [handle.readline(), handle.readline()]
    rows = list(csv.reader(io.StringIO("".join(head))))
    header = rows[0] if rows else []
    first = rows[1] if len(rows) > 1 and any(field.strip() for field in rows[1]) else None
    return header, first


def csv_head(path: Path) -> tuple[list[str], list[str]]:
    """The header and first data row of a CSV; refuses JSON/XML, a file without header, a header without rows."""
    header, first = first_lines(path)
    if header and header[0].lstrip().startswith(("{", "[", "<")):
        raise InputError(f"{path.name} is not a table (it looks like JSON or XML, not CSV)")
    if not header or all(not h.strip() for h in header):
        raise InputError(f"file is empty: {path.name} has no header")
    if first is None:
        raise InputError(f"{path.name} has a header but no rows")
    return header, first


def _read_csv(path: Path, columns: list[str] | None) -> pd.DataFrame:
    """Read a CSV with pyarrow's multithreaded reader.

    Real BMS packet files carry 73 header names but 72 fields per row (the wire format
    drops one trailing field); like pandas, the rows' fields are given the first header
    names and the missing trailing columns are empty.
    """
    import pyarrow.csv as pacsv

    header, first = csv_head(path)
    if len(header) != len(set(header)) or len(first) > len(header):
        return pd.read_csv(path, usecols=columns, na_values=NA_VALUES, low_memory=False)
    names = header[: len(first)]
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        convert_options=pacsv.ConvertOptions(
            null_values=NA_VALUES,
            strings_can_be_null=True,
            include_columns=[c for c in (columns or names) if c in names] if columns else None,
            column_types=text_columns(path, names),
        ),
    )
    frame = table.to_pandas()
    for name in header[len(first) :]:
        if columns is None or name in columns:
            frame[name] = np.nan
    return frame


class StreamFailed(InputError):
    """pyarrow's streaming CSV reader met a value its inferred types cannot hold: read with ``engine="pandas"``."""


def count_rows(path: str | Path) -> int:
    """Data rows of a CSV (line count minus header), Parquet file or dataset folder, without parsing."""
    path = Path(path)
    if path.is_dir():
        fmt, files = dataset_files(path)
        if fmt == "parquet":
            import pyarrow.dataset as ds

            return int(ds.dataset(path, format="parquet", partitioning=_partitioning(path)).count_rows())
        return sum(count_rows(f) for f in files)
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    lines, last = 0, b"\n"
    with opener(path, "rb") as handle:
        while block := handle.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


#: Bytes of a CSV parsed to infer which columns hold dates or times.
PEEK_BYTES = 1 << 20


def text_columns(path: Path, names: list[str]) -> dict[str, Any]:
    """``{column: pa.string()}`` for the date and time columns of a CSV other than its reading time.

    pyarrow would parse ``CellServerTime``, ``ServerTime`` or ``Time`` as timestamps and write them
    back in its own format; they are pass-through columns, kept as the text they are (also cheaper:
    no parsing, no formatting). The reading-time column (``PacketDateTime``...) is parsed.
    """
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from .columns import TIMESTAMP, find_alias

    opener: Any = open
    if path.name.lower().endswith(".gz"):
        import gzip

        opener = gzip.open
    with opener(path, "rb") as handle:
        handle.readline()
        block = handle.read(PEEK_BYTES)
    cut = block.rfind(b"\n") + 1
    if cut == 0:
        return {}
    try:
        peek = pacsv.read_csv(
            io.BytesIO(block[:cut]),
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(null_values=NA_VALUES, strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return {}
    keep = find_alias(names, TIMESTAMP)
    timelike = (pa.types.is_timestamp, pa.types.is_time, pa.types.is_date)
    return {
        f.name: pa.string()
        for f in peek.schema
        if f.name != keep and f.name not in ("Date", "Time") and any(t(f.type) for t in timelike)
    }


def _arrow_csv_chunks(path: Path, chunksize: int) -> Iterator[pd.DataFrame]:
    """Stream a CSV in byte ranges of about ``chunksize`` rows, each parsed by pyarrow's threaded reader.

    Ranges end on a line break. Each range is parsed on its own, so a column can get a different
    type in two ranges (all empty in one): consumers unify the types (the preprocessing assembly does).
    """
    import pyarrow as pa

    mapper = {pa.large_string(): pd.StringDtype("pyarrow"), pa.string(): pd.StringDtype("pyarrow")}.get
    for table in _csv_tables(path, chunksize):
        yield table.to_pandas(types_mapper=mapper, self_destruct=True)


def iter_csv_tables(path: str | Path, chunksize: int) -> Iterator[Any]:
    """The chunks of ``iter_table(path, chunksize, engine="arrow")`` for a CSV file, as Arrow tables.

    The same checks and errors as :func:`iter_table` (:class:`StreamFailed` where it would need the
    pandas reader); the header names without a field in the rows (the wire format's 73 names over
    72 fields) are all-null float64 columns, as the pandas chunks have them (NaN).
    """
    if chunksize <= 0:
        raise InputError(f"chunksize must be a positive number of rows, got {chunksize}")
    path = Path(path)
    fmt = table_format(path)
    check_file(path)
    try:
        csv_head(path)
        yield from _csv_tables(path, chunksize)
    except (InputError, PathError):
        raise
    except Exception as exc:
        raise InputError(f"{path.name} is not a readable {fmt.upper()} table: {_short(exc)}") from exc


def _csv_tables(path: Path, chunksize: int) -> Iterator[Any]:
    if path.name.lower().endswith(".gz"):
        raise StreamFailed("compressed CSV: pandas reader")
    header, first = first_lines(path)
    if not header or first is None or len(header) != len(set(header)) or len(first) > len(header):
        raise StreamFailed("header needs the pandas reader")
    names = header[: len(first)]
    types = text_columns(path, names)
    parse = partial(_parse_block, names=names, missing=header[len(first) :], types=types)
    yield from read_ahead(_csv_blocks(path, chunksize), parse)


def _csv_blocks(path: Path, chunksize: int) -> Iterator[bytes]:
    """The rows after the header in byte ranges of about ``chunksize`` rows, each cut after a newline."""
    with open(path, "rb") as handle:
        handle.readline()  # header
        sample = handle.read(1 << 20)
        row_bytes = max(1, len(sample) // max(1, sample.count(b"\n")))
        target = max(chunksize * row_bytes, 1)
        handle.seek(0)
        handle.readline()
        carry = b""
        while True:
            block = handle.read(target)
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # no complete line yet: read on
                carry = block
                continue
            carry = block[cut:]
            yield block[:cut]
        if carry.strip():
            yield carry + b"\n"


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def read_ahead(items: Iterator[_Item], work: Callable[[_Item], _Result]) -> Iterator[_Result]:
    """``work(item)`` for each of ``items``, in order, each next one computed on a background thread
    while the caller uses the current one (pyarrow's CSV parse releases the GIL).

    At most one result is ahead of the caller; ``items`` is advanced on the caller's thread. An
    exception from ``work`` or ``items`` surfaces (the same object) where the sequential loop would
    raise it, after the results before it. Closing the generator early cancels or waits out the
    pending call, shuts the thread down and closes ``items``.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    pending: Future[_Result] | None = None
    try:
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except Exception:
                if pending is not None:  # the result before the failing item comes first, as sequentially
                    done, pending = pending, None
                    yield done.result()
                raise
            submitted = pool.submit(work, item)
            del item
            if pending is not None:
                done, pending = pending, None
                yield done.result()
                del done
            pending = submitted
            del submitted
        if pending is not None:
            done, pending = pending, None
            yield done.result()
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:  # a generator's file closes now, not at garbage collection
            close()


#: Bytes pyarrow parses per block of a chunk: 8 MB blocks parse a 200k-row packet chunk in about half
#: the time of its 1 MB default (fewer, longer columns). The types are the same: where the types
#: inferred on the first 1 MB parse the whole range, the first 8 MB infer them too, and where they
#: do not, both retry with types inferred over the whole range.
PARSE_BLOCK_BYTES = 8 << 20


def _parse_block(data: bytes, names: list[str], missing: list[str], types: dict[str, Any]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(null_values=NA_VALUES, strings_can_be_null=True, column_types=types)
    source = pa.py_buffer(data)
    try:  # blocks of PARSE_BLOCK_BYTES (types inferred on the first block: cheapest) ...
        table = pacsv.read_csv(
            pa.BufferReader(source),
            read_options=pacsv.ReadOptions(column_names=names, block_size=PARSE_BLOCK_BYTES),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        try:  # ... or, when a later block does not fit those types, types inferred over the whole range
            table = pacsv.read_csv(
                pa.BufferReader(source),
                read_options=pacsv.ReadOptions(column_names=names, block_size=max(len(data) // 2 + 1, 1 << 20)),
                convert_options=convert,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StreamFailed(str(exc)) from exc
    for name in missing:  # the wire format's 73 header names over 72 fields
        table = table.append_column(name, pa.nulls(table.num_rows, pa.float64()))
    return table


def iter_table(path: str | Path, chunksize: int, engine: str = "auto") -> Iterator[pd.DataFrame]:
    """Stream a CSV/Parquet file (or dataset folder) in chunks of about ``chunksize`` rows.

    CSV files are cut into byte ranges parsed by pyarrow (``engine="arrow"``; raises
    :class:`StreamFailed` when a range does not fit its inferred types) or read by pandas
    (``engine="pandas"``: slower, copes with anything pandas reads); ``"auto"``: arrow unless the
    file is compressed or its header needs pandas (duplicate names, more fields than names).
    """
    if chunksize <= 0:
        raise InputError(f"chunksize must be a positive number of rows, got {chunksize}")
    path = Path(path)
    if path.is_dir():
        fmt, files = dataset_files(path)
        if fmt == "csv":
            for file in files:
                yield from iter_table(file, chunksize, engine)
            return
        import pyarrow.dataset as ds

        produced = False
        for batch in ds.dataset(path, format="parquet", partitioning=_partitioning(path)).to_batches(
            batch_size=chunksize
        ):
            if batch.num_rows:
                produced = True
                yield _plain_partitions(batch.to_pandas())
        if not produced:
            raise InputError(f"folder {path.name} has no rows")
        return
    fmt = table_format(path)
    check_file(path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            produced = False
            for batch in parquet.iter_batches(batch_size=chunksize):
                produced = True
                yield batch.to_pandas()
            if not produced:
                raise InputError(f"{path.name} has a header but no rows")
            return
        header, first_row = csv_head(path)  # the checks read_table makes, so both modes fail the same way
        if engine == "auto":
            plain = len(header) == len(set(header)) and len(first_row) <= len(header)
            engine = "arrow" if plain and not path.name.lower().endswith(".gz") else "pandas"
        if engine == "arrow":
            yield from _arrow_csv_chunks(path, chunksize)
            return
        reader = pd.read_csv(path, chunksize=chunksize, na_values=NA_VALUES, low_memory=False)
        first = True
        for chunk in reader:
            if first:
                _check_frame(chunk, path)
                first = False
            yield chunk
        if first:
            raise InputError(f"{path.name} has a header but no rows")
    except (InputError, PathError):  # StreamFailed included: the caller switches to engine="pandas"
        raise
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"file is empty: {path.name} has no header and no rows") from exc
    except Exception as exc:
        raise InputError(f"{path.name} is not a readable {fmt.upper()} table: {_short(exc)}") from exc


def _check_frame(frame: pd.DataFrame, path: Path) -> None:
    if frame.shape[1] == 0:
        raise InputError(f"file is empty: {path.name} has no columns")
    if len(frame) == 0:
        raise InputError(f"{path.name} has a header but no rows")
    if frame.shape[1] == 1 and len(frame.columns) == 1 and frame.columns[0].lstrip().startswith(("{", "[", "<")):
        raise InputError(f"{path.name} is not a table (it looks like JSON or XML, not CSV)")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table atomically as CSV or Parquet, chosen by the file suffix."""
    from .atomic import atomic_path

    path = Path(path)
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            _to_csv(frame, tmp)
    return path


class CSVTableWriter:
    """Write Arrow tables to one CSV file: formatting on ``threads`` threads, writing on its own thread.

    pyarrow's CSV writer formats on one thread (numbers and time stamps to text is the cost). Here
    slices of each table are formatted to bytes on a pool (pyarrow releases the GIL) and a writer
    thread appends them in order, so :meth:`write_table` returns as soon as its slices are queued
    and the caller prepares the next table meanwhile; the file is byte for byte what
    ``pyarrow.csv.write_csv`` writes. At most ``max_pending`` formatted slices wait in memory
    (``write_table`` blocks beyond that). An error of any thread is raised by the next call.

    Slices are at most ``SLICE_ROWS`` rows (~10 MB of text for 124 columns), each formatted in one
    batch: a buffer that size is reused by the allocator, where 50k-row slices (~60 MB) took fresh
    pages from the kernel for each buffer and again in the file write (~2 s of system time per 1M
    rows of the preprocessing output).
    """

    SLICE_ROWS = 8192

    def __init__(self, path: str | Path, threads: int | None = None, max_pending: int | None = None):
        import queue

        import pyarrow as pa

        self.threads = max(1, threads if threads is not None else min(2, pa.cpu_count()))
        self._handle = open(path, "wb")
        self._header = True
        self._pool: Any = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending or 4 * self.threads)
        self._writer: Any = None
        self._error: BaseException | None = None
        self._closed = False

    def _format(self, table: Any, header: bool) -> bytes:
        import io

        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        options = pacsv.WriteOptions(include_header=header, batch_size=max(1024, self.SLICE_ROWS))
        pacsv.write_csv(table, buffer, write_options=options)
        return buffer.getvalue()

    def _drain(self) -> None:
        """The writer thread: append formatted slices in order until the end mark (``None``)."""
        while True:
            future = self._queue.get()
            if future is None:
                return
            if self._error is not None:
                continue  # keep taking, so a blocked producer is released; nothing more is written
            try:
                result = future.result()
                for part in result if isinstance(result, list) else [result]:
                    self._handle.write(part)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _start(self) -> None:
        if self._pool is None:
            import threading
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bms-csv")
            self._writer = threading.Thread(target=self._drain, name="bms-csv-writer", daemon=True)
            self._writer.start()

    def write_formatted(self, format_lines: Callable[..., Any], *args: Any) -> None:
        """Append what ``format_lines(*args)`` gives (bytes of whole CSV lines or a list of them, no header).

        It runs on the pool, in order with the tables written around it.
        """
        self._raise()
        self._start()
        self._queue.put(self._pool.submit(format_lines, *args))
        self._header = False

    def write_table(self, table: Any) -> None:
        self._raise()
        n = table.num_rows
        parts = max(1, -(-n // self.SLICE_ROWS))
        self._start()
        step = -(-n // parts) if n else 1
        for i in range(parts):
            self._queue.put(self._pool.submit(self._format, table.slice(i * step, step), self._header and i == 0))
        self._header = False

    def close(self) -> None:
        """Write what is queued, then close the file; raises the first error of any thread."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                self._queue.put(None)
                self._writer.join()
            if self._pool is not None:
                self._pool.shutdown()
        finally:
            self._handle.close()
        self._raise()

    def __enter__(self) -> "CSVTableWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_csv(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        with CSVTableWriter(path) as writer:
            writer.write_table(table)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        frame.to_csv(path, index=False)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
