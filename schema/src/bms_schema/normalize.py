"""Normalise either input shape (raw 73-column packets, or a minimal table) to the canonical table.

Vectorised throughout: a 1M-row raw packet file normalises in about the time pyarrow
takes to read it (see ``bench/bench_normalize.py``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .errors import InputError
from .reader import read_table

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
            raise InputError(f"BMS_LIMITS is not valid JSON of the form {{\"CellVoltage\": [0, 3]}}: {exc}") from exc
    return limits.with_overrides(overrides)


def detect_format(frame: pd.DataFrame) -> str:
    cols = set(frame.columns)
    if C.quality_column(C.VOLTAGE) in cols and C.CELL_ID in cols:
        return "canonical"
    if sum(m in cols for m in RAW_MARKERS) >= 2:
        return "raw_packet"
    return "minimal"


def _find(frame: pd.DataFrame, canonical: str) -> str | None:
    for alias in C.ALIASES.get(canonical, (canonical,)):
        if alias in frame.columns:
            return alias
    return None


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


def _device_and_cell(frame: pd.DataFrame, renamed: dict[str, str]) -> tuple[pd.Series, pd.Series, pd.Series]:
    device_col = _find(frame, C.DEVICE_ID)
    cell_col = _find(frame, C.CELL_NUMBER)
    if device_col is not None:
        renamed[device_col] = C.DEVICE_ID
        device = frame[device_col].astype("string").fillna("unknown").str.strip()
    else:
        device = pd.Series(DEFAULT_DEVICE, index=frame.index, dtype="string")
    if cell_col is None:
        if C.CELL_ID in frame.columns:  # canonical input without CellNumber
            parts = frame[C.CELL_ID].astype("string").str.rsplit("-", n=1, expand=True)
            device = parts[0]
            cell_col = C.CELL_ID
            cell_text = parts[1]
        else:
            raise _missing_column_error(C.CELL_NUMBER, frame)
    else:
        renamed[cell_col] = C.CELL_NUMBER
        cell_text = frame[cell_col]
    numbers = pd.to_numeric(cell_text, errors="coerce")
    if numbers.isna().any():
        if pd.api.types.is_numeric_dtype(cell_text):
            raise InputError(f"column '{cell_col}' has {int(numbers.isna().sum())} rows with no cell number")
        # Text cell ids ("C3", "B1-07"): the id is kept, numbers are positions per device.
        label = cell_text.astype("string")
        key = device + "\x1f" + label
        codes = key.groupby(device).transform(lambda k: pd.factorize(k, sort=True)[0] + 1)
        numbers = codes.astype("int64")
        cell_id = device + "-" + label
    else:
        if not np.allclose(numbers, np.round(numbers)):
            raise InputError(f"column '{cell_col}' must hold whole cell numbers, found e.g. {numbers[numbers % 1 != 0].iloc[0]}")
        numbers = numbers.astype("int64")
        cell_id = device + "-" + numbers.astype("string")
    return cell_id.astype(object), device.astype(object), numbers


def normalize(
    frame: pd.DataFrame,
    limits: C.Limits | None = None,
    drop_unknown: bool = False,
) -> tuple[pd.DataFrame, NormalizeReport]:
    """Turn a raw-packet, minimal or already-canonical table into the canonical table.

    Sentinels and physically impossible values become NaN, with per-column ``*_Quality``
    codes and the row flags ``SensorFault``/``OutOfRange``. Labels and unknown columns pass
    through unchanged (``drop_unknown=True`` keeps only schema columns and labels).
    """
    if frame.shape[1] == 0 or len(frame) == 0:
        raise InputError("the table has no rows" if frame.shape[1] else "the table has no columns")
    limits = limits or load_limits()
    fmt = detect_format(frame)
    renamed: dict[str, str] = {}
    report = NormalizeReport(input_format=fmt, rows_in=len(frame), rows_out=0)

    sources: dict[str, str] = {}
    for name in C.CORE_COLUMNS:
        src = _find(frame, name)
        if src is None:
            raise _missing_column_error(name, frame)
        sources[name] = src
    for name in C.OPTIONAL_NUMERIC:
        src = _find(frame, name)
        if src is not None:
            sources[name] = src

    timestamps = _timestamps(frame, renamed)
    cell_id, device, numbers = _device_and_cell(frame, renamed)

    out: dict[str, Any] = {
        C.CELL_ID: cell_id.to_numpy(),
        C.DEVICE_ID: device.to_numpy(),
        C.CELL_NUMBER: numbers.to_numpy(),
        C.TIMESTAMP: timestamps,
    }
    sensor_fault = np.zeros(len(frame), dtype=bool)
    out_of_range = np.zeros(len(frame), dtype=bool)
    quality_cols: dict[str, np.ndarray] = {}
    for name, src in sources.items():
        if src != name:
            renamed[src] = name
        values = _numeric(frame, name, src).to_numpy(copy=True)
        quality = np.full(len(values), C.QUALITY_OK, dtype=object)
        missing = np.isnan(values)
        sentinel = np.zeros(len(values), dtype=bool)
        if name in C.SENTINELS:
            sentinel = np.isclose(values, C.SENTINELS[name], rtol=0, atol=1e-3)
        low, high = limits.ranges.get(name, (-np.inf, np.inf))
        with np.errstate(invalid="ignore"):
            impossible = ~sentinel & ~missing & ((values < low) | (values > high))
        quality[missing] = C.QUALITY_MISSING
        quality[sentinel] = C.QUALITY_SENTINEL
        quality[impossible] = C.QUALITY_OUT_OF_RANGE
        qcol = C.quality_column(name)
        if qcol in frame.columns:  # re-normalising: keep what an earlier pass found
            previous = frame[qcol].astype(object).to_numpy()
            keep = pd.notna(previous) & (previous != C.QUALITY_OK)
            quality[keep] = previous[keep]
        values[sentinel | impossible] = np.nan
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
        raise InputError("no row has a readable timestamp: expected ISO 8601 (2025-05-07T09:12:46) or dd/mm/yyyy + hh:mm:ss")
    if no_time.any():
        result = result.loc[~no_time]
    result = result.reset_index(drop=True)
    report.renamed = {k: v for k, v in renamed.items() if k != v}
    report.rows_out = len(result)
    report.devices = int(result[C.DEVICE_ID].nunique())
    report.cells = int(result[C.CELL_ID].nunique())
    return result, report


def load_readings(
    path: str | Path,
    limits: C.Limits | None = None,
    drop_unknown: bool = False,
) -> tuple[pd.DataFrame, NormalizeReport]:
    """Read a CSV/Parquet file of either shape and normalise it."""
    return normalize(read_table(path), limits=limits, drop_unknown=drop_unknown)


def sort_readings(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by cell, then time (stable), with a fresh index."""
    return frame.sort_values([C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP], kind="stable").reset_index(drop=True)
