"""Vectorised per-cell operations on a frame sorted by cell, then time.

Every function here takes plain NumPy arrays plus ``starts``: for each row, the
position of the first row of its cell (see :func:`cell_starts`). Windows, shifts and
interpolation never reach across that boundary, and nothing loops over rows or cells
in Python. Results are bit-identical however the rows of one cell are split into
chunks, as long as each chunk is prefixed with the previous ``window - 1`` rows of the
cell (the streaming code does exactly that).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """Reading times as float seconds since the epoch (UTC), without a per-row conversion."""
    ts = timestamps
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(ts):
        ts = pd.to_datetime(ts, utc=True)
    return ts.dt.as_unit("ns").array.asi8.astype(np.float64) / 1e9


def cell_starts(cell_ids: pd.Series | np.ndarray) -> np.ndarray:
    """For each row of a cell-sorted column, the index of its cell's first row."""
    values = np.asarray(cell_ids)
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = values[1:] != values[:-1]
    first = np.where(new, np.arange(n, dtype=np.int64), 0)
    return np.maximum.accumulate(first)


def cell_ends(starts: np.ndarray) -> np.ndarray:
    """For each row, the index of its cell's last row (``starts`` from :func:`cell_starts`)."""
    n = len(starts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    last = np.empty(n, dtype=bool)
    last[-1] = True
    last[:-1] = starts[1:] != starts[:-1]
    marks = np.where(last, np.arange(n, dtype=np.int64), n)
    return np.minimum.accumulate(marks[::-1])[::-1]


def previous(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The previous row's value within the cell (NaN on a cell's first row)."""
    out = np.empty(len(values), dtype=np.float64)
    if len(values) == 0:
        return out
    out[0] = np.nan
    out[1:] = values[:-1]
    out[np.arange(len(values)) == starts] = np.nan
    return out


def window_matrix(values: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """``(n, window)`` matrix: row ``i`` holds the last ``window`` values of its cell up to ``i``.

    Positions before the cell's first row are NaN. Memory is ``n * window`` floats, so callers
    process long tables in blocks (see :func:`rolling_mean_std`).
    """
    n = len(values)
    idx = np.arange(n, dtype=np.int64)[:, None] - np.arange(window - 1, -1, -1, dtype=np.int64)[None, :]
    valid = idx >= starts[:, None]
    out = values[np.clip(idx, 0, None)]
    out[~valid] = np.nan
    return out


def rolling_mean_std(
    values: np.ndarray, starts: np.ndarray, window: int, block: int = 262_144
) -> tuple[np.ndarray, np.ndarray]:
    """Trailing rolling mean and sample std (ddof=1) over the last ``window`` readings of each cell.

    Missing values are skipped. The mean needs one value in the window (NaN if none); the std
    is 0.0 when the window holds a single value (a cell's first reading).
    """
    n = len(values)
    mean = np.empty(n, dtype=np.float64)
    std = np.empty(n, dtype=np.float64)
    for lo in range(0, n, block):  # blocks bound memory to block * window floats, not a per-row loop
        hi = min(n, lo + block)
        base = max(0, lo - window + 1)
        local_starts = np.maximum(starts[base:hi] - base, 0)
        mat = window_matrix(values[base:hi], local_starts, window)[lo - base :]
        count = np.sum(~np.isnan(mat), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.nansum(mat, axis=1)
            m = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            dev = mat - m[:, None]
            ss = np.nansum(dev * dev, axis=1)
            s = np.where(count > 1, np.sqrt(ss / np.maximum(count - 1, 1)), np.where(count == 1, 0.0, np.nan))
        mean[lo:hi] = m
        std[lo:hi] = s
    return mean, std


def forward_fill(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Carry the last non-missing value forward within each cell (never across cells)."""
    n = len(values)
    if n == 0:
        return values.astype(np.float64)
    pos = np.where(~np.isnan(values), np.arange(n, dtype=np.int64), -1)
    prev = np.maximum.accumulate(pos)
    ok = prev >= starts
    out = np.full(n, np.nan)
    out[ok] = values[prev[ok]]
    return out


def interpolate_time(values: np.ndarray, seconds: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-cell linear interpolation in time; edges filled with the nearest value of the same cell.

    ``seconds`` is the reading time as float seconds. A cell with no value at all stays NaN.
    """
    n = len(values)
    if n == 0:
        return values.astype(np.float64)
    ends = cell_ends(starts)
    valid = ~np.isnan(values)
    idx = np.arange(n, dtype=np.int64)
    prev = np.maximum.accumulate(np.where(valid, idx, -1))
    nxt = np.minimum.accumulate(np.where(valid, idx, n)[::-1])[::-1]
    has_prev = prev >= starts
    has_next = (nxt <= ends) & (nxt < n)
    out = values.astype(np.float64, copy=True)
    gap = ~valid
    both = gap & has_prev & has_next
    p, q = prev[both], nxt[both]
    span = seconds[q] - seconds[p]
    frac = np.divide(seconds[both] - seconds[p], span, out=np.zeros(len(p)), where=span > 0)
    out[both] = values[p] + (values[q] - values[p]) * frac
    only_prev = gap & has_prev & ~has_next
    out[only_prev] = values[prev[only_prev]]
    only_next = gap & ~has_prev & has_next
    out[only_next] = values[nxt[only_next]]
    return out


class StringGroups:
    """Rows grouped by string and time (same device, same timestamp), built once per table.

    With ``needed`` (a row mask), medians are computed only for the groups holding a needed
    row (the live service: the request's timestamps, not the whole remembered history); other
    rows get NaN. Rows need not be sorted.
    """

    def __init__(self, devices: np.ndarray, ts: np.ndarray, needed: np.ndarray | None = None):
        self.n = len(ts)
        codes, _ = pd.factorize(devices)
        order = np.lexsort((ts, codes))
        c, t = codes[order], ts[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (c[1:] != c[:-1]) | (t[1:] != t[:-1])
        group = np.empty(len(order), dtype=np.int64)
        group[order] = np.cumsum(new) - 1
        self.rows: np.ndarray | None
        if needed is None:
            self.rows = None
            self.group = group
        else:
            wanted = np.zeros(int(new.sum()), dtype=bool)
            wanted[group[needed]] = True
            self.rows = np.flatnonzero(wanted[group])
            _, self.group = np.unique(group[self.rows], return_inverse=True)
        self.n_groups = int(self.group.max()) + 1 if len(self.group) else 0

    def median(self, values: np.ndarray) -> np.ndarray:
        """Median of ``values`` within each group, NaN skipped (pandas' groupby median)."""
        subset = values if self.rows is None else values[self.rows]
        n = len(subset)
        if n == 0:
            return np.full(self.n, np.nan)
        missing = np.isnan(subset)
        order = np.lexsort((np.where(missing, np.inf, subset), self.group))
        first = np.searchsorted(self.group[order], np.arange(self.n_groups))
        valid = np.bincount(self.group, weights=(~missing).astype(np.float64), minlength=self.n_groups)
        valid = valid.astype(np.int64)
        sorted_values = subset[order]
        lo = first + np.maximum(valid - 1, 0) // 2
        hi = np.minimum(first + valid // 2, n - 1)
        med = np.where(valid > 0, (sorted_values[lo] + sorted_values[hi]) / 2, np.nan)
        if self.rows is None:
            return med[self.group]
        out = np.full(self.n, np.nan)
        out[self.rows] = med[self.group]
        return out


def string_median(devices: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Median of ``values`` over rows with the same (device, time), NaN skipped (pandas' rule)."""
    return StringGroups(devices, ts).median(values)
