"""Read BMS tables (CSV, Parquet, or a folder of them) with clear errors for every way a file can be wrong.

A folder is a dataset: a (partitioned, e.g. ``device=A/day=2025-05-07/``) Parquet dataset, or a
folder of CSV files of one shape. Its files are read in path order; hive partition values become
plain columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
    raise InputError(
        f"unknown file type for '{path.name}': BMS-Flux reads CSV (.csv, .csv.gz) or Parquet (.parquet)"
    )


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


def read_dataset(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read every file of a dataset folder into one frame (see :func:`dataset_files`)."""
    fmt, files = dataset_files(folder)
    if fmt == "csv":
        return pd.concat([read_table(p, columns=columns) for p in files], ignore_index=True)
    try:
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

        return list(ds.dataset(path, format="parquet", partitioning="hive").schema.names)
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
        ),
    )
    frame = table.to_pandas()
    for name in header[len(first):]:
        if columns is None or name in columns:
            frame[name] = np.nan
    return frame


def iter_table(path: str | Path, chunksize: int) -> Iterator[pd.DataFrame]:
    """Stream a CSV/Parquet file (or dataset folder) in chunks of at most ``chunksize`` rows."""
    if chunksize <= 0:
        raise InputError(f"chunksize must be a positive number of rows, got {chunksize}")
    path = Path(path)
    if path.is_dir():
        fmt, files = dataset_files(path)
        if fmt == "csv":
            for file in files:
                yield from iter_table(file, chunksize)
            return
        import pyarrow.dataset as ds

        produced = False
        for batch in ds.dataset(path, format="parquet", partitioning="hive").to_batches(batch_size=chunksize):
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
        reader = pd.read_csv(path, chunksize=chunksize, na_values=NA_VALUES, low_memory=False)
        first = True
        for chunk in reader:
            if first:
                _check_frame(chunk, path)
                first = False
            yield chunk
        if first:
            raise InputError(f"{path.name} has a header but no rows")
    except (InputError, PathError):
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


def _to_csv(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pacsv.write_csv(table, path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        frame.to_csv(path, index=False)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
