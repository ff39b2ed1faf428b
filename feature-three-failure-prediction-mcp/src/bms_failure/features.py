"""Per-cell trailing-window features on a regular time grid (vectorised, causal).

Readings are aggregated into ``step_hours`` buckets per cell with ``np.bincount`` on a
dense (cell, bucket) grid. Every cell's grid runs from its first bucket to the last bucket
of the whole table (so a cell that stopped reporting is still scored as of the end, with a
growing data age), preceded by ``long_window`` padding rows so that rolling windows never
cross from one cell into the next. String peers are the other cells of the same
``DeviceID`` in the same bucket. All windows are trailing: a feature at a bucket uses only
readings up to the end of that bucket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError
from bms_schema import columns as C

from .config import FEATURES, LOGGER, FeatureConfig

log = logging.getLogger(LOGGER)

NS_PER_HOUR = 3_600_000_000_000
#: Columns an anomaly result table may use for its per-row flag, most specific first. The simulator's
#: ground truth ``IsAnomaly`` is deliberately not accepted: a label must never become a feature.
ANOMALY_FLAG_COLUMNS = ("AnomalyFlag", "PredictedAnomaly", "Anomaly", "is_anomaly")
#: Extra (non-model) columns the baseline rule reads.
RULE_COLUMNS = ("rule_float_voltage", "rule_sg_below_string_mean", "rule_ohmic_rise")
#: Optional per-cell ohmic measurement columns (ohm), most specific first: an ohmic/impedance test value
#: when the BMS reports one; without it the ohmic rise is estimated from discharges.
OHMIC_COLUMNS = ("CellResistance", "CellInternalResistance", "InternalResistance", "CellImpedance")


@dataclass
class FeatureGrid:
    """Features for every (cell, bucket) of the data.

    ``table`` has ``CellID, DeviceID, CellNumber, Timestamp`` (end of the bucket, UTC),
    ``Bucket``, ``HistoryHours``, ``HasReading``, ``LastVoltage`` (mean voltage of the newest bucket
    with a reading), the model :data:`FEATURES` and the
    baseline-rule columns. ``cells`` has one row per cell with its first and last reading.
    """

    table: pd.DataFrame
    cells: pd.DataFrame
    config: FeatureConfig
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    has_anomalies: bool

    def last_rows(self) -> pd.DataFrame:
        """The newest grid row of every cell (the state as of the end of the data)."""
        table = self.table
        last = table["Bucket"] == table["Bucket"].max()
        return table.loc[last].reset_index(drop=True)


def as_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` itself when it is the canonical table (columns, quality codes and dtypes), else normalised
    (raw packets, a minimal table, or one that merely uses the canonical names: its sentinels still need flagging)."""
    from bms_schema.clean import to_canonical

    return to_canonical(frame)


def _check_frame(frame: pd.DataFrame) -> None:
    needed = [C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, *C.CORE_COLUMNS]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(
            f"failure features need the canonical readings table (bms_schema.load_readings/normalize); "
            f"missing column(s): {', '.join(missing)}"
        )
    if len(frame) == 0:
        raise InputError("the readings table has no rows")
    if not pd.api.types.is_datetime64_any_dtype(frame[C.TIMESTAMP]):
        raise InputError(f"column '{C.TIMESTAMP}' must hold datetimes, got dtype {frame[C.TIMESTAMP].dtype}")


