"""Engineered features, computed per cell in time order, never across cell boundaries.

``add_features(frame, window=12)`` takes a cleaned canonical frame (sorted by cell, then
time: :func:`bms_schema.clean.clean_readings`) and adds :data:`FEATURE_COLUMNS`. All
work is vectorised over the whole table (NumPy on cell-sorted arrays, one pandas groupby
for the string medians); see ``load-preprocessdata-mcp/README.md`` for the definition of every feature.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from . import columns as C
from .errors import InputError
from .grouped import StringGroups, cell_starts, epoch_seconds, forward_fill, previous, rolling_mean_std

FEATURE_COLUMNS: tuple[str, ...] = (
    "VoltageRate",
    "TemperatureRate",
    "VoltageRollMean",
    "VoltageRollStd",
    "TemperatureRollMean",
    "TemperatureRollStd",
    "SGRollMean",
    "SGRollStd",
    "TempAboveAmbient",
    "SGCorrected25C",
    "VoltageDevString",
    "SGDevString",
    "ResistanceProxy",
    "StateOfCharge",
    "HourOfDay",
)

#: Specific-gravity temperature correction (per degC above 25 degC), IEEE 450 / battery makers' rule.
SG_TEMP_COEFF = 0.0007
SG_REFERENCE_TEMP = 25.0
#: Linear SoC model on temperature-corrected SG: 1.100 = 0 %, 1.280 = 100 % (flooded/VRLA stationary cells).
SG_EMPTY = 1.100
SG_FULL = 1.280
#: A current change larger than this (A) between two readings of a cell counts as a step for ResistanceProxy.
CURRENT_STEP_A = 1.0

DEFAULT_WINDOW = 12

#: The measurements each feature is computed from.
FEATURE_SOURCES: dict[str, tuple[str, ...]] = {
    "VoltageRate": (C.VOLTAGE,),
    "TemperatureRate": (C.TEMPERATURE,),
    "VoltageRollMean": (C.VOLTAGE,),
    "VoltageRollStd": (C.VOLTAGE,),
    "TemperatureRollMean": (C.TEMPERATURE,),
    "TemperatureRollStd": (C.TEMPERATURE,),
    "SGRollMean": (C.SPECIFIC_GRAVITY,),
    "SGRollStd": (C.SPECIFIC_GRAVITY,),
    "TempAboveAmbient": (C.TEMPERATURE, C.AMBIENT),
    "SGCorrected25C": (C.SPECIFIC_GRAVITY, C.TEMPERATURE),
    "VoltageDevString": (C.VOLTAGE,),
    "SGDevString": (C.SPECIFIC_GRAVITY,),
    "ResistanceProxy": (C.VOLTAGE, C.CURRENT),
    "StateOfCharge": (C.SPECIFIC_GRAVITY, C.TEMPERATURE),
    "HourOfDay": (),
}
_WHY_ABSENT = {
    C.SPECIFIC_GRAVITY: "the data has no specific gravity (VRLA/AGM/gel cells have none)",
    C.CURRENT: "the data has no string current",
    C.AMBIENT: "the data has no ambient temperature",
}


def skipped_features(
    no_value: Iterable[str], all_nan: Iterable[str] = (), current_step: float = CURRENT_STEP_A
) -> dict[str, str]:
    """``{feature: why}`` for the features that have no value: their measurement has no value at
    all (``no_value``), or they came out all-NaN for another reason (``all_nan``: no current step)."""
    absent = set(no_value)
    out: dict[str, str] = {}
    for name in FEATURE_COLUMNS:
        missing = [m for m in FEATURE_SOURCES[name] if m in absent]
        if missing:
            out[name] = "; ".join(_WHY_ABSENT.get(m, f"the data has no {m} value") for m in missing)
    for name in all_nan:
        if name in out:
            continue
        if name == "ResistanceProxy":
            out[name] = (
                f"no change of the current by more than {current_step:g} A between two readings of a cell "
                "(no charge or discharge in the data)"
            )
        else:
            out[name] = "no value could be computed (too few readings)"
    return out


def _epoch_ns(timestamps: pd.Series) -> np.ndarray:
    """Reading times as int64 nanoseconds since the epoch (UTC)."""
    ts = timestamps
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(ts):
        ts = pd.to_datetime(ts, utc=True)
    return np.asarray(ts.dt.as_unit("ns").array.asi8, dtype=np.int64)


def _check(frame: pd.DataFrame, window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise InputError(f"window must be a whole number of readings >= 1, got {window!r}")
    missing = [c for c in (C.CELL_ID, C.DEVICE_ID, C.TIMESTAMP, *C.CORE_COLUMNS) if c not in frame.columns]
    if missing:
        raise InputError(
            f"add_features needs a cleaned canonical table; missing column(s) {', '.join(missing)} "
            "(run bms_schema.clean.clean_readings first)"
        )


def rate_per_hour(values: np.ndarray, seconds: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """dValue/dt in units per hour from real time deltas; 0.0 on a cell's first reading."""
    dv = values - previous(values, starts)
    dt_h = (seconds - previous(seconds, starts)) / 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(dt_h > 0, dv / dt_h, np.nan)
    rate[np.arange(len(values)) == starts] = 0.0
    return rate


