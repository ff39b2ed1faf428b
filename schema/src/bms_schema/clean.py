"""Clean step: normalise, drop duplicate packets, sort by cell then time, data-quality report.

Sentinels (0xFFFF registers) and physically impossible values are turned into missing
values by :func:`bms_schema.normalize`, which also writes the ``<core>_Quality`` codes and
the ``SensorFault``/``OutOfRange`` row flags; this module counts them per reason and per
cell. Columns the schema does not know pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .columns import Limits
from .errors import InputError
from .normalize import _normalize_frame, detect_format, load_limits, sort_readings

log = logging.getLogger("bms.core")

#: An interval longer than this many times the cell's median interval counts as a gap.
GAP_FACTOR = 3.0


def measurement_columns(frame: pd.DataFrame) -> list[str]:
    """The core measurements plus the optional ones present in ``frame``."""
    return [c for c in (*C.CORE_COLUMNS, *C.OPTIONAL_NUMERIC) if c in frame.columns]


def is_canonical(frame: pd.DataFrame, input_format: str | None = None) -> bool:
    """Canonical columns *and* dtypes (a canonical table read back from CSV has text timestamps)."""
    if (input_format or detect_format(frame)) != "canonical" or not all(
        c in frame.columns for c in (*C.ID_COLUMNS, *C.CORE_COLUMNS)
    ):
        return False
    return (
        isinstance(frame[C.TIMESTAMP].dtype, pd.DatetimeTZDtype)
        and pd.api.types.is_integer_dtype(frame[C.CELL_NUMBER])
        and all(pd.api.types.is_float_dtype(frame[c]) for c in C.CORE_COLUMNS)
    )


def to_canonical(
    frame: pd.DataFrame,
    limits: Limits | dict[str, tuple[float, float]] | None = None,
    input_format: str | None = None,
    private_input: bool = False,
) -> pd.DataFrame:
    """Normalise ``frame`` unless it already is canonical and no new limits were asked for.

    ``input_format`` (from :func:`bms_schema.normalize.detect_format`) saves detecting it again;
    ``private_input=True`` lets normalisation share columns with a frame no caller holds.
    """
    if isinstance(limits, dict):
        limits = load_limits(limits)
    if limits is None and is_canonical(frame, input_format):
        if len(frame) == 0:
            raise InputError("the table has no rows")
        return frame
    canonical, _ = _normalize_frame(frame, limits, False, private_input=private_input, input_format=input_format)
    return canonical


def drop_duplicates(
    frame: pd.DataFrame, compare: Callable[[pd.DataFrame], pd.DataFrame] | None = None
) -> tuple[pd.DataFrame, int, int]:
    """Drop exact duplicate packets, then keep the first of conflicting rows for one (cell, time).

    An exact duplicate is identical in every column. Two different rows for the same cell and
    timestamp (a resent packet with other values) cannot both be the reading, so the first one
    in file order is kept and the rest are counted as conflicts. Only rows sharing a
    (cell, timestamp) key are compared column by column, so this stays cheap on big tables.
    ``compare`` gives, for rows sharing a key, the frame whose rows are compared (the streaming
    engine holds the pass-through columns apart and joins them back here). Returns
    ``(frame, exact_duplicates, conflicting)``.
    """
    key = [C.CELL_ID, C.TIMESTAMP]
    same_key = frame.duplicated(key, keep=False)
    if not same_key.any():
        return frame, 0, 0
    candidates = frame.loc[same_key]
    exact = (candidates if compare is None else compare(candidates)).duplicated(keep="first")
    drop = pd.Series(False, index=frame.index)
    drop.loc[exact.index[exact.to_numpy()]] = True
    kept = frame.loc[~drop]
    conflicting = kept.duplicated(key, keep="first")
    n_conflicts = int(conflicting.sum())
    if n_conflicts:
        from .notices import count  # told to the user in the tool call's message (harden)

        no_device = (
            int((kept.loc[conflicting, C.DEVICE_ID].astype(str) == "unknown").sum())
            if C.DEVICE_ID in kept.columns
            else 0
        )
        count("conflicting_rows", dropped=n_conflicts, rows=len(frame), no_device=no_device)
        log.warning("%d rows share a cell and timestamp with another row but differ: kept the first", n_conflicts)
        kept = kept.loc[~conflicting]
    return kept, int(exact.sum()), n_conflicts


def quality_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per measurement column, how many rows are ok / missing / sentinel / out_of_range."""
    out: dict[str, dict[str, int]] = {}
    for name in measurement_columns(frame):
        qcol = C.quality_column(name)
        if qcol in frame.columns:
            counts = frame[qcol].value_counts()
            out[name] = {code: int(counts.get(code, 0)) for code in C.QUALITY_LEVELS}
        else:
            missing = int(frame[name].isna().sum())
            out[name] = {
                C.QUALITY_OK: len(frame) - missing,
                C.QUALITY_MISSING: missing,
                C.QUALITY_SENTINEL: 0,
                C.QUALITY_OUT_OF_RANGE: 0,
            }
    return out