def utc_timestamps(values: pd.Series) -> pd.Series:
    """``values`` as ``datetime64[ns, UTC]`` (naive times are taken as UTC; unparsable become NaT)."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    if getattr(values.dt, "tz", None) is None:
        values = values.dt.tz_localize("UTC")
    return values.astype("datetime64[ns, UTC]")


def _float(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class _Grid:
    """Index arithmetic of the padded dense (cell, bucket) grid."""

    def __init__(
        self, codes: np.ndarray, bucket: np.ndarray, n_cells: int, pad: int, max_rows: int, last: int | None = None
    ):
        self.n_cells = n_cells
        self.pad = pad
        self.last_bucket = int(bucket.max()) if last is None else max(int(bucket.max()), int(last))
        first = np.full(n_cells, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, codes, bucket)
        self.first_bucket = first
        real_len = self.last_bucket - first + 1
        self.length = real_len + pad
        total = int(self.length.sum())
        if total > max_rows:
            raise InputError(
                f"the data span {int(real_len.max())} time buckets for {n_cells} cells ({total} grid rows, limit "
                f"{max_rows}): use a larger step_hours"
            )
        self.size = total
        self.offset = np.concatenate(([0], np.cumsum(self.length)[:-1]))
        self.row_cell = np.repeat(np.arange(n_cells), self.length)
        local = np.arange(total) - self.offset[self.row_cell]
        self.row_bucket = first[self.row_cell] - pad + local
        self.real = local >= pad
        self.position = self.offset[codes] + pad + (bucket - first[codes])

    def total(self, values: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
        """Per grid row: the sum of ``values`` (or the count) over readings where ``mask``."""
        pos = self.position if mask is None else self.position[mask]
        weights = None if values is None else (values if mask is None else values[mask])
        return np.bincount(pos, weights=weights, minlength=self.size).astype(np.float64)


def _rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum over ``window`` rows (padding rows are zero, so cells never mix)."""
    cs = np.concatenate(([0.0], np.cumsum(values)))
    idx = np.arange(len(values))
    return cs[idx + 1] - cs[np.maximum(idx + 1 - window, 0)]


def _divide(num: np.ndarray, den: np.ndarray, min_den: float = 0.5) -> np.ndarray:
    out = np.full(len(num), np.nan)
    ok = den >= min_den
    out[ok] = num[ok] / den[ok]
    return out


def _window_mean(series: np.ndarray, window: int) -> np.ndarray:
    """Mean of the non-missing values of a bucket series over a trailing window."""
    valid = ~np.isnan(series)
    return _divide(_rolling_sum(np.where(valid, series, 0.0), window), _rolling_sum(valid.astype(np.float64), window))


def _window_slope(series: np.ndarray, window: int, x: np.ndarray, min_points: int) -> np.ndarray:
    """Least-squares slope (per bucket) of a bucket series over a trailing window; NaN with too few points."""
    valid = ~np.isnan(series)
    y = np.where(valid, series, 0.0)
    v = valid.astype(np.float64)
    xv = np.where(valid, x, 0.0)
    n = _rolling_sum(v, window)
    sx = _rolling_sum(xv, window)
    sy = _rolling_sum(y, window)
    sxx = _rolling_sum(xv * xv, window)
    sxy = _rolling_sum(xv * y, window)
    den = n * sxx - sx * sx
    out = np.full(len(series), np.nan)
    ok = (n >= min_points) & (den > 0)
    out[ok] = (n[ok] * sxy[ok] - sx[ok] * sy[ok]) / den[ok]
    return out


def _expanding_mean(series: np.ndarray, grid: "_Grid") -> np.ndarray:
    """Mean of the non-missing values of a bucket series from the cell's first bucket up to each row."""
    valid = ~np.isnan(series)
    start = grid.offset[grid.row_cell]
    sums = np.concatenate(([0.0], np.cumsum(np.where(valid, series, 0.0))))
    counts = np.concatenate(([0.0], np.cumsum(valid.astype(np.float64))))
    idx = np.arange(len(series)) + 1
    return _divide(sums[idx] - sums[start], counts[idx] - counts[start])


def _initial_mean(series: np.ndarray, grid: "_Grid", window: int, from_first_valid: bool = False) -> np.ndarray:
    """Mean of the non-missing values over the cell's first ``window`` buckets (its baseline), as known at
    each row: up to the row itself while the baseline period lasts, then frozen (causal). With
    ``from_first_valid`` the baseline period starts at the cell's first bucket with a value."""
    valid = ~np.isnan(series)
    start = grid.offset[grid.row_cell] + grid.pad
    idx = np.arange(len(series))
    if from_first_valid:
        first = np.full(grid.n_cells, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, grid.row_cell[valid], idx[valid])
        first_of_row = first[grid.row_cell]
        start = np.where(first_of_row < np.iinfo(np.int64).max, np.maximum(first_of_row, start), start)
    end = np.clip(np.minimum(idx, start + window - 1), start - 1, None) + 1
    sums = np.concatenate(([0.0], np.cumsum(np.where(valid, series, 0.0))))
    counts = np.concatenate(([0.0], np.cumsum(valid.astype(np.float64))))
    return _divide(sums[end] - sums[start], counts[end] - counts[start])


