"""Labels from ``IsDead``: when each cell died, and "dies within the horizon" at each sample point."""

from __future__ import annotations

import numpy as np
import pandas as pd
from bms_schema import InputError
from bms_schema import columns as C

from .features import FeatureGrid, utc_timestamps

DEAD_COLUMN = "IsDead"


def has_dead_labels(frame: pd.DataFrame) -> bool:
    return DEAD_COLUMN in frame.columns and frame[DEAD_COLUMN].notna().any()


def dead_flags(values: pd.Series) -> np.ndarray:
    """``IsDead`` as booleans (1/0, true/false, yes/no); unreadable values are not dead."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values):
        return values.fillna(0).to_numpy(dtype=np.float64) > 0
    text = values.astype("string").str.strip().str.lower()
    numeric = pd.to_numeric(text, errors="coerce")
    known = numeric.notna() | text.isna() | text.isin(["", "true", "yes", "dead", "false", "no", "alive"]).fillna(False)
    if not known.all():
        bad = text[~known]
        raise InputError(
            f"{DEAD_COLUMN} is not a boolean label: {len(bad)} rows hold values such as "
            f"{', '.join(repr(v) for v in bad.unique()[:3])}; use 1/0, true/false or yes/no "
            "(1 from the moment a cell is dead)"
        )
    return (numeric.fillna(0) > 0).to_numpy() | text.isin(["true", "yes", "dead"]).fillna(False).to_numpy()


def death_times(frame: pd.DataFrame) -> pd.Series:
    """Per ``CellID``: the first timestamp with ``IsDead`` set (``NaT`` for cells that never died)."""
    if DEAD_COLUMN not in frame.columns:
        raise InputError(
            f"training needs the label column '{DEAD_COLUMN}' (1 from the moment a cell is dead); the data has "
            f"no such column - pass data with labels, or predict with an already registered model"
        )
    dead = dead_flags(frame[DEAD_COLUMN])
    cells = frame[C.CELL_ID].astype(str)
    ts = utc_timestamps(frame[C.TIMESTAMP])
    first = ts[dead].groupby(cells[dead].to_numpy()).min()
    all_cells = pd.Index(np.sort(cells.unique()))
    return first.reindex(all_cells).rename("DeathTime")


def label_grid(grid: FeatureGrid, deaths: pd.Series, horizon_hours: float) -> pd.DataFrame:
    """Add ``DeathTime``, ``Alive``, ``Known`` and ``Label`` to every row of ``grid.table``.

    At a grid row (cell, time ``t`` = end of the bucket): the cell is alive when it had not died
    by ``t``; ``Label`` is 1 when it dies in ``[t, t + horizon)``. The label is known when the
    death is seen, or when the data reaches ``t + horizon`` (otherwise it is censored).
    """
    table = grid.table
    death = deaths.reindex(table[C.CELL_ID].to_numpy())
    death_ns = death.to_numpy(dtype="datetime64[ns]").astype("int64") if len(death) else np.array([], dtype=np.int64)
    never = death.isna().to_numpy()
    t_ns = table[C.TIMESTAMP].array.asi8
    horizon_ns = int(round(horizon_hours * 3_600_000_000_000))
    end_ns = grid.data_end.value
    alive = never | (death_ns >= t_ns)
    positive = ~never & alive & (death_ns < t_ns + horizon_ns)
    known = alive & (positive | (t_ns + horizon_ns <= end_ns))
    out = table.copy()
    out["DeathTime"] = pd.to_datetime(death.to_numpy(), utc=True)
    out["Alive"] = alive
    out["Known"] = known
    out["Label"] = positive.astype(np.int8)
    return out


def sampling_points(labelled: pd.DataFrame, grid: FeatureGrid) -> np.ndarray:
    """Rows every ``sample_every_hours`` (aligned across cells) with at least ``min_history_hours`` of history."""
    config = grid.config
    every = config.buckets(config.sample_every_hours)
    aligned = ((labelled["Bucket"].to_numpy() + 1) % every) == 0
    return aligned & (labelled["HistoryHours"].to_numpy() >= config.min_history_hours)


def sample_rows(labelled: pd.DataFrame, grid: FeatureGrid) -> pd.DataFrame:
    """Training/evaluation samples: the sampling points where the cell is alive and the label known."""
    mask = sampling_points(labelled, grid) & labelled["Alive"].to_numpy() & labelled["Known"].to_numpy()
    return labelled.loc[mask].reset_index(drop=True)