def reading_intervals(frame: pd.DataFrame) -> np.ndarray:
    """Seconds since the previous reading of the same cell (NaN on a cell's first row); frame cell-sorted."""
    from .grouped import cell_starts, epoch_seconds, previous

    seconds = epoch_seconds(frame[C.TIMESTAMP])
    return seconds - previous(seconds, cell_starts(frame[C.CELL_ID]))


class QualityAccumulator:
    """Collects data-quality counts block by block; :meth:`report` gives the same dict for any blocking."""

    def __init__(self, gap_factor: float = GAP_FACTOR, input_format: str = "unknown"):
        self.gap_factor = gap_factor
        self.input_format = input_format
        self.rows_in = 0
        self.duplicates = 0
        self.conflicts = 0
        self.forced_flushes = 0
        self._cells: list[pd.DataFrame] = []
        self._intervals: list[pd.DataFrame] = []
        self._quality: dict[str, dict[str, int]] = {}
        self._missing: dict[str, int] = {}
        self._tmin: pd.Timestamp | None = None
        self._tmax: pd.Timestamp | None = None

    def add(self, block: pd.DataFrame, intervals: np.ndarray) -> None:
        """Count one cleaned, cell-sorted block; ``intervals`` from :func:`reading_intervals` (with context)."""
        if len(block) == 0:
            return
        n = len(block)
        fault = block[C.SENSOR_FAULT].to_numpy(dtype=bool) if C.SENSOR_FAULT in block.columns else np.zeros(n, bool)
        oor = block[C.OUT_OF_RANGE].to_numpy(dtype=bool) if C.OUT_OF_RANGE in block.columns else np.zeros(n, bool)
        per = pd.DataFrame(
            {
                "cell": block[C.CELL_ID].to_numpy(),
                "device": block[C.DEVICE_ID].to_numpy(),
                "number": block[C.CELL_NUMBER].to_numpy(),
                "rows": 1,
                "sentinel_rows": fault,
                "out_of_range_rows": oor,
            }
        )
        self._cells.append(per.groupby(["device", "number", "cell"], sort=False).sum().reset_index())
        self._intervals.append(pd.DataFrame({"cell": block[C.CELL_ID].to_numpy(), "delta": intervals}))
        for name, counts in quality_counts(block).items():
            total = self._quality.setdefault(name, dict.fromkeys(counts, 0))
            for code, value in counts.items():
                total[code] = total.get(code, 0) + value
            self._missing[name] = self._missing.get(name, 0) + int(block[name].isna().sum())
        tmin, tmax = block[C.TIMESTAMP].min(), block[C.TIMESTAMP].max()
        self._tmin = tmin if self._tmin is None else min(self._tmin, tmin)
        self._tmax = tmax if self._tmax is None else max(self._tmax, tmax)

    @property
    def rows_out(self) -> int:
        return int(sum(len(d) for d in self._intervals))

    def valid_counts(self) -> dict[str, int]:
        return {name: counts.get(C.QUALITY_OK, 0) for name, counts in self._quality.items()}

    def report(self) -> dict[str, Any]:
        cells = pd.concat(self._cells, ignore_index=True).groupby(["device", "number", "cell"], sort=True).sum()
        device_level = cells.index.get_level_values("device")
        devices = device_level.nunique()
        per_device = pd.Series(device_level).value_counts()
        single = sorted(str(d) for d in per_device.index[per_device.to_numpy() == 1])
        cells = cells.reset_index(level=["device", "number"], drop=True)
        intervals = pd.concat(self._intervals, ignore_index=True)
        median = intervals.groupby("cell", sort=False)["delta"].transform("median")
        intervals["gap"] = intervals["delta"] > self.gap_factor * median
        gaps = intervals.groupby("cell", sort=False).agg(
            median_interval_s=("delta", "median"), gaps=("gap", "sum"), longest_interval_s=("delta", "max")
        )
        cells = cells.join(gaps)
        cells["sentinel_rate"] = (cells["sentinel_rows"] / cells["rows"]).round(6)
        quality = self._quality
        no_value = [name for name, counts in quality.items() if counts.get(C.QUALITY_OK, 0) == 0]
        from .features import PEER_FALLBACK, skipped_features

        return {
            "input_format": self.input_format,
            "rows_in": int(self.rows_in),
            "rows_out": int(cells["rows"].sum()),
            "duplicates_dropped": int(self.duplicates),
            "conflicting_rows_dropped": int(self.conflicts),
            "devices": int(devices),  # not parsed from CellID: a text cell id may hold a "-"
            "cells": int(len(cells)),
            "time_range": [self._tmin, self._tmax],
            "sentinel_rows": int(cells["sentinel_rows"].sum()),
            "out_of_range_rows": int(cells["out_of_range_rows"].sum()),
            "sentinel_by_column": {c: v[C.QUALITY_SENTINEL] for c, v in quality.items()},
            "out_of_range_by_column": {c: v[C.QUALITY_OUT_OF_RANGE] for c, v in quality.items()},
            "missing_by_column": dict(self._missing),
            "quality_by_column": quality,
            "gap_factor": self.gap_factor,
            "time_gaps": int(cells["gaps"].sum()),
            "streaming_forced_flushes": int(self.forced_flushes),
            "single_cell_strings": single,
            "peer_fallback": PEER_FALLBACK if single else None,
            "measurements_present": [name for name in quality if name not in no_value],
            "measurements_without_value": no_value,
            "skipped_features": skipped_features(no_value),
            "per_cell": {
                str(cell): {
                    "rows": int(row.rows),
                    "sentinel_rows": int(row.sentinel_rows),
                    "sentinel_rate": float(row.sentinel_rate),
                    "out_of_range_rows": int(row.out_of_range_rows),
                    "median_interval_s": None if pd.isna(row.median_interval_s) else float(row.median_interval_s),
                    "gaps": int(row.gaps),
                    "longest_interval_s": None if pd.isna(row.longest_interval_s) else float(row.longest_interval_s),
                }
                for cell, row in cells.iterrows()  # one entry per cell (tens to thousands), not per row
            },
        }


