"""Input coverage: which measurements each cell actually has, so no model answers from no data.

A model that scores a cell whose inputs are all missing still produces a number - from its
defaults, its imputation or the peers - and reports it as confidently as any other. Every
scoring and training path calls this module first:

- :func:`input_coverage` counts, per cell, the readings that carry a value of each measurement
  (missing, sentinel and out-of-range values are already missing in the canonical table);
- :func:`require_inputs` refuses to train on (or score) a table in which a required
  measurement has no value at all, naming the column;
- :func:`mark_unknown` turns the rows of a per-cell result whose cell lacks a required input
  into "unknown" (probability missing, band ``unknown``, the missing inputs named).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .errors import InputError

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Coverage:
    """Per cell: readings, and readings with a value of each measurement (``counts``, index ``CellID``)."""

    columns: tuple[str, ...]
    rows: pd.Series
    counts: pd.DataFrame

    def missing_by_cell(self, required: Sequence[str] | None = None) -> dict[str, list[str]]:
        """``{cell: [required measurements with no value for that cell]}`` for cells lacking any."""
        required = list(required or self.columns)
        has = self.counts[required].to_numpy() > 0
        out: dict[str, list[str]] = {}
        for cell, row in zip(self.counts.index.astype(str), has):
            if not row.all():
                out[cell] = [name for name, ok in zip(required, row) if not ok]
        return out

    def empty_columns(self) -> list[str]:
        """Measurements with no value in any cell."""
        totals = self.counts.sum(axis=0)
        return [c for c in self.columns if int(totals[c]) == 0]

    def summary(self) -> dict[str, Any]:
        totals = self.counts.sum(axis=0)
        return {
            "cells": int(len(self.counts)),
            "rows": int(self.rows.sum()),
            "values": {c: int(totals[c]) for c in self.columns},
            "empty": self.empty_columns(),
        }


def _cell_ids(frame: pd.DataFrame) -> pd.Series:
    if C.CELL_ID in frame.columns:
        return frame[C.CELL_ID].astype(str)
    if C.DEVICE_ID in frame.columns and C.CELL_NUMBER in frame.columns:
        return frame[C.DEVICE_ID].astype(str) + "-" + frame[C.CELL_NUMBER].astype(str)
    raise InputError(
        "the table has no cell id (CellID, or DeviceID + CellNumber): cannot tell which cell a reading belongs to"
    )


def input_coverage(frame: pd.DataFrame, measurements: Sequence[str] = C.CORE_COLUMNS) -> Coverage:
    """Count, per cell, the readings with a (finite) value of each measurement; absent columns count 0."""
    cells = _cell_ids(frame)
    values = {}
    for name in measurements:
        if name in frame.columns:
            numeric = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            values[name] = np.isfinite(numeric)
        else:
            values[name] = np.zeros(len(frame), dtype=bool)
    present = pd.DataFrame(values, index=frame.index)
    grouped = present.groupby(cells.to_numpy(), sort=True)
    counts = grouped.sum().astype(np.int64)
    counts.index.name = C.CELL_ID
    return Coverage(columns=tuple(measurements), rows=grouped.size(), counts=counts)


def require_inputs(
    frame: pd.DataFrame, required: Sequence[str], what: str, measurements: Sequence[str] = C.CORE_COLUMNS
) -> Coverage:
    """Refuse with :class:`InputError` when a ``required`` measurement has no value at all in ``frame``.

    ``what`` says what would have been done ("train the failure model"). Returns the coverage.
    """
    coverage = input_coverage(frame, tuple(dict.fromkeys([*required, *measurements])))
    if len(frame) == 0:
        raise InputError(f"cannot {what}: the table has no readings")
    empty = [c for c in required if c in coverage.empty_columns()]
    if empty:
        absent = [c for c in empty if c not in frame.columns]
        detail = (
            f"column(s) {', '.join(absent)} are not in the table"
            if absent and len(absent) == len(empty)
            else f"column(s) {', '.join(empty)} have no value in any of the {len(frame)} readings "
            f"({coverage.counts.shape[0]} cells; empty, 0xFFFF sentinels or impossible values)"
        )
        raise InputError(f"cannot {what}: {detail}. It needs {', '.join(required)}: provide readings that carry them")
    return coverage


def mark_unknown(
    table: pd.DataFrame,
    coverage: Coverage,
    required: Sequence[str],
    *,
    probability: str | None = None,
    band: str | None = None,
    reasons: str | None = None,
    keep: pd.Series | None = None,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Mark rows of a per-cell result whose cell lacks a required input as unknown.

    ``probability`` columns are set missing, ``band`` to ``"unknown"``, ``reasons`` to a sentence
    naming the missing inputs. ``keep`` (boolean per row) exempts rows (e.g. cells known dead from
    their labels). Returns the new table and ``{cell: missing inputs}`` of the rows marked.
    """
    missing = coverage.missing_by_cell(required)
    ids = _cell_ids(table)
    rows = ids.map(lambda cell: cell in missing).to_numpy(dtype=bool)  # one lookup per cell, not per reading
    if keep is not None:
        rows &= ~keep.to_numpy(dtype=bool)
    out = table.copy()
    marked = {cell: missing[cell] for cell in ids[rows]}
    if rows.any():
        if probability is not None:
            out[probability] = out[probability].astype(np.float64)
            out.loc[rows, probability] = np.nan
        if band is not None:
            out[band] = out[band].astype(object)
            out.loc[rows, band] = UNKNOWN
        if reasons is not None:
            out[reasons] = out[reasons].astype(object)
            out.loc[rows, reasons] = [f"unknown: no {', '.join(missing[c])} reading for this cell" for c in ids[rows]]
    return out, marked


