"""The readings of many cells as one regular-grid panel of flat NumPy arrays.

Every device gets a time grid (its first timestamp, its median sampling step); each reading
goes to the nearest grid slot, duplicates in a slot are averaged, dropped packets become
empty slots. All cells are then laid end to end in flat arrays (``start``/``length`` per
cell), so lags are exact in time and every feature is a vectorised gather.

Missing values (sentinels, impossible values, empty slots) are forward-filled within the
cell, never interpolated from later readings: a forecast origin sees only its past, so the
backtest is honest. ``observed`` marks the real readings; only those are used as training
targets and as backtest actuals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from bms_schema import InputError, grouped
from bms_schema import columns as C

from .config import DAY_SECONDS, FALLBACK_LONG_WINDOW, MAX_SEASONAL_STEP_SECONDS, TARGETS

log = logging.getLogger("bms.forecast")

#: Refuse grids that would be this many times larger than the readings (huge gaps, mixed clocks).
MAX_GRID_EXPANSION = 50


@dataclass
class Panel:
    """Cells laid end to end on regular time grids (see the module docstring)."""

    targets: list[str]
    cell_ids: np.ndarray  # (n_cells,) canonical CellID
    device_ids: np.ndarray  # (n_cells,)
    cell_numbers: np.ndarray  # (n_cells,) int
    start: np.ndarray  # (n_cells,) first flat position of each cell
    length: np.ndarray  # (n_cells,) grid slots of each cell
    readings: np.ndarray  # (n_cells,) readings (rows with a timestamp) of each cell
    step_seconds: np.ndarray  # (n_cells,) sampling step of the cell's device
    period: np.ndarray  # (n_cells,) grid steps per day, 0 when the step is too coarse for a daily cycle
    long_window: np.ndarray  # (n_cells,) readings in the long rolling window (a day, else a fallback)
    cell: np.ndarray  # (n,) cell index of each flat position
    time_s: np.ndarray  # (n,) POSIX seconds of each flat position
    values: dict[str, np.ndarray]  # (n,) forward-filled values per target
    observed: dict[str, np.ndarray]  # (n,) True where a real reading is behind the value
    peer_median: dict[str, np.ndarray]  # (n,) median of the device's cells at the same slot
    #: (n,) operating state code of the string at each slot (index into ``bms_schema.state.STATES``,
    #: forward-filled; -1 where unknown)
    state: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.cell.size)

    @property
    def end(self) -> np.ndarray:
        """Last flat position of each cell."""
        return self.start + self.length - 1

    def cell_index(self, cell_id: str) -> int:
        matches = np.flatnonzero(self.cell_ids == cell_id)
        if matches.size == 0:
            raise InputError(f"cell '{cell_id}' has no readings")
        return int(matches[0])


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """The canonical table: a canonical frame (columns and dtypes) is used as is, anything else is normalised
    first (``bms_schema.clean.to_canonical``; a canonical CSV read back has text timestamps)."""
    from bms_schema.clean import to_canonical

    return to_canonical(frame)


def observed_values(frame: pd.DataFrame, target: str) -> np.ndarray:
    """Values of ``target`` with everything that is not a real reading set to NaN.

    When the quality column says a value was missing, a sentinel or out of range, it is NaN
    here even if an earlier step imputed it.
    """
    values = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype="float64", copy=True)
    quality = C.quality_column(target)
    if quality in frame.columns:
        flags = frame[quality].to_numpy(dtype=object)  # NaN flags compare unequal to "ok": not a reading
        values[flags != C.QUALITY_OK] = np.nan
    return values


def present_targets(frame: pd.DataFrame) -> list[str]:
    """The targets that exist as columns and hold at least one real reading."""
    found = []
    for target in TARGETS:
        if target in frame.columns and np.isfinite(observed_values(frame, target)).any():
            found.append(target)
    return found


def _device_grid(device_codes: np.ndarray, time_s: np.ndarray, n_devices: int) -> tuple[np.ndarray, np.ndarray]:
    """First timestamp and median positive step (seconds) of each device."""
    t0 = np.full(n_devices, np.inf)
    np.minimum.at(t0, device_codes, time_s)
    pairs = pd.DataFrame({"d": device_codes, "t": time_s}).drop_duplicates().sort_values(["d", "t"])
    diffs = pairs["t"].diff()
    same = pairs["d"].to_numpy()[1:] == pairs["d"].to_numpy()[:-1]
    steps = pd.Series(diffs.to_numpy()[1:][same], index=pairs["d"].to_numpy()[1:][same])
    steps = steps[steps > 0]
    median = steps.groupby(level=0).median()
    step = np.full(n_devices, np.nan)
    step[median.index.to_numpy(dtype=int)] = median.to_numpy()
    return t0, step


def forward_fill(values: np.ndarray, cell: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Carry the last real value forward within each cell (leading gaps stay NaN)."""
    return grouped.forward_fill(values, start[cell])