def resistance_proxy(
    voltage: np.ndarray,
    current: np.ndarray,
    starts: np.ndarray,
    step: float = CURRENT_STEP_A,
    seed: np.ndarray | None = None,
) -> np.ndarray:
    """dV/dI (ohm) at readings where the current changed by more than ``step`` A; carried forward per cell.

    NaN until the cell's first current step (no estimate yet). ``seed`` (streaming) marks rows
    whose final value is already known (non-NaN): they are used as they are and carried on.
    """
    dv = voltage - previous(voltage, starts)
    di = current - previous(current, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        at_step = np.abs(di) > step
        raw = np.where(at_step, dv / np.where(at_step, di, 1.0), np.nan)
    if seed is not None:
        known = ~np.isnan(seed)
        raw[known] = seed[known]
    return forward_fill(raw, starts)


def state_of_charge(sg_corrected: np.ndarray) -> np.ndarray:
    """SoC (%) linear in temperature-corrected SG between :data:`SG_EMPTY` and :data:`SG_FULL`, clipped 0-100."""
    return np.clip((sg_corrected - SG_EMPTY) / (SG_FULL - SG_EMPTY) * 100.0, 0.0, 100.0)


def string_deviation(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Each cell's value minus the median of its string (same DeviceID, same Timestamp)."""
    groups = StringGroups(frame[C.DEVICE_ID].to_numpy(), _epoch_ns(frame[C.TIMESTAMP]))
    values = frame[column].to_numpy(dtype=np.float64)
    return values - groups.median(values)


def hour_of_day(ts_ns: np.ndarray) -> np.ndarray:
    """Fractional hour of day in UTC from epoch nanoseconds (09:30:00 -> 9.5; sub-seconds ignored)."""
    second_of_day = (ts_ns // 1_000_000_000) % 86_400
    return (second_of_day // 3600) + ((second_of_day % 3600) // 60) / 60.0 + (second_of_day % 60) / 3600.0


def single_cell_strings(devices: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Per row: its string (device) has one cell only in these rows (a monobloc, no peers)."""
    if len(devices) == 0:
        return np.zeros(0, dtype=bool)
    pairs = pd.DataFrame({"d": pd.factorize(devices)[0], "c": pd.factorize(cells)[0]})
    n_cells = pairs.drop_duplicates().groupby("d")["c"].size()
    return n_cells.to_numpy()[pairs["d"].to_numpy()] == 1


#: Why a string's peer deviations fall back to the cell's own history.
PEER_FALLBACK = (
    "one cell in the string (no peers): VoltageDevString and SGDevString are the deviation from "
    "the cell's own rolling mean instead of the string median"
)


def peer_deviation(
    values: np.ndarray, groups: StringGroups, own_mean: np.ndarray, single: np.ndarray | None = None
) -> np.ndarray:
    """A cell's value minus its string's median at that time; for a string of one cell (``single``)
    minus the cell's own rolling mean (:data:`PEER_FALLBACK`)."""
    deviation = values - groups.median(values)
    if single is not None and single.any():
        deviation = np.where(single, values - own_mean, deviation)
    return deviation


def _nan_if_absent(core: Mapping[str, np.ndarray], name: str, n: int) -> np.ndarray:
    values = core.get(name)
    return np.full(n, np.nan) if values is None else np.asarray(values, dtype=np.float64)


def feature_arrays(
    devices: np.ndarray,
    cells: np.ndarray,
    ts_ns: np.ndarray,
    core: Mapping[str, np.ndarray],
    window: int = DEFAULT_WINDOW,
    current_step: float = CURRENT_STEP_A,
    proxy_seed: np.ndarray | None = None,
    groups: StringGroups | None = None,
    single: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The features of rows sorted by cell, then time, from plain arrays: the one featuriser.

    Batch (:func:`compute_features`), the chunked engine (chunks prefixed with each cell's
    previous readings) and live scoring (a request after the remembered history) all call this.
    ``core`` maps measurement names to float arrays; an absent measurement (no specific gravity
    on a VRLA string) gives NaN features that need it. ``proxy_seed`` gives known final
    ``ResistanceProxy`` values (carried-over rows) that are carried forward; ``groups`` the
    string-and-time groups when the caller already built them (or wants medians of some rows only);
    ``single`` marks rows of one-cell strings (:func:`single_cell_strings`, :func:`peer_deviation`).
    """
    n = len(ts_ns)
    starts = cell_starts(cells)
    seconds = ts_ns.astype(np.float64) / 1e9
    voltage = _nan_if_absent(core, C.VOLTAGE, n)
    temp = _nan_if_absent(core, C.TEMPERATURE, n)
    sg = _nan_if_absent(core, C.SPECIFIC_GRAVITY, n)
    current = _nan_if_absent(core, C.CURRENT, n)
    ambient = _nan_if_absent(core, C.AMBIENT, n)
    out: dict[str, np.ndarray] = {
        "VoltageRate": rate_per_hour(voltage, seconds, starts),
        "TemperatureRate": rate_per_hour(temp, seconds, starts),
    }
    for prefix, values in (("Voltage", voltage), ("Temperature", temp), ("SG", sg)):
        mean, std = rolling_mean_std(values, starts, int(window))
        out[f"{prefix}RollMean"] = mean
        out[f"{prefix}RollStd"] = std
    out["TempAboveAmbient"] = temp - ambient
    sg_corrected = sg + SG_TEMP_COEFF * (temp - SG_REFERENCE_TEMP)
    out["SGCorrected25C"] = sg_corrected
    groups = groups if groups is not None else StringGroups(devices, ts_ns)
    out["VoltageDevString"] = peer_deviation(voltage, groups, out["VoltageRollMean"], single)
    out["SGDevString"] = peer_deviation(sg, groups, out["SGRollMean"], single)
    out["ResistanceProxy"] = resistance_proxy(voltage, current, starts, current_step, proxy_seed)
    out["StateOfCharge"] = state_of_charge(sg_corrected)
    out["HourOfDay"] = hour_of_day(ts_ns)
    return {name: out[name] for name in FEATURE_COLUMNS}


def sort_order(frame: pd.DataFrame) -> np.ndarray | None:
    """``None`` when each cell's rows are contiguous and in time order, else the stable sorting order."""
    _check(frame, 1)
    cells = frame[C.CELL_ID].to_numpy()
    starts = cell_starts(cells)
    n_blocks = int(np.count_nonzero(starts == np.arange(len(starts))))
    seconds = epoch_seconds(frame[C.TIMESTAMP])
    back = np.diff(seconds) < 0
    back &= starts[1:] == starts[:-1]
    if n_blocks == frame[C.CELL_ID].nunique() and not back.any():
        return None
    keys = [c for c in (C.DEVICE_ID, C.CELL_NUMBER) if c in frame.columns] or [C.CELL_ID]
    return frame.reset_index(drop=True).sort_values([*keys, C.TIMESTAMP], kind="stable").index.to_numpy()


def compute_features(
    frame: pd.DataFrame,
    window: int = DEFAULT_WINDOW,
    current_step: float = CURRENT_STEP_A,
    proxy_seed: np.ndarray | None = None,
    single_cell_devices: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """The feature arrays of a cell-sorted canonical frame, keyed by :data:`FEATURE_COLUMNS`.

    ``proxy_seed`` (used by the streaming engine for carried-over rows) gives known final
    ``ResistanceProxy`` values that are carried forward; ``single_cell_devices`` the strings
    of one cell in the whole input (a chunk may hold one cell of a bigger string). See
    :func:`feature_arrays`.
    """
    _check(frame, window)
    core = {c: frame[c].to_numpy(dtype=np.float64) for c in C.CORE_COLUMNS if c in frame.columns}
    devices, cells = frame[C.DEVICE_ID].to_numpy(), frame[C.CELL_ID].to_numpy()
    if single_cell_devices is None:
        single = single_cell_strings(devices, cells)
    else:
        single = np.isin(devices.astype(str), np.asarray(list(single_cell_devices), dtype=str))
    return feature_arrays(
        devices, cells, _epoch_ns(frame[C.TIMESTAMP]), core, int(window), current_step, proxy_seed, single=single
    )


def add_features(
    frame: pd.DataFrame, window: int = DEFAULT_WINDOW, current_step: float = CURRENT_STEP_A
) -> pd.DataFrame:
    """Return a copy of a cleaned, cell-sorted canonical frame with :data:`FEATURE_COLUMNS` added.

    ``window`` is the number of readings in the trailing rolling windows. Existing feature
    columns are recomputed; every other column passes through unchanged.
    """
    order = sort_order(frame)
    if order is None:
        features = compute_features(frame, window, current_step)
    else:  # not cell-sorted: compute in (cell, time) order, hand back in the caller's order
        ordered = compute_features(frame.iloc[order].reset_index(drop=True), window, current_step)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        features = {k: v[inverse] for k, v in ordered.items()}
    base = frame.drop(columns=[c for c in FEATURE_COLUMNS if c in frame.columns])
    return pd.concat([base, pd.DataFrame(features, index=frame.index)], axis=1, copy=False)
