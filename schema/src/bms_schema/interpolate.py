"""Per-cell interpolation of missing measurements, and the ``<col>_Imputed`` flags every imputer sets.

Only measurement columns are imputed (``CellVoltage``, ``CellTemperature``,
``CellSpecificGravity``, ``InstantaneousCurrent``, ``AmbientTemperature`` and
``StringVoltage`` when present); labels (``IsDead``, ``IsAnomaly``, ``AnomalyType``) and
unknown columns are never touched. Every imputed column gets a boolean ``<col>_Imputed``
flag, true where the value was filled in. (MICE imputation lives in the preprocessing server,
its MICE imputer, and builds on these helpers.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import columns as C
from .clean import measurement_columns
from .grouped import cell_starts, epoch_seconds, interpolate_time

IMPUTED_SUFFIX = "_Imputed"


def imputed_column(name: str) -> str:
    return f"{name}{IMPUTED_SUFFIX}"


def impute_columns(frame: pd.DataFrame) -> list[str]:
    """The columns imputation fills: measurements present in the frame, never labels."""
    return [c for c in measurement_columns(frame) if c not in C.LABEL_COLUMNS]


def add_imputed_flags(frame: pd.DataFrame, before: dict[str, np.ndarray]) -> pd.DataFrame:
    """Set ``<col>_Imputed`` = was missing before and has a value now (OR-ed with an existing flag)."""
    for name, was_missing in before.items():
        flag = was_missing & frame[name].notna().to_numpy()
        col = imputed_column(name)
        if col in frame.columns:
            flag = flag | frame[col].fillna(False).astype(bool).to_numpy()
        frame[col] = flag
    return frame


def interpolate_readings(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """Fill gaps per cell by linear interpolation in time, then the cell's nearest value at the edges.

    ``frame`` must be sorted by cell, then time (the output of ``clean_readings``). A cell
    with no value at all in a column keeps NaN there (the MICE method can fill it from the
    other columns). Returns a copy with ``<col>_Imputed`` flags.
    """
    columns = impute_columns(frame) if columns is None else columns
    out = frame.copy()
    starts = cell_starts(out[C.CELL_ID])
    seconds = epoch_seconds(out[C.TIMESTAMP])
    before: dict[str, np.ndarray] = {}
    for name in columns:
        values = out[name].to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        before[name] = missing
        if missing.any():
            out[name] = interpolate_time(values, seconds, starts)
    return add_imputed_flags(out, before)