def build_panel(frame: pd.DataFrame, targets: list[str] | None = None) -> Panel:
    """Build the regular-grid panel from a canonical (or raw/minimal) readings table."""
    frame = canonical(frame)
    targets = list(targets) if targets is not None else present_targets(frame)
    if not targets:
        raise InputError("no forecastable column holds a reading: expected at least one of " + ", ".join(TARGETS))
    frame = frame.loc[frame[C.TIMESTAMP].notna()]
    if frame.empty:
        raise InputError("no row has a timestamp")

    # cells ordered by device, then cell number
    order = frame[[C.DEVICE_ID, C.CELL_NUMBER, C.CELL_ID]].drop_duplicates(C.CELL_ID)
    order = order.sort_values([C.DEVICE_ID, C.CELL_NUMBER], kind="stable")
    cell_ids = order[C.CELL_ID].astype(str).to_numpy()
    device_of_cell = order[C.DEVICE_ID].astype(str).to_numpy()
    cell_codes = pd.Categorical(frame[C.CELL_ID].astype(str), categories=cell_ids).codes.astype(np.int64)
    device_names, device_of_cell_code = np.unique(device_of_cell, return_inverse=True)
    device_codes = device_of_cell_code[cell_codes]

    time_s = grouped.epoch_seconds(frame[C.TIMESTAMP])  # whatever the datetime unit (ns, us, ...)
    t0, step = _device_grid(device_codes, time_s, len(device_names))
    step = np.where(np.isfinite(step), step, 1.0)  # a device with one timestamp: any step works
    slot = np.rint((time_s - t0[device_codes]) / step[device_codes]).astype(np.int64)

    n_cells = len(cell_ids)
    readings = np.bincount(cell_codes, minlength=n_cells)
    first = np.full(n_cells, np.iinfo(np.int64).max)
    last = np.full(n_cells, -1)
    np.minimum.at(first, cell_codes, slot)
    np.maximum.at(last, cell_codes, slot)
    length = last - first + 1
    total = int(length.sum())
    if total > MAX_GRID_EXPANSION * len(frame) + 10_000:
        worst = int(np.argmax(length / np.maximum(readings, 1)))
        raise InputError(
            f"the timestamps of cell {cell_ids[worst]} span {int(length[worst])} sampling steps but it has only "
            f"{int(readings[worst])} readings: the data has huge gaps or mixed clocks; split the file at the gaps"
        )
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    position = start[cell_codes] + slot - first[cell_codes]

    # average duplicate readings of one slot
    raw = {t: observed_values(frame, t) for t in targets}
    sums = {t: np.bincount(position, weights=np.nan_to_num(raw[t]), minlength=total) for t in targets}
    counts = {t: np.bincount(position, weights=np.isfinite(raw[t]).astype(float), minlength=total) for t in targets}

    cell = np.repeat(np.arange(n_cells), length)
    offset = np.arange(total) - start[cell]
    grid_slot = first[cell] + offset
    grid_device = device_of_cell_code[cell]
    grid_time = t0[grid_device] + grid_slot * step[grid_device]

    values: dict[str, np.ndarray] = {}
    observed: dict[str, np.ndarray] = {}
    for t in targets:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums[t] / counts[t]
        observed[t] = counts[t] > 0
        values[t] = forward_fill(np.where(observed[t], mean, np.nan), cell, start)
    # string median per (device, slot): one groupby for all targets
    slot_key = grid_device.astype(np.int64) * (int(grid_slot.max()) + 1) + grid_slot
    medians = pd.DataFrame(values).groupby(slot_key).transform("median")
    peer = {t: medians[t].to_numpy() for t in targets}

    state = operating_state_codes(frame, position, total, cell, start)

    cell_step = step[device_of_cell_code]
    period = np.where(cell_step <= MAX_SEASONAL_STEP_SECONDS, np.rint(DAY_SECONDS / cell_step), 0).astype(np.int64)
    long_window = np.where(period > 1, period, FALLBACK_LONG_WINDOW).astype(np.int64)
    log.debug("panel: %d cells, %d slots from %d rows", n_cells, total, len(frame))
    return Panel(
        targets=targets,
        cell_ids=cell_ids,
        device_ids=device_of_cell,
        cell_numbers=order[C.CELL_NUMBER].to_numpy(dtype=np.int64),
        start=start,
        length=length.astype(np.int64),
        readings=readings.astype(np.int64),
        step_seconds=cell_step.astype(float),
        period=period,
        long_window=long_window,
        cell=cell,
        time_s=grid_time,
        values=values,
        observed=observed,
        peer_median=peer,
        state=state,
    )


def operating_state_codes(
    frame: pd.DataFrame, position: np.ndarray, total: int, cell: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """The string's operating state at every grid slot (``OperatingState`` column, else derived here).

    Derived with :func:`bms_schema.state.operating_state` from current and voltage when the
    column is absent; -1 (unknown) when neither is possible. Forward-filled within each cell.
    """
    from bms_schema.errors import InputError
    from bms_schema.state import OPERATING_STATE, STATES, operating_state

    try:
        states = frame[OPERATING_STATE] if OPERATING_STATE in frame.columns else operating_state(frame)
    except InputError as exc:
        log.info("no operating state for the forecaster: %s", exc)
        return np.full(total, -1, dtype=np.int8)
    codes = pd.Categorical(states.astype("object"), categories=list(STATES)).codes.astype(np.int64)
    grid = np.full(total, -1, dtype=np.int64)
    known = codes >= 0
    grid[position[known]] = codes[known]  # several rows of one slot: the same string state
    filled = forward_fill(np.where(grid >= 0, grid, np.nan).astype(float), cell, start)
    return np.where(np.isfinite(filled), filled, -1).astype(np.int8)
