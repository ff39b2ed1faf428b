"""Feature matrices for the global per-target models, shared by training, backtest and inference.

A row describes one forecast: an *origin* (the last known reading of a cell), a *base* (the
last value of the lag window: the origin itself for the direct strategy, the previous predicted
step for the recursive one) and a lead ``horizon`` from the base. The model predicts the change
``y[base + horizon] - y[base]``, so a model that learnt nothing is the last-value forecast.

Feature groups (names in :func:`feature_names`):
- lag window: the last ``WINDOW`` values relative to the current level, rolling means and
  standard deviations over 3/6/12 readings, a trend;
- level and long context: the current level, the mean of the last day (or a fallback window);
- peer context: the string (device) median at the origin, the cell's deviation from it and its
  long-run offset, the change of the string median;
- the other measured parameters at the origin (current drives voltage and temperature);
- calendar: time of day (sine/cosine) at the origin and at the forecast time;
- daily seasonality: the value one day before the forecast time, and the change over the same
  lead one day earlier;
- identity: the cell's position in its string and its long-run offset from its peers;
- operating state of the string at the origin (float, charge, discharge, rest, equalize as
  one-hot columns, all 0 when unknown) and how many readings it has lasted (capped): a
  discharge under way or a recharge just started changes where voltage and temperature go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DAY_SECONDS, WINDOW
from .panel import Panel

LAG_STEPS: tuple[int, ...] = (1, 2, 3, 4, 6, WINDOW - 1)
ROLL_WINDOWS: tuple[int, ...] = (3, 6, WINDOW)


def feature_names(target: str, targets: list[str]) -> list[str]:
    names = [f"lag{k}" for k in LAG_STEPS]
    names += [name for w in ROLL_WINDOWS for name in (f"roll_mean{w}", f"roll_std{w}")] + ["trend"]
    names += ["level", "long_mean_dev", "peer_median", "peer_dev", "peer_change", "peer_offset_long"]
    for other in targets:
        if other != target:
            names += [f"{other}_now", f"{other}_change"]
    names += ["cell_number", "origin_tod_sin", "origin_tod_cos"]
    names += ["horizon", "target_tod_sin", "target_tod_cos", "season_level", "season_delta"]
    names += [f"state_{s}" for s in STATE_NAMES] + ["state_age"]
    return names


#: Operating states (``bms_schema.state.STATES``, same order) used as features.
STATE_NAMES: tuple[str, ...] = ("float", "charge", "discharge", "rest", "equalize")
#: The state's age (readings since it began) is capped here.
MAX_STATE_AGE = 4 * WINDOW


def state_age(panel: Panel) -> np.ndarray:
    """Readings since the string's state last changed, per position (capped at ``MAX_STATE_AGE``)."""
    state = panel.state if panel.state is not None else np.full(panel.size, -1, dtype=np.int8)
    pos = np.arange(panel.size)
    change = np.ones(panel.size, dtype=bool)
    change[1:] = (state[1:] != state[:-1]) | (panel.cell[1:] != panel.cell[:-1])
    began = np.maximum.accumulate(np.where(change, pos, 0))
    return np.minimum(pos - began, MAX_STATE_AGE).astype(float)


def state_columns(panel: Panel, origin: np.ndarray, age: np.ndarray | None = None) -> list[np.ndarray]:
    state = panel.state[origin] if panel.state is not None else np.full(origin.size, -1, dtype=np.int8)
    cols = [(state == i).astype(float) for i in range(len(STATE_NAMES))]
    cols.append((age if age is not None else state_age(panel))[origin])
    return cols


def rolling_mean(values: np.ndarray, panel: Panel, window: np.ndarray) -> np.ndarray:
    """Causal mean over the last ``window[cell]`` positions of each cell (NaN-aware)."""
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    pos = np.arange(values.size)
    lo = np.maximum(panel.start[panel.cell], pos - window[panel.cell] + 1)
    count = ccount[pos + 1] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[pos + 1] - csum[lo]) / count, np.nan)


