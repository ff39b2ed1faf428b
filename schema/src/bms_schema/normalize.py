"""Normalise either input shape (raw 73-column packets, or a minimal table) to the canonical table.

Vectorised throughout: a 1M-row raw packet file normalises in about the time pyarrow
takes to read it (see ``bench/bench_normalize.py``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import columns as C
from .errors import InputError
from .reader import read_table

if TYPE_CHECKING:
    from .models import Reading

DEFAULT_DEVICE = "default"
RAW_MARKERS = ("PacketID", "PacketDateTime", "SerialNumber", "StringVoltage")


@dataclass
class NormalizeReport:
    """What normalisation found: counts a data-quality report can quote."""

    input_format: str
    rows_in: int
    rows_out: int
    rows_without_timestamp: int = 0
    devices: int = 0
    cells: int = 0
    sentinel_rows: int = 0
    out_of_range_rows: int = 0
    sentinel_by_column: dict[str, int] = field(default_factory=dict)
    out_of_range_by_column: dict[str, int] = field(default_factory=dict)
    missing_by_column: dict[str, int] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    #: optional core measurements the input does not have at all (NaN columns in the result)
    absent_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_limits(overrides: dict[str, tuple[float, float]] | None = None) -> C.Limits:
    """Default limits, updated by ``BMS_LIMITS`` (JSON) and then by ``overrides``."""
    limits = C.Limits()
    env = os.environ.get("BMS_LIMITS")
    if env:
        try:
            limits = limits.with_overrides({k: tuple(v) for k, v in json.loads(env).items()})
        except (ValueError, TypeError) as exc:
            raise InputError(f'BMS_LIMITS is not valid JSON of the form {{"CellVoltage": [0, 3]}}: {exc}') from exc
    return limits.with_overrides(overrides)


def detect_format(frame: pd.DataFrame) -> str:
    cols = set(frame.columns)
    if C.quality_column(C.VOLTAGE) in cols and C.CELL_ID in cols:
        return "canonical"
    if sum(m in cols for m in RAW_MARKERS) >= 2:
        return "raw_packet"
    return "minimal"


def _find(frame: pd.DataFrame, canonical: str) -> str | None:
    return C.find_alias(list(frame.columns), canonical)


def _missing_column_error(canonical: str, frame: pd.DataFrame, extra: str = "") -> InputError:
    aliases = ", ".join(repr(a) for a in C.ALIASES.get(canonical, (canonical,)))
    shown = ", ".join(map(str, list(frame.columns)[:12]))
    more = "" if frame.shape[1] <= 12 else f", ... ({frame.shape[1]} columns)"
    return InputError(
        f"required column '{canonical}' is missing{extra}: accepted names are {aliases}; the file has {shown}{more}"
    )


def _timestamps(frame: pd.DataFrame, renamed: dict[str, str]) -> pd.Series:
    source = _find(frame, C.TIMESTAMP)
    if source is not None:
        renamed[source] = C.TIMESTAMP
        raw = frame[source]
        if pd.api.types.is_datetime64_any_dtype(raw):
            ts = raw
        else:
            ts = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
            if ts.isna().all() and raw.notna().any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    ts = pd.to_datetime(raw, errors="coerce", utc=True, dayfirst=True)
        if getattr(ts.dt, "tz", None) is None:
            ts = ts.dt.tz_localize("UTC")
        else:
            ts = ts.dt.tz_convert("UTC")
        return ts.astype("datetime64[ns, UTC]")
    if "Date" in frame.columns and "Time" in frame.columns:
        renamed["Date+Time"] = C.TIMESTAMP
        text = frame["Date"].astype("string") + " " + frame["Time"].astype("string")
        ts = pd.to_datetime(text, format="%d/%m/%Y %H:%M:%S", errors="coerce", utc=True)
        return ts.astype("datetime64[ns, UTC]")
    raise _missing_column_error(C.TIMESTAMP, frame, " (or the pair 'Date' dd/mm/yyyy + 'Time')")


def flag_values(name: str, values: np.ndarray, limits: C.Limits) -> tuple[np.ndarray, np.ndarray]:
    """The quality rule for one measurement: 0xFFFF sentinels and physically impossible values.

    Returns the values with sentinels and impossible values set to NaN (``values`` is changed
    in place) and int8 codes indexing :data:`columns.QUALITY_LEVELS` (0 ok, 1 missing,
    2 sentinel, 3 out of range). Shared by :func:`normalize` and :func:`normalize_readings`.
    """
    missing = np.isnan(values)
    sentinel = np.zeros(len(values), dtype=bool)
    if name in C.SENTINELS:
        sentinel = np.isclose(values, C.SENTINELS[name], rtol=0, atol=1e-3)
    low, high = limits.ranges.get(name, (-np.inf, np.inf))
    with np.errstate(invalid="ignore"):
        impossible = ~sentinel & ~missing & ((values < low) | (values > high))
    codes = np.zeros(len(values), dtype=np.int8)
    codes[missing] = 1
    codes[sentinel] = 2
    codes[impossible] = 3
    values[sentinel | impossible] = np.nan
    return values, codes


#: The measurements a :class:`bms_schema.models.Reading` carries, in frame column order.
READING_NUMERIC: tuple[str, ...] = (*C.CORE_COLUMNS, C.STRING_VOLTAGE)
_QUALITY_LEVELS = np.asarray(C.QUALITY_LEVELS, dtype=object)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _epoch_ns(stamps: Sequence[datetime]) -> np.ndarray:
    """Integer nanoseconds since the epoch; a naive timestamp is taken as UTC."""
    micros = [
        ((ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)) - _EPOCH) // _MICROSECOND for ts in stamps
    ]
    return np.asarray(micros, dtype=np.int64) * 1000


def normalize_readings(readings: Sequence[Reading], limits: C.Limits | None = None) -> pd.DataFrame:
    """The canonical frame of validated :class:`~bms_schema.models.Reading` objects, in their
    order (index = position): the fast path of :func:`normalize` for readings that are
    canonical already (names mapped by the model, one device, cell number and timestamp each),
    as the live service needs it for one reading at a time: no format detection, alias search
    or timestamp parsing, and the frame is built once from arrays.

    The same rule per measurement as :func:`normalize` (:func:`flag_values`): 0xFFFF sentinels
    and physically impossible values become NaN with ``<core>_Quality`` codes and the
    ``SensorFault`` / ``OutOfRange`` row flags; ``StringVoltage`` is a column only when some
    reading has it. Equal to :func:`normalize` on the same readings (``tests/core``).
    """
    limits = limits or load_limits()
    n = len(readings)
    device = np.asarray([r.DeviceID.strip() for r in readings], dtype=object)
    number = np.asarray([r.CellNumber for r in readings], dtype=np.int64)
    cell_id = np.char.add(np.char.add(device.astype(str), "-"), number.astype(str)).astype(object)
    out: dict[str, object] = {
        C.CELL_ID: cell_id,
        C.DEVICE_ID: device,
        C.CELL_NUMBER: number,
        C.TIMESTAMP: pd.DatetimeIndex(_epoch_ns([r.Timestamp for r in readings]).view("datetime64[ns]"), tz="UTC"),
    }
    sensor_fault = np.zeros(n, dtype=bool)
    out_of_range = np.zeros(n, dtype=bool)
    quality: dict[str, np.ndarray] = {}
    for name in READING_NUMERIC:
        raw = [getattr(r, name) for r in readings]
        values = np.asarray([np.nan if v is None else v for v in raw], dtype=np.float64)
        if name == C.STRING_VOLTAGE and np.isnan(values).all():
            continue  # optional column absent from every reading
        values, level = flag_values(name, values, limits)
        sentinel, impossible = level == 2, level == 3
        out[name] = values
        quality[C.quality_column(name)] = _QUALITY_LEVELS[level]
        sensor_fault |= sentinel
        out_of_range |= impossible
    out[C.SENSOR_FAULT] = sensor_fault
    out[C.OUT_OF_RANGE] = out_of_range
    out.update(quality)
    return pd.DataFrame(out)


def _numeric(frame: pd.DataFrame, name: str, source: str) -> pd.Series:
    raw = frame[source]
    if pd.api.types.is_bool_dtype(raw):
        raise InputError(f"column '{source}' holds true/false values where numbers ({name}) belong")
    if pd.api.types.is_numeric_dtype(raw):
        return raw.astype("float64")
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
    if bad.any():
        example = raw[bad].iloc[0]
        raise InputError(
            f"column '{source}' holds text where numbers belong: {int(bad.sum())} of {len(raw)} values are "
            f"not numbers (first: {example!r} at row {int(np.flatnonzero(bad.to_numpy())[0])})"
        )
    return values.astype("float64")


def _device_and_cell(frame: pd.DataFrame, renamed: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical ``CellID``, ``DeviceID`` and ``CellNumber`` arrays.

    String work is done on the unique values only (a fleet has few devices and cells),
    then spread back with integer codes: this keeps 1M rows well under a second.
    """
    device_col = _find(frame, C.DEVICE_ID)
    cell_col = _find(frame, C.CELL_NUMBER)
    n = len(frame)
    if device_col is not None:
        renamed[device_col] = C.DEVICE_ID
        dev_codes, dev_uniques = pd.factorize(frame[device_col], use_na_sentinel=False)
        dev_names = np.array([_device_text(v) for v in dev_uniques], dtype=object)
    else:
        dev_codes, dev_names = np.zeros(n, dtype=np.int64), np.array([DEFAULT_DEVICE], dtype=object)
    if cell_col is None:
        if C.CELL_ID not in frame.columns:
            raise _missing_column_error(C.CELL_NUMBER, frame)
        ids = frame[C.CELL_ID].astype(str)
        id_codes, id_uniques = pd.factorize(ids)
        parts = [str(u).rsplit("-", 1) for u in id_uniques]
        dev_of = np.array([p[0] if len(p) == 2 else DEFAULT_DEVICE for p in parts], dtype=object)
        num_of = pd.to_numeric(pd.Series([p[-1] for p in parts]), errors="coerce")
        if num_of.isna().any():
            raise InputError(
                f"column 'CellID' must look like '<DeviceID>-<CellNumber>', found e.g. {id_uniques[int(np.flatnonzero(num_of.isna())[0])]!r}"
            )
        return np.asarray(id_uniques, dtype=object)[id_codes], dev_of[id_codes], num_of.to_numpy(np.int64)[id_codes]
    renamed[cell_col] = C.CELL_NUMBER
    cell_codes, cell_uniques = pd.factorize(frame[cell_col], use_na_sentinel=True)
    if (cell_codes < 0).any():
        raise InputError(f"column '{cell_col}' has {int((cell_codes < 0).sum())} rows with no cell id")
    numbers_u = pd.to_numeric(pd.Series(cell_uniques), errors="coerce")
    pair = dev_codes.astype(np.int64) * (len(cell_uniques) + 1) + cell_codes
    pair_codes, pair_uniques = pd.factorize(pair)
    pair_dev = pair_uniques // (len(cell_uniques) + 1)
    pair_cell = pair_uniques % (len(cell_uniques) + 1)
    if numbers_u.isna().any():
        # Text cell ids ("C3", "B1-07"): the id is kept, numbers are positions within each device.
        labels = np.array([str(v).strip() for v in cell_uniques], dtype=object)
        order = pd.DataFrame({"dev": pair_dev, "label": labels[pair_cell]})
        pair_number = (order.groupby("dev")["label"].rank(method="dense").astype(np.int64)).to_numpy()
        pair_id = np.array([f"{dev_names[d]}-{lab}" for d, lab in zip(pair_dev, labels[pair_cell])], dtype=object)
    else:
        values = numbers_u.to_numpy(dtype=float)
        if not np.allclose(values, np.round(values)):
            raise InputError(
                f"column '{cell_col}' must hold whole cell numbers, found e.g. {values[values % 1 != 0][0]}"
            )
        pair_number = values.astype(np.int64)[pair_cell]
        pair_id = np.array([C.make_cell_id(dev_names[d], k) for d, k in zip(pair_dev, pair_number)], dtype=object)
    return pair_id[pair_codes], dev_names[dev_codes], pair_number[pair_codes]