def dropped_rows_warning(path: Any, rows_in: int, conflicts: int) -> str | None:
    """Say why rows were dropped as conflicting readings when the cause is an id the user can fix.

    Conflicts (two different readings for one cell at one time) mostly come from ids that do not
    tell cells apart: an empty ``DeviceID`` puts every device's cell 3 into one cell, a
    ``CellNumber`` that is not a number cannot be told apart either. Reads only the id columns.
    """
    if conflicts <= 0:
        return None
    from .reader import column_names, read_table

    causes = []
    try:
        names = column_names(path)
        device = next((a for a in C.ALIASES.get(C.DEVICE_ID, (C.DEVICE_ID,)) if a in names), None)
        cell = next((a for a in C.ALIASES.get(C.CELL_NUMBER, (C.CELL_NUMBER,)) if a in names), None)
        ids = read_table(path, columns=[c for c in (device, cell) if c]) if (device or cell) else None
    except Exception:  # the warning is a courtesy: never fail a finished call over it
        ids = None
    if ids is not None:
        if device is not None:
            empty = int(ids[device].isna().sum() + ids[device].astype(str).str.strip().eq("").sum())
            if empty:
                causes.append(
                    f"{device} is empty in {empty} of {len(ids)} rows (their cells of different devices "
                    "collide: fill in DeviceID, or split the file by device)"
                )
        if cell is not None:
            text = pd.to_numeric(ids[cell], errors="coerce").isna() & ids[cell].notna()
            if int(text.sum()):
                causes.append(
                    f"{cell} is not a number in {int(text.sum())} rows (e.g. {ids.loc[text, cell].iloc[0]!r}): "
                    "give each cell its number"
                )
    share = f"{conflicts} of {rows_in} rows ({100.0 * conflicts / max(rows_in, 1):.1f}%)"
    if causes:
        return f"{share} were dropped as conflicting readings of one cell at one time because {'; '.join(causes)}."
    return (
        f"{share} were dropped as conflicting readings of one cell at one time (same cell and timestamp, "
        "different values): check the cell ids and timestamps of the input."
    )