def quality_report(
    frame: pd.DataFrame,
    rows_in: int,
    duplicates: int,
    conflicts: int,
    input_format: str,
    gap_factor: float = GAP_FACTOR,
) -> dict[str, Any]:
    """The data-quality report of a cleaned, cell-sorted canonical frame (JSON-ready dict)."""
    acc = QualityAccumulator(gap_factor, input_format)
    acc.rows_in, acc.duplicates, acc.conflicts = rows_in, duplicates, conflicts
    acc.add(frame, reading_intervals(frame))
    return acc.report()


def check_usable(frame: pd.DataFrame) -> None:
    """Refuse tables no later step can work with: a single row, or a required measurement
    (``columns.REQUIRED_MEASUREMENTS``) with no value at all. Optional ones may have none."""
    if len(frame) < 2:
        raise InputError(
            f"the table has only {len(frame)} row after cleaning: preprocessing needs at least 2 readings "
            "(rates and rolling features compare a reading with the previous one)"
        )
    for name in C.REQUIRED_MEASUREMENTS:
        if frame[name].isna().all():
            qcol = C.quality_column(name)
            why = ""
            if qcol in frame.columns:
                codes = frame[qcol].value_counts().to_dict()
                why = " (" + ", ".join(f"{k}: {v}" for k, v in codes.items()) + ")"
            raise InputError(
                f"column '{name}' has no usable value in any of the {len(frame)} rows{why}: nothing to impute from"
            )


