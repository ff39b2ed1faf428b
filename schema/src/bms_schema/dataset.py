"""The partitioned Parquet layout of fleet data: one owner for writing, listing and reading it.

Layout (hive style, partitioned by device and day)::

    <folder>/_bms_dataset.json                          # marker: layout version, partition keys
    <folder>/device=<DeviceID>/day=<yyyy-mm-dd>/part-<tag>.parquet

Every file holds *all* columns of its rows (``DeviceID`` and the wire format's own ``Date``
included), so a file read on its own is a complete table; the directory names ``device`` and
``day`` are only the index (they are not the table's ``DeviceID``/``Date`` columns, which keep
their dtype and text). Readers of a marked folder therefore read the files without hive
partition columns (:func:`bms_schema.reader.read_table` does), and a Dask worker reads a device's
files directly (:func:`read_device`). Preprocessing output written per device (no day split: the
output of one device is one file) uses the same marker with ``keys=["device"]``.

The day of a row is the UTC calendar day of its reading time (``PacketDateTime``/``Timestamp``
or any alias); a device's files of all days together are its whole history, which the Dask
engine (:mod:`bms_schema.distributed`) hands to one task (see there why by device).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .errors import InputError

MARKER = "_bms_dataset.json"
LAYOUT = "bms-fleet/1"
DEVICE_KEY = "device"
DAY_KEY = "day"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def is_dataset(folder: str | Path) -> bool:
    """A folder written by :func:`write_partitions` (it carries the :data:`MARKER` file)."""
    return (Path(folder) / MARKER).is_file()


def _key_text(value: Any) -> str:
    """A partition value as a directory-safe text (``/`` and other unsafe characters become ``_``)."""
    text = str(value)
    if not text or text in (".", ".."):
        raise InputError(f"device id {value!r} cannot name a partition folder")
    return _SAFE.sub("_", text)


def _day_of(frame: pd.DataFrame) -> np.ndarray:
    """UTC day (``yyyy-mm-dd``) of each row from its reading-time column."""
    name = C.find_alias(list(frame.columns), C.TIMESTAMP)
    if name is None:
        raise InputError(
            f"cannot partition by day: no reading-time column ({', '.join(C.ALIASES[C.TIMESTAMP])}) in the table"
        )
    ts = frame[name]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts, utc=True, errors="coerce", format="ISO8601")
    days = ts.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    days[pd.isna(days)] = "unknown"
    return days


def _device_column(frame: pd.DataFrame) -> str:
    name = C.find_alias(list(frame.columns), C.DEVICE_ID)
    if name is None:
        raise InputError("cannot partition by device: the table has no DeviceID column")
    return name


def write_marker(folder: Path, keys: list[str], extra: dict[str, Any] | None = None) -> None:
    from .atomic import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / MARKER, {"layout": LAYOUT, "partition_keys": keys, **(extra or {})})


def read_marker(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MARKER
    try:
        payload: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable BMS dataset marker: {exc}") from exc
    return payload


def write_partitions(
    frame: pd.DataFrame, folder: str | Path, *, by_day: bool = True, tag: str = "0", marker: bool = True
) -> list[Path]:
    """Write ``frame`` into ``folder`` split by device (and day): one Parquet file per partition.

    Rows keep their order within a partition. ``tag`` names the files (``part-<tag>.parquet``):
    writers of disjoint row sets (parallel simulator batches) use distinct tags; a partition
    file that exists is replaced atomically. Returns the files written.
    """
    from .atomic import atomic_path

    folder = Path(folder)
    if len(frame) == 0:
        return []
    devices = frame[_device_column(frame)].to_numpy()
    keys = pd.DataFrame({"d": pd.Series(devices).astype(str).to_numpy()})
    if by_day:
        keys["t"] = _day_of(frame)
    groups = keys.groupby(list(keys.columns), sort=True).indices
    written = []
    for key, index in groups.items():
        parts = key if isinstance(key, tuple) else (key,)
        sub = folder / f"{DEVICE_KEY}={_key_text(parts[0])}"
        if by_day:
            sub = sub / f"{DAY_KEY}={parts[1]}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"part-{tag}.parquet"
        with atomic_path(path) as tmp:
            frame.iloc[np.sort(index)].to_parquet(tmp, index=False)
        written.append(path)
    if marker:
        write_marker(folder, [DEVICE_KEY, DAY_KEY] if by_day else [DEVICE_KEY])
    return written


@dataclass(frozen=True)
class Partition:
    """The files of one device (all its days, in day order): the unit a Dask task processes."""

    device: str
    files: tuple[Path, ...]

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def list_partitions(folder: str | Path) -> list[Partition]:
    """The device partitions of a dataset folder, in device order (files of a device in path order).

    A folder without the marker but with ``device=<id>`` folders (or ``DeviceID=<id>``) is
    accepted too; anything else is refused with what was expected.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a dataset folder: {folder}")
    out: dict[str, list[Path]] = {}
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or "=" not in sub.name:
            continue
        key, value = sub.name.split("=", 1)
        if key not in (DEVICE_KEY, C.DEVICE_ID):
            continue
        files = sorted(p for p in sub.rglob("*.parquet") if not p.name.startswith((".", "_")))
        if files:
            out.setdefault(value, []).extend(files)
    if not out:
        raise InputError(
            f"folder {folder.name} is not partitioned by device: expected sub-folders "
            f"{DEVICE_KEY}=<DeviceID>/ (write it with bms_schema.dataset.write_partitions or the simulator's "
            "dataset option)"
        )
    return [Partition(device, tuple(files)) for device, files in sorted(out.items(), key=lambda kv: _natural(kv[0]))]


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def read_files(files: Iterable[Path], columns: list[str] | None = None) -> pd.DataFrame:
    """Concatenate Parquet files (no hive columns: the files are complete), unifying their schemas."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, columns=columns, partitioning=None) for p in files]
    if not tables:
        raise InputError("no files to read")
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"the partition files of one device have incompatible columns: {exc}") from exc
    return table.to_pandas()


def read_device(partition: Partition, columns: list[str] | None = None) -> pd.DataFrame:
    """One device's rows (all days), in the order they were written."""
    return read_files(partition.files, columns)


def dataset_rows(folder: str | Path) -> int:
    """Rows of a dataset folder from the Parquet footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(int(pq.ParquetFile(p).metadata.num_rows) for part in list_partitions(folder) for p in part.files)


def split_by_device(table_path: str | Path, folder: str | Path, batch_rows: int = 500_000) -> Path:
    """Rewrite one Parquet table as a dataset folder with one partition per device (streamed in batches).

    Used when a single-process step is asked for dataset output; rows keep their order (a device's
    rows of batch ``k`` go to ``device=<id>/part-<k>.parquet``).
    """
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, batch in enumerate(pq.ParquetFile(table_path).iter_batches(batch_size=batch_rows)):
        write_partitions(batch.to_pandas(), folder, by_day=False, tag=f"{k:05d}", marker=False)
    write_marker(folder, [DEVICE_KEY])
    return folder