def _device_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "unknown"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def normalize(
    frame: pd.DataFrame,
    limits: C.Limits | None = None,
    drop_unknown: bool = False,
    *,
    input_format: str | None = None,
) -> tuple[pd.DataFrame, NormalizeReport]:
    """Turn a raw-packet, minimal or already-canonical table into the canonical table.

    Sentinels and physically impossible values become NaN, with per-column ``*_Quality``
    codes and the row flags ``SensorFault``/``OutOfRange``. Labels and unknown columns pass
    through unchanged (``drop_unknown=True`` keeps only schema columns and labels). The result
    shares no memory with ``frame``: writing to it never changes the caller's table.
    ``input_format`` (from :func:`detect_format`) saves detecting it again.
    """
    return _normalize_frame(frame, limits, drop_unknown, private_input=False, input_format=input_format)


def _normalize_frame(
    frame: pd.DataFrame,
    limits: C.Limits | None,
    drop_unknown: bool,
    private_input: bool,
    input_format: str | None = None,
) -> tuple[pd.DataFrame, NormalizeReport]:
    if frame.shape[1] == 0 or len(frame) == 0:
        raise InputError("the table has no rows" if frame.shape[1] else "the table has no columns")
    # Copy-on-write shares the pass-through columns with the input instead of copying them (much
    # faster on wide raw packets), but once the block ends a write to the result would reach the
    # input's arrays: only for an input no caller holds (a table just read from a file).
    with pd.option_context("mode.copy_on_write", private_input):
        result, report = _normalize(frame, limits or load_limits(), drop_unknown, input_format)
    return result, report