def _window_min(series: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(series).rolling(window, min_periods=1).min().to_numpy()


def _string_median(
    grid: _Grid, device_of_cell: np.ndarray, columns: dict[str, np.ndarray], how: str = "median"
) -> dict[str, np.ndarray]:
    """Per grid row, the median (or mean) of each column over the cells of the same device and bucket."""
    span = int(grid.row_bucket.max() - grid.row_bucket.min() + 1)
    key = device_of_cell[grid.row_cell].astype(np.int64) * span + (grid.row_bucket - grid.row_bucket.min())
    frame = pd.DataFrame(columns)
    result = frame.groupby(key, sort=False).transform(how)
    return {name: result[name].to_numpy() for name in columns}


def _anomaly_counts(
    anomalies: pd.DataFrame, cell_index: pd.Index, grid: _Grid, step_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    flag_col = next((c for c in ANOMALY_FLAG_COLUMNS if c in anomalies.columns), None)
    if flag_col is None:
        raise InputError(
            f"the anomaly results table has no flag column: expected one of {', '.join(ANOMALY_FLAG_COLUMNS)}; "
            f"it has {', '.join(map(str, list(anomalies.columns)[:12]))}"
        )
    if C.CELL_ID in anomalies.columns:
        cell_ids = anomalies[C.CELL_ID].astype(str)
    elif C.DEVICE_ID in anomalies.columns and C.CELL_NUMBER in anomalies.columns:
        cell_ids = (
            anomalies[C.DEVICE_ID].astype(str)
            + "-"
            + pd.to_numeric(anomalies[C.CELL_NUMBER]).astype("int64").astype(str)
        )
    else:
        raise InputError("the anomaly results table needs 'CellID' (or 'DeviceID' + 'CellNumber') to match cells")
    if C.TIMESTAMP not in anomalies.columns:
        raise InputError("the anomaly results table needs a 'Timestamp' column to match readings")
    ts = utc_timestamps(anomalies[C.TIMESTAMP])
    codes = cell_index.get_indexer(cell_ids)
    raw_flags = anomalies[flag_col]
    if pd.api.types.is_bool_dtype(raw_flags):
        flags = raw_flags.astype("float64")
    else:
        text = raw_flags.astype("string").str.strip().str.lower()
        flags = pd.to_numeric(text.replace({"true": "1", "false": "0"}), errors="coerce")
    ok = (codes >= 0) & ts.notna().to_numpy() & flags.notna().to_numpy()
    bucket = ts.array.asi8[ok] // step_ns
    codes = codes[ok]
    inside = (bucket >= grid.first_bucket[codes]) & (bucket <= grid.last_bucket)
    pos = grid.offset[codes[inside]] + grid.pad + (bucket[inside] - grid.first_bucket[codes[inside]])
    values = (flags.to_numpy(dtype=np.float64)[ok][inside] > 0).astype(np.float64)
    return (
        np.bincount(pos, minlength=grid.size).astype(np.float64),
        np.bincount(pos, weights=values, minlength=grid.size).astype(np.float64),
    )


def _ohmic_series(
    frame: pd.DataFrame,
    codes: np.ndarray,
    grid: "_Grid",
    config: FeatureConfig,
    vf_b: np.ndarray,
    vd_b: np.ndarray,
    id_b: np.ndarray,
    long: int,
) -> np.ndarray:
    """Per grid row, the cell's ohmic resistance (ohm) where known, else NaN.

    A measured ohmic value (one of :data:`OHMIC_COLUMNS`) is used when the data has one. Otherwise the
    apparent resistance under discharge: (the cell's trailing float voltage - its discharge voltage) /
    discharge current (the caller divides it by the string median). It includes polarisation, so a rise
    of the true ohmic part shows diluted, but its change over the cell's own baseline follows the trend
    IEEE 1188 acts on.
    """
    column = next((c for c in OHMIC_COLUMNS if c in frame.columns), None)
    if column is not None:
        values = _float(frame, column)
        ok = ~np.isnan(values) & (values > 0)
        if ok.any():
            return _divide(grid.total(values, ok), grid.total(mask=ok))
    with np.errstate(invalid="ignore", divide="ignore"):
        float_ref = _window_mean(vf_b, long)
        ref = np.concatenate(([np.nan], float_ref[:-1]))  # the float level before this bucket
        apparent = (ref - vd_b) / id_b
    return np.where(np.isfinite(apparent) & (apparent > 0), apparent, np.nan)


def build_feature_grid(
    frame: pd.DataFrame,
    config: FeatureConfig | None = None,
    anomalies: pd.DataFrame | None = None,
    data_end: pd.Timestamp | None = None,
) -> FeatureGrid:
    """Compute :data:`FEATURES` for every (cell, bucket) of a readings table (canonical; raw packets
    or a minimal table are normalised first).

    ``anomalies`` (optional) is an anomaly result table with ``CellID`` (or ``DeviceID`` +
    ``CellNumber``), ``Timestamp`` and a flag column (:data:`ANOMALY_FLAG_COLUMNS`); without it
    the anomaly-rate features are missing (XGBoost handles missing values natively).
    ``data_end`` (the Dask engine, one device per task): the end of the whole fleet's data, so a
    device's grid runs to the same last bucket as in the one-pass grid of all devices.
    """
    config = config or FeatureConfig()
    frame = as_canonical(frame)
    _check_frame(frame)
    ts = utc_timestamps(frame[C.TIMESTAMP])
    keep = ts.notna().to_numpy()
    if not keep.all():
        frame = frame.loc[keep]
        ts = ts.loc[keep]
    step_ns = int(round(config.step_hours * NS_PER_HOUR))
    short = config.buckets(config.short_window_hours)
    long = config.buckets(config.long_window_hours)

    codes, cell_index = pd.factorize(frame[C.CELL_ID].astype(str), sort=True)
    cell_index = pd.Index(cell_index)
    n_cells = len(cell_index)
    t_ns = ts.array.asi8
    bucket = t_ns // step_ns
    trend = config.buckets(config.trend_window_hours)
    month = config.buckets(config.month_window_hours)
    baseline = config.buckets(config.baseline_hours)
    end_ns = None if data_end is None else int(pd.Timestamp(data_end).as_unit("ns").value)
    grid = _Grid(
        codes,
        bucket,
        n_cells,
        pad=max(long, trend, month),
        max_rows=config.max_grid_rows,
        last=None if end_ns is None else end_ns // step_ns,
    )

    cell_rows = np.zeros(n_cells, dtype=np.int64)
    np.add.at(cell_rows, codes, 1)
    first_index = np.full(n_cells, len(frame), dtype=np.int64)
    np.minimum.at(first_index, codes, np.arange(len(frame)))
    device_codes, device_index = pd.factorize(frame[C.DEVICE_ID].astype(str).to_numpy()[first_index])
    numbers = pd.to_numeric(frame[C.CELL_NUMBER], errors="coerce").to_numpy()[first_index]

    voltage = _float(frame, C.VOLTAGE)
    temperature = _float(frame, C.TEMPERATURE)
    sg = _float(frame, C.SPECIFIC_GRAVITY)
    current = _float(frame, C.CURRENT)
    ambient = _float(frame, C.AMBIENT)

    has_v = ~np.isnan(voltage)
    has_sg = ~np.isnan(sg)
    has_t = ~np.isnan(temperature)
    # Centre per cell before summing squares (numerical stability of the rolling variance).
    v_center = _divide(
        np.bincount(codes[has_v], voltage[has_v], n_cells), np.bincount(codes[has_v], minlength=n_cells).astype(float)
    )
    sg_center = _divide(
        np.bincount(codes[has_sg], sg[has_sg], n_cells), np.bincount(codes[has_sg], minlength=n_cells).astype(float)
    )
    v_c = voltage - np.nan_to_num(v_center)[codes]
    sg_c = sg - np.nan_to_num(sg_center)[codes]

    n_v = grid.total(mask=has_v)
    s_v = grid.total(v_c, has_v)
    ss_v = grid.total(v_c * v_c, has_v)
    on_float = has_v & ~(current < -config.discharge_current_a)
    n_vf = grid.total(mask=on_float)
    s_vf = grid.total(voltage, on_float)
    n_sg = grid.total(mask=has_sg)
    s_sg = grid.total(sg_c, has_sg)
    ss_sg = grid.total(sg_c * sg_c, has_sg)
    n_t = grid.total(mask=has_t)
    s_t = grid.total(temperature, has_t)
    has_ta = has_t & ~np.isnan(ambient)
    n_ta = grid.total(mask=has_ta)
    s_ta = grid.total(temperature - ambient, has_ta)
    discharging = has_v & (current < -config.discharge_current_a)
    n_d = grid.total(mask=discharging)
    s_vd = grid.total(voltage, discharging)
    s_id = grid.total(-current, discharging)
    n_rows = grid.total()
    bad = ~(has_v & has_sg & has_t) | np.isnan(current) | np.isnan(ambient)
    for flag in (C.SENSOR_FAULT, C.OUT_OF_RANGE):
        if flag in frame.columns:
            bad |= frame[flag].fillna(False).astype(bool).to_numpy()
    n_bad = grid.total(mask=bad)

    # Bucket-level means and their string-peer medians.
    v_b = _divide(s_v, n_v) + np.nan_to_num(v_center)[grid.row_cell]
    sg_b = _divide(s_sg, n_sg) + np.nan_to_num(sg_center)[grid.row_cell]
    t_b = _divide(s_t, n_t)
    vd_b = _divide(s_vd, n_d)
    id_b = _divide(s_id, n_d)
    peers = _string_median(grid, device_codes, {"v": v_b, "sg": sg_b, "t": t_b, "vd": vd_b})
    sg_mean = _string_median(grid, device_codes, {"sg": sg_b}, how="mean")["sg"]
    v_dev = v_b - peers["v"]
    sg_dev = sg_b - peers["sg"]
    t_dev = t_b - peers["t"]
    with np.errstate(invalid="ignore", divide="ignore"):
        resistance = -(vd_b - peers["vd"]) / id_b

    per_day = 24.0 / config.step_hours
    x = (np.arange(grid.size) - grid.offset[grid.row_cell]).astype(np.float64)
    min_points = max(3, long // 4)
    n_v_short = _rolling_sum(n_v, short)
    mean_v_short = _divide(_rolling_sum(s_v, short), n_v_short)
    var_v = _divide(_rolling_sum(ss_v, short), n_v_short, min_den=2) - mean_v_short**2
    n_sg_short = _rolling_sum(n_sg, short)
    mean_sg_short = _divide(_rolling_sum(s_sg, short), n_sg_short)
    var_sg = _divide(_rolling_sum(ss_sg, short), n_sg_short, min_den=2) - mean_sg_short**2

    features: dict[str, np.ndarray] = {
        "voltage_mean_short": mean_v_short + np.nan_to_num(v_center)[grid.row_cell],
        "voltage_float_mean_short": _divide(_rolling_sum(s_vf, short), _rolling_sum(n_vf, short)),
        "voltage_std_short": np.sqrt(np.clip(var_v, 0.0, None)),
        "voltage_trend_long": _window_slope(v_b, long, x, min_points) * per_day,
        "voltage_dev_string_short": _window_mean(v_dev, short),
        "voltage_dev_string_long": _window_mean(v_dev, long),
        "voltage_dev_trend_long": _window_slope(v_dev, long, x, min_points) * per_day,
        "voltage_min_dev_string_short": _window_min(v_dev, short),
        "sg_mean_short": mean_sg_short + np.nan_to_num(sg_center)[grid.row_cell],
        "sg_std_short": np.sqrt(np.clip(var_sg, 0.0, None)),
        "sg_trend_long": _window_slope(sg_b, long, x, min_points) * per_day,
        "sg_dev_string_short": _window_mean(sg_dev, short),
        "sg_dev_string_long": _window_mean(sg_dev, long),
        "sg_dev_trend_long": _window_slope(sg_dev, long, x, min_points) * per_day,
        "temp_over_ambient_short": _divide(_rolling_sum(s_ta, short), _rolling_sum(n_ta, short)),
        "temp_over_ambient_long": _divide(_rolling_sum(s_ta, long), _rolling_sum(n_ta, long)),
        "temp_dev_string_short": _window_mean(t_dev, short),
        "temp_dev_trend_long": _window_slope(t_dev, long, x, min_points) * per_day,
        "resistance_proxy_long": _window_mean(resistance, long),
        "missing_rate_short": _divide(_rolling_sum(n_bad, short), _rolling_sum(n_rows, short)),
    }
    # Weeks-long trends: drift of the cell against its peers and against its own baseline (first weeks).
    min_trend_points = max(3, trend // 4)
    min_month_points = max(3, month // 4)
    for name, dev in (("voltage", v_dev), ("sg", sg_dev), ("temp", t_dev)):
        features[f"{name}_dev_slope_trend"] = _window_slope(dev, trend, x, min_trend_points) * per_day
        # the same drift over a month: steadier, and together with the two-week slope it says whether
        # the drift accelerates (wear-out does)
        features[f"{name}_dev_slope_month"] = _window_slope(dev, month, x, min_month_points) * per_day
        features[f"{name}_dev_vs_initial_long"] = _window_mean(dev, long) - _initial_mean(dev, grid, baseline)
    vf_b = _divide(s_vf, n_vf)
    features["voltage_float_slope_trend"] = _window_slope(vf_b, trend, x, min_trend_points) * per_day
    ohmic = _ohmic_series(frame, codes, grid, config, vf_b, vd_b, id_b, long)
    if not any(c in frame.columns for c in OHMIC_COLUMNS):
        # The apparent resistance varies with each discharge's depth and rate: relative to the string's
        # median in the same bucket, only the cell's own change remains.
        ohmic = ohmic / _string_median(grid, device_codes, {"r": ohmic})["r"]
    # Baseline: the cell's first ``baseline`` buckets that have an ohmic value (discharges may be days
    # apart and none may fall in the cell's first weeks).
    ohmic_base = _initial_mean(ohmic, grid, baseline, from_first_valid=True)
    ohmic_recent = _window_mean(ohmic, trend)
    features["ohmic_rise"] = _divide(ohmic_recent - ohmic_base, ohmic_base, min_den=1e-9)
    # Its trend (share of the baseline per day); discharges are days apart, so three points suffice.
    relative = _divide(ohmic - ohmic_base, ohmic_base, min_den=1e-9)
    features["ohmic_rise_slope"] = _window_slope(relative, trend, x, 3) * per_day
    features["ohmic_rise_slope_month"] = _window_slope(relative, month, x, 3) * per_day
    features["ohmic_rise_month"] = _divide(_window_mean(ohmic, month) - ohmic_base, ohmic_base, min_den=1e-9)
    # Recent deviation from peers relative to the cell's own usual deviation (removes the
    # manufacturing spread of float voltage, SG and rack-position temperature).
    for name, dev in (("voltage", v_dev), ("sg", sg_dev), ("temp", t_dev)):
        features[f"{name}_dev_vs_baseline_short"] = _window_mean(dev, short) - _expanding_mean(dev, grid)
    if anomalies is not None:
        n_a, s_a = _anomaly_counts(anomalies, cell_index, grid, step_ns)
        features["anomaly_rate_short"] = _divide(_rolling_sum(s_a, short), _rolling_sum(n_a, short))
        features["anomaly_rate_long"] = _divide(_rolling_sum(s_a, long), _rolling_sum(n_a, long))
    else:
        features["anomaly_rate_short"] = np.full(grid.size, np.nan)
        features["anomaly_rate_long"] = np.full(grid.size, np.nan)

    # Data age: buckets since the cell's last bucket with a voltage reading.
    idx = np.arange(grid.size)
    last_seen = np.maximum.accumulate(np.where(n_v > 0, idx, -1))
    cell_first_real = grid.offset[grid.row_cell] + grid.pad
    seen = last_seen >= cell_first_real
    features["data_age_hours"] = np.where(seen, (idx - last_seen) * config.step_hours, np.nan)
    last_voltage = np.where(seen, v_b[np.maximum(last_seen, 0)], np.nan)
    # The physics estimate as model input: days until the first trend crosses its IEEE threshold
    # (log scale; NaN = no trend heads for one) and how far the cell has gone towards any threshold.
    from .trends import trend_to_threshold

    trend = trend_to_threshold(pd.DataFrame({k: v for k, v in features.items()}))
    features["trend_log_days_to_threshold"] = np.log1p(trend["TrendDaysToThreshold"].to_numpy())
    features["trend_progress"] = trend["TrendProgress"].to_numpy()
    features["rule_float_voltage"] = features["voltage_float_mean_short"]
    features["rule_sg_below_string_mean"] = _window_mean(sg_mean - sg_b, short)
    features["rule_ohmic_rise"] = features["ohmic_rise"]

    real = grid.real
    rc = grid.row_cell[real]
    table = pd.DataFrame(
        {
            C.CELL_ID: cell_index.to_numpy()[rc],
            C.DEVICE_ID: np.asarray(device_index)[device_codes[rc]],
            C.CELL_NUMBER: numbers[rc].astype(np.int64),
            C.TIMESTAMP: pd.to_datetime((grid.row_bucket[real] + 1) * step_ns, utc=True),
            "Bucket": grid.row_bucket[real],
            "HistoryHours": (grid.row_bucket[real] - grid.first_bucket[rc] + 1) * config.step_hours,
            "HasReading": n_rows[real] > 0,
            "LastVoltage": last_voltage[real],
        }
    )
    for name in (*FEATURES, *RULE_COLUMNS):
        table[name] = features[name][real].astype(np.float32 if name in FEATURES else np.float64)
    first_ns = np.full(n_cells, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_ns, codes, t_ns)
    last_ns = np.full(n_cells, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_ns, codes, t_ns)
    cells = pd.DataFrame(
        {
            C.CELL_ID: cell_index.to_numpy(),
            C.DEVICE_ID: np.asarray(device_index)[device_codes],
            C.CELL_NUMBER: numbers.astype(np.int64),
            "FirstReading": pd.to_datetime(first_ns, utc=True),
            "LastReading": pd.to_datetime(last_ns, utc=True),
            "Readings": cell_rows,
        }
    )
    log.info("feature grid: %d cells x %d buckets -> %d rows", n_cells, int(grid.length.max() - grid.pad), len(table))
    return FeatureGrid(
        table=table,
        cells=cells,
        config=config,
        data_start=ts.min(),
        data_end=ts.max() if data_end is None else max(ts.max(), pd.Timestamp(data_end)),
        has_anomalies=anomalies is not None,
    )


def feature_matrix(table: pd.DataFrame, features: tuple[str, ...] | list[str] = FEATURES) -> np.ndarray:
    """The model input matrix (float32, NaN = missing) in the feature order the model was trained with."""
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise InputError(f"feature table lacks {', '.join(missing)}")
    # C order: XGBoost copies Fortran-ordered arrays row by row (slow on large tables).
    return np.ascontiguousarray(table[list(features)].to_numpy(dtype=np.float32, na_value=np.nan))


def summary(grid: FeatureGrid) -> dict[str, Any]:
    return {
        "cells": int(len(grid.cells)),
        "grid_rows": int(len(grid.table)),
        "data_start": grid.data_start,
        "data_end": grid.data_end,
        "step_hours": grid.config.step_hours,
    }