@dataclass
class TargetContext:
    """Per-position arrays of one target that several feature rows share."""

    long_mean: np.ndarray
    peer_offset_long: np.ndarray
    state_age: np.ndarray | None = None


def target_context(panel: Panel, target: str) -> TargetContext:
    values = panel.values[target]
    return TargetContext(
        long_mean=rolling_mean(values, panel, panel.long_window),
        peer_offset_long=rolling_mean(values - panel.peer_median[target], panel, panel.long_window),
        state_age=state_age(panel),
    )


def _gather(array: np.ndarray, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = array[np.clip(index, 0, array.size - 1)].astype(float)
    out[~valid] = np.nan
    return out


def history_window(panel: Panel, target: str, origin: np.ndarray) -> np.ndarray:
    """(n, WINDOW) values ending at each origin, oldest first (NaN before the cell's start)."""
    index = origin[:, None] - np.arange(WINDOW - 1, -1, -1)[None, :]
    lo = panel.start[panel.cell[origin]][:, None]
    return _gather(panel.values[target], index, index >= lo)


def _window_block(buffer: np.ndarray) -> list[np.ndarray]:
    level = buffer[:, -1]
    cols = [buffer[:, -1 - k] - level for k in LAG_STEPS]
    # Plain mean/std: the window is forward-filled, so only windows reaching before a cell's first
    # reading hold NaN, and for those NaN is the right (missing) feature value.
    for w in ROLL_WINDOWS:
        part = buffer[:, -w:]
        mean = part.mean(axis=1)
        cols.append(mean - level)
        cols.append(np.sqrt(np.maximum(np.mean(part * part, axis=1) - mean * mean, 0.0)))
    cols.append((buffer[:, -3:].mean(axis=1) - buffer[:, :3].mean(axis=1)) / (WINDOW - 3))
    return cols


def _time_of_day(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    angle = 2 * np.pi * (np.mod(seconds, DAY_SECONDS) / DAY_SECONDS)
    return np.sin(angle), np.cos(angle)


def build_features(
    panel: Panel,
    context: TargetContext,
    target: str,
    origin: np.ndarray,
    horizon: np.ndarray,
    buffer: np.ndarray | None = None,
    base_offset: int = 0,
) -> np.ndarray:
    """Feature matrix (float32, columns as :func:`feature_names`) for forecasts from ``origin``.

    ``buffer`` is the lag window ending at the base (default: the real history at the origin);
    ``base_offset`` is how many steps the base lies after the origin (recursive forecasting).
    """
    origin = np.asarray(origin, dtype=np.int64)
    horizon = np.asarray(horizon, dtype=np.int64)
    if buffer is None:
        buffer = history_window(panel, target, origin)
    cell = panel.cell[origin]
    start = panel.start[cell]
    values = panel.values[target]
    level = buffer[:, -1]
    cols = _window_block(buffer)

    prev = origin - 1
    has_prev = prev >= start
    peer = panel.peer_median[target][origin]
    cols += [
        level,
        context.long_mean[origin] - level,
        peer,
        level - peer,
        peer - _gather(panel.peer_median[target], prev, has_prev),
        context.peer_offset_long[origin],
    ]
    for other in panel.targets:
        if other != target:
            now = panel.values[other][origin]
            cols += [now, now - _gather(panel.values[other], prev, has_prev)]
    origin_time = panel.time_s[origin]
    cols += [panel.cell_numbers[cell].astype(float), *_time_of_day(origin_time)]

    lead = base_offset + horizon
    cols += [horizon.astype(float), *_time_of_day(origin_time + lead * panel.step_seconds[cell])]
    period = panel.period[cell]
    season_at = origin + lead - period
    season_base = origin + base_offset - period
    seasonal = (period > 0) & (season_base >= start) & (season_at <= origin)
    season_value = _gather(values, season_at, seasonal)
    cols += [season_value - level, season_value - _gather(values, season_base, seasonal)]
    cols += state_columns(panel, origin, context.state_age)
    return np.column_stack(cols).astype(np.float32)