def _normalize(
    frame: pd.DataFrame, limits: C.Limits, drop_unknown: bool, input_format: str | None = None
) -> tuple[pd.DataFrame, NormalizeReport]:
    fmt = input_format or detect_format(frame)
    renamed: dict[str, str] = {}
    report = NormalizeReport(input_format=fmt, rows_in=len(frame), rows_out=0)

    sources: dict[str, str] = {}
    for name in C.CORE_COLUMNS:
        src = _find(frame, name)
        if src is None:
            if name in C.REQUIRED_MEASUREMENTS:
                raise _missing_column_error(name, frame)
            report.absent_columns.append(name)  # e.g. no specific gravity on a VRLA string
            continue
        sources[name] = src
    for name in C.OPTIONAL_NUMERIC:
        src = _find(frame, name)
        if src is not None:
            sources[name] = src

    timestamps = _timestamps(frame, renamed)
    cell_id, device, numbers = _device_and_cell(frame, renamed)

    out: dict[str, Any] = {
        C.CELL_ID: cell_id,
        C.DEVICE_ID: device,
        C.CELL_NUMBER: numbers,
        C.TIMESTAMP: timestamps,
    }
    sensor_fault = np.zeros(len(frame), dtype=bool)
    out_of_range = np.zeros(len(frame), dtype=bool)
    quality_cols: dict[str, pd.Categorical] = {}
    n_rows = len(frame)
    order = [*C.CORE_COLUMNS, *(c for c in sources if c not in C.CORE_COLUMNS)]
    for name in order:
        qcol = C.quality_column(name)
        src = sources.get(name)
        if src is None:  # an absent optional measurement: a column with no value, "missing" everywhere
            out[name] = np.full(n_rows, np.nan)
            quality_cols[qcol] = pd.Categorical.from_codes(np.ones(n_rows, dtype=np.int8), categories=C.QUALITY_LEVELS)
            report.sentinel_by_column[name] = 0
            report.out_of_range_by_column[name] = 0
            report.missing_by_column[name] = n_rows
            continue
        if src != name:
            renamed[src] = name
        values, codes = flag_values(name, _numeric(frame, name, src).to_numpy(copy=True), limits)
        sentinel = codes == 2
        impossible = codes == 3
        if qcol in frame.columns:  # re-normalising: keep what an earlier pass found
            previous = pd.Categorical(frame[qcol], categories=C.QUALITY_LEVELS).codes
            keep = previous > 0
            codes[keep] = previous[keep]
        quality = pd.Categorical.from_codes(codes, categories=C.QUALITY_LEVELS)
        out[name] = values
        quality_cols[qcol] = quality
        sensor_fault |= sentinel
        out_of_range |= impossible
        report.sentinel_by_column[name] = int(sentinel.sum())
        report.out_of_range_by_column[name] = int(impossible.sum())
        report.missing_by_column[name] = int(np.isnan(values).sum())
    for flag, current in ((C.SENSOR_FAULT, sensor_fault), (C.OUT_OF_RANGE, out_of_range)):
        if flag in frame.columns:
            current = current | frame[flag].fillna(False).astype(bool).to_numpy()
        out[flag] = current
    out.update(quality_cols)

    canonical = pd.DataFrame(out, index=frame.index)
    canonical[C.TIMESTAMP] = timestamps
    report.sentinel_rows = int(sensor_fault.sum())
    report.out_of_range_rows = int(out_of_range.sum())

    consumed = set(renamed) | set(sources.values()) | set(canonical.columns)
    labels = [c for c in C.LABEL_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in consumed and c not in labels]
    if drop_unknown:
        rest = []
    result = pd.concat([canonical, frame[labels + rest]], axis=1)

    no_time = result[C.TIMESTAMP].isna()
    report.rows_without_timestamp = int(no_time.sum())
    if report.rows_without_timestamp == len(result):
        raise InputError(
            "no row has a readable timestamp: expected ISO 8601 (2025-05-07T09:12:46) or dd/mm/yyyy + hh:mm:ss"
        )
    if no_time.any():
        result = result.loc[~no_time].reset_index(drop=True)
    elif not isinstance(result.index, pd.RangeIndex) or result.index.start != 0:
        result.index = pd.RangeIndex(len(result))
    report.renamed = {k: v for k, v in renamed.items() if k != v}
    report.rows_out = len(result)
    report.devices = int(result[C.DEVICE_ID].nunique())
    report.cells = int(result[C.CELL_ID].nunique())
    return result, report