def clean_readings(
    frame: pd.DataFrame,
    limits: Limits | dict[str, tuple[float, float]] | None = None,
    gap_factor: float = GAP_FACTOR,
    check: bool = True,
    *,
    input_format: str | None = None,
    private_input: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Normalise (if needed), drop duplicate packets, sort by cell then time; return ``(frame, report)``.

    ``limits`` overrides the physical limits (``{"CellVoltage": (1.5, 2.8)}`` or a
    :class:`bms_schema.Limits`). ``check`` refuses a single-row table or a core column with
    no value at all (:class:`bms_schema.InputError`). ``input_format`` saves detecting the
    format again; ``private_input=True`` (a frame just read from a file) lets normalisation
    share its columns instead of copying them.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"clean_readings needs a pandas DataFrame, got {type(frame).__name__}")
    rows_in = len(frame)
    fmt = input_format or (detect_format(frame) if frame.shape[1] else "empty")
    canonical = to_canonical(frame, limits, input_format=fmt if fmt != "empty" else None, private_input=private_input)
    deduped, duplicates, conflicts = drop_duplicates(canonical)
    cleaned = sort_readings(deduped)
    if check:
        check_usable(cleaned)
    report = quality_report(cleaned, rows_in, duplicates, conflicts, fmt, gap_factor)
    log.info(
        "cleaned %d rows -> %d (%d duplicates, %d sentinel rows)",
        rows_in,
        len(cleaned),
        duplicates,
        report["sentinel_rows"],
    )
    return cleaned, report


def merge_quality_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One :meth:`QualityAccumulator.report` from the reports of disjoint sets of devices.

    The Dask engine cleans each device on its own worker; a cell belongs to one device, so every
    per-cell figure is exact per part and the totals are sums. Gives the dict the one-pass
    report gives for the union of the rows (``per_cell`` in the parts' order).
    """
    from .features import PEER_FALLBACK, skipped_features

    if not reports:
        raise InputError("no partition reports to merge")
    first = reports[0]
    total: dict[str, Any] = {"input_format": first["input_format"]}
    for key in ("rows_in", "rows_out", "duplicates_dropped", "conflicting_rows_dropped", "devices", "cells"):
        total[key] = int(sum(r[key] for r in reports))
    starts = [r["time_range"][0] for r in reports if r["time_range"][0] is not None]
    ends = [r["time_range"][1] for r in reports if r["time_range"][1] is not None]
    total["time_range"] = [min(starts) if starts else None, max(ends) if ends else None]
    total["sentinel_rows"] = int(sum(r["sentinel_rows"] for r in reports))
    total["out_of_range_rows"] = int(sum(r["out_of_range_rows"] for r in reports))
    quality: dict[str, dict[str, int]] = {}
    missing: dict[str, int] = {}
    for r in reports:
        for name, counts in r["quality_by_column"].items():
            into = quality.setdefault(name, dict.fromkeys(counts, 0))
            for code, value in counts.items():
                into[code] = into.get(code, 0) + int(value)
        for name, value in r["missing_by_column"].items():
            missing[name] = missing.get(name, 0) + int(value)
    total["sentinel_by_column"] = {c: v[C.QUALITY_SENTINEL] for c, v in quality.items()}
    total["out_of_range_by_column"] = {c: v[C.QUALITY_OUT_OF_RANGE] for c, v in quality.items()}
    total["missing_by_column"] = missing
    total["quality_by_column"] = quality
    total["gap_factor"] = first["gap_factor"]
    total["time_gaps"] = int(sum(r["time_gaps"] for r in reports))
    total["streaming_forced_flushes"] = int(sum(r["streaming_forced_flushes"] for r in reports))
    single = sorted(s for r in reports for s in r["single_cell_strings"])
    total["single_cell_strings"] = single
    total["peer_fallback"] = PEER_FALLBACK if single else None
    no_value = [name for name, counts in quality.items() if counts.get(C.QUALITY_OK, 0) == 0]
    total["measurements_present"] = [name for name in quality if name not in no_value]
    total["measurements_without_value"] = no_value
    total["skipped_features"] = skipped_features(no_value)
    total["per_cell"] = {cell: row for r in reports for cell, row in r["per_cell"].items()}
    return total