def passthrough_columns(names: list[str]) -> list[str] | None:
    """The columns normalisation passes through unread (after the canonical ones and the labels), in input order.

    From the names alone, by the rules of :func:`normalize`: every column except the measurement,
    time, device and cell sources, the canonical names and the labels. ``None`` when normalisation
    would read more than the names tell (a time from the ``Date`` + ``Time`` pair, a canonical table
    that may be passed through as it is).
    """
    if detect_format(pd.DataFrame(columns=names)) == "canonical" or C.find_alias(names, C.TIMESTAMP) is None:
        return None
    consumed = {C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, C.SENSOR_FAULT, C.OUT_OF_RANGE}
    for canonical in (C.TIMESTAMP, C.DEVICE_ID, C.CELL_NUMBER):
        source = C.find_alias(names, canonical)
        if source is not None:
            consumed.add(source)
    measurements = list(C.CORE_COLUMNS)
    for name in (*C.CORE_COLUMNS, *C.OPTIONAL_NUMERIC):
        source = C.find_alias(names, name)
        if source is not None:
            consumed.add(source)
            if name not in measurements:
                measurements.append(name)
    consumed.update(measurements)
    consumed.update(C.quality_column(name) for name in measurements)
    return [c for c in names if c not in consumed and c not in C.LABEL_COLUMNS]


def load_readings(
    path: str | Path,
    limits: C.Limits | None = None,
    drop_unknown: bool = False,
) -> tuple[pd.DataFrame, NormalizeReport]:
    """Read a CSV/Parquet file of either shape and normalise it."""
    return _normalize_frame(read_table(path), limits, drop_unknown, private_input=True)


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True)`` for frames of the same columns, without its slow path.

    pandas checks an all-missing object column (``ProtocolVersion``, ``ServerTime`` of the packet
    format) value by value in Python when it concatenates it (0.3 s per 400k rows); such columns are
    joined with ``np.concatenate`` instead, which keeps every value as it is.
    """
    columns = frames[0].columns
    if len(frames) < 2 or not columns.is_unique or any(not f.columns.equals(columns) for f in frames[1:]):
        return pd.concat(frames, ignore_index=True)
    empty = [c for c in columns if all(f[c].dtype == object for f in frames) and all(f[c].isna().all() for f in frames)]
    if not empty:
        return pd.concat(frames, ignore_index=True)
    result = pd.concat([f.drop(columns=empty) for f in frames], ignore_index=True)
    for name in empty:  # in column order, so each lands at its own position
        result.insert(columns.get_loc(name), name, np.concatenate([f[name].to_numpy() for f in frames]))
    return result


def _sort_key(values: pd.Series) -> np.ndarray:
    """An array that sorts like ``values`` under ``sort_values`` (missing values last)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values.array.asi8
        return np.where(values.isna().to_numpy(), np.iinfo(np.int64).max, stamps)
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iufb":
        return values.to_numpy()  # NumPy sorts NaN last, as pandas does
    codes, uniques = pd.factorize(values, sort=True)
    return np.where(codes < 0, len(uniques), codes)


def sort_readings(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by cell, then time (stable), with a fresh index.

    The same order as ``frame.sort_values([DeviceID, CellNumber, Timestamp], kind="stable")``, from one
    ``np.lexsort`` over integer keys and one copy (``sort_values`` + ``reset_index`` copy twice).
    """
    keys = [_sort_key(frame[name]) for name in (C.TIMESTAMP, C.CELL_NUMBER, C.DEVICE_ID)]
    result = frame.take(np.lexsort(keys))
    result.index = pd.RangeIndex(len(result))
    return result
