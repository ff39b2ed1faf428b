"""Which features the detectors see, how they are derived, and how to describe them to a person.

The detectors work on the domain features of ``bms_schema.features`` (deviation from
string peers at the same timestamp, temperature over ambient, rates of change, rolling
spread) plus two peer-deviation features computed here (temperature and internal
resistance against the string median at the same timestamp), which need only one packet
of a string and so also work for live readings without history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from bms_schema import columns as C
from bms_schema.errors import InputError

log = logging.getLogger("bms.anomaly")

#: Computed here: a reading minus the median of its string (same device, same timestamp).
#: Peer-relative features cancel what every cell of a string does together (a discharge,
#: a warm afternoon), so a rare but normal operating regime is not mistaken for an anomaly.
#: Fluctuations are compared in decades, ``log10(std + eps) - string median``: a sensor
#: stuck at one value has a rolling SD of exactly 0, i.e. several decades below its peers,
#: which a plain difference of SDs (a few millivolts) would hide.
TEMP_DEV_STRING = "TempDevString"
PEER_FEATURES: dict[str, tuple[str, float | None]] = {
    TEMP_DEV_STRING: (C.TEMPERATURE, None),
    "VoltageRateDevString": ("VoltageRate", None),
    "TemperatureRateDevString": ("TemperatureRate", None),
    "VoltageFluctuationVsString": ("VoltageRollStd", 1e-5),
    "TemperatureFluctuationVsString": ("TemperatureRollStd", 1e-3),
    "SGFluctuationVsString": ("SGRollStd", 1e-5),
    "ResistanceDevString": ("ResistanceProxy", None),
}

#: Computed here from each cell's own history (rows sorted per cell and time internally):
#: the peer deviation minus its trailing mean over the cell's previous readings, which
#: removes a cell's persistent offset from its string (an older cell floats at a lower SG
#: every day; a sudden drop is what matters).
HISTORY_FEATURES: dict[str, str] = {
    "VoltageDevChange": "VoltageDevString",
    "SGDevChange": "SGDevString",
    "TempDevChange": TEMP_DEV_STRING,
}
#: Longest current run of an unchanged reading (voltage, temperature or SG) of the cell, in readings:
#: a stuck sensor repeats its value exactly for hours, a live one does not.
UNCHANGED_RUN = "UnchangedRun"
UNCHANGED_SOURCES: tuple[str, ...] = (C.VOLTAGE, C.TEMPERATURE, C.SPECIFIC_GRAVITY)
BASELINE_READINGS = 96
BASELINE_MIN_READINGS = 8

#: Features the hybrid uses by default, in order (those present in the data are used).
DEFAULT_FEATURES: tuple[str, ...] = (
    "VoltageDevChange",
    "SGDevChange",
    "TempDevChange",
    "TemperatureRateDevString",
    "VoltageFluctuationVsString",
    "TemperatureFluctuationVsString",
    "SGFluctuationVsString",
    UNCHANGED_RUN,
)

#: Units and short descriptions used in the per-flag reason.
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "VoltageDevString": ("V", "voltage vs string peers"),
    "VoltageRateDevString": ("V/h", "voltage rate of change vs string peers"),
    "TemperatureRateDevString": ("degC/h", "temperature rate of change vs string peers"),
    "VoltageFluctuationVsString": ("decades", "voltage rolling SD vs string peers, log10"),
    "TemperatureFluctuationVsString": ("decades", "temperature rolling SD vs string peers, log10"),
    "SGFluctuationVsString": ("decades", "specific gravity rolling SD vs string peers, log10"),
    "ResistanceDevString": ("ohm", "internal resistance proxy vs string peers"),
    "VoltageDevChange": ("V", "voltage vs string peers, change from the cell's usual offset"),
    "SGDevChange": ("", "specific gravity vs string peers, change from the cell's usual offset"),
    "TempDevChange": ("degC", "temperature vs string peers, change from the cell's usual offset"),
    UNCHANGED_RUN: ("readings", "a voltage/temperature/SG reading repeated unchanged (stuck sensor?)"),
    "SGDevString": ("", "specific gravity vs string peers"),
    TEMP_DEV_STRING: ("degC", "temperature vs string peers"),
    "TempAboveAmbient": ("degC", "temperature above ambient"),
    "VoltageRate": ("V/h", "voltage rate of change"),
    "TemperatureRate": ("degC/h", "temperature rate of change"),
    "VoltageRollStd": ("V", "voltage fluctuation"),
    "TemperatureRollStd": ("degC", "temperature fluctuation"),
    "SGRollStd": ("", "specific gravity fluctuation"),
    "VoltageRollMean": ("V", "recent mean voltage"),
    "TemperatureRollMean": ("degC", "recent mean temperature"),
    "SGRollMean": ("", "recent mean specific gravity"),
    "SGCorrected25C": ("", "specific gravity at 25 degC"),
    "ResistanceProxy": ("ohm", "internal resistance proxy"),
    "StateOfCharge": ("%", "state of charge"),
    "HourOfDay": ("h", "hour of day"),
    C.VOLTAGE: ("V", "cell voltage"),
    C.TEMPERATURE: ("degC", "cell temperature"),
    C.SPECIFIC_GRAVITY: ("", "specific gravity"),
    C.CURRENT: ("A", "string current"),
    C.AMBIENT: ("degC", "ambient temperature"),
    C.STRING_VOLTAGE: ("V", "string voltage"),
}


def group_codes(frame: pd.DataFrame) -> np.ndarray:
    """Integer code of each row's string packet: (device, timestamp)."""
    device = pd.factorize(frame[C.DEVICE_ID].to_numpy())[0].astype(np.int64)
    ts = frame[C.TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    ts_codes = np.unique(ts, return_inverse=True)[1].astype(np.int64).ravel()
    return device * (int(ts_codes.max(initial=0)) + 1) + ts_codes


def group_median(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Median of ``values`` over rows with the same code (NaN ignored), broadcast back to each row.

    One sort, no Python loop over groups: within each group the sorted finite values sit
    first (NaN sorts last), so the median is read at the group's middle positions.
    """
    n = len(values)
    if n == 0:
        return values.copy()
    dense = np.unique(codes, return_inverse=True)[1].ravel()
    order = np.lexsort((values, dense))
    sorted_values = values[order]
    groups = int(dense.max()) + 1
    start = np.searchsorted(dense[order], np.arange(groups))
    count = np.bincount(dense, weights=np.isfinite(values), minlength=groups).astype(np.int64)
    lo = start + np.maximum(count - 1, 0) // 2
    hi = start + count // 2
    med = 0.5 * (sorted_values[np.minimum(lo, n - 1)] + sorted_values[np.minimum(hi, n - 1)])
    med[count == 0] = np.nan
    return med[dense]


#: Above this many rows pandas' hash-based groupby median beats the sort-based NumPy one.
PANDAS_GROUPBY_ROWS = 20_000


def _floats(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def peer_inputs(columns: Mapping[str, np.ndarray], names: Iterable[str]) -> dict[str, np.ndarray]:
    """For each :data:`PEER_FEATURES` name among ``names`` whose source is in ``columns``, the value
    compared with its string median: the source itself, or ``log10(max(x, 0) + eps)``.

    The feature is this value minus its median over the string at the same timestamp; callers
    bring the median (:func:`peer_features` here, the live service over remembered peers).
    """
    out: dict[str, np.ndarray] = {}
    for name in names:
        source, eps = PEER_FEATURES[name]
        column = columns.get(source)
        if column is not None:
            out[name] = column if eps is None else np.log10(np.clip(column, 0.0, None) + eps)
    return out


def peer_features(frame: pd.DataFrame, names: list[str]) -> dict[str, np.ndarray]:
    """The :data:`PEER_FEATURES` among ``names`` whose source column is present, as arrays.

    A reading minus the median of its string at the same timestamp; a string with a single
    reported cell has deviation 0 (no peers to compare with), which the detector reads as
    typical.
    """
    todo = [n for n in names if n in PEER_FEATURES and PEER_FEATURES[n][0] in frame.columns]
    if not todo or C.DEVICE_ID not in frame.columns or C.TIMESTAMP not in frame.columns:
        return {}
    codes = group_codes(frame)
    sources = {PEER_FEATURES[name][0] for name in todo}
    values = peer_inputs({source: _floats(frame, source) for source in sources}, todo)
    if len(frame) > PANDAS_GROUPBY_ROWS:  # one hash-based pass over all columns
        table = pd.DataFrame(values)
        medians = table.groupby(codes, sort=False).transform("median")
        return {name: values[name] - medians[name].to_numpy() for name in todo}
    return {name: values[name] - group_median(codes, values[name]) for name in todo}


def _cell_order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorting by (cell, time), and for each sorted row the sorted index of its cell's first row."""
    from bms_schema.grouped import cell_starts

    codes = pd.factorize(frame[C.CELL_ID].to_numpy())[0]
    ts = frame[C.TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts, codes))
    return order, cell_starts(codes[order])


def trailing_mean(values: np.ndarray, starts: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """Mean of the previous ``window`` readings of the same cell (current row excluded); NaN if too few."""
    n = len(values)
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(n)
    lo = np.maximum(starts, idx - window)
    total = csum[idx] - csum[lo]
    count = ccnt[idx] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_count, total / np.maximum(count, 1), np.nan)


def unchanged_run(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each row, how many consecutive readings of the cell (ending here) have exactly this value."""
    n = len(values)
    idx = np.arange(n)
    same = np.zeros(n, dtype=bool)
    same[1:] = (values[1:] == values[:-1]) & (starts[1:] == starts[:-1])
    run_start = np.maximum.accumulate(np.where(same, 0, idx))
    return (idx - run_start + 1).astype(np.float64)


def sorted_history_features(columns: Mapping[str, np.ndarray], starts: np.ndarray,
                            names: Iterable[str]) -> dict[str, np.ndarray]:
    """:data:`HISTORY_FEATURES` and :data:`UNCHANGED_RUN` among ``names`` whose sources are in ``columns``,
    on rows sorted by (cell, time); ``starts`` from ``bms_schema.grouped.cell_starts``.

    The array-level definition, shared by :func:`history_features` and the live service.
    """
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == UNCHANGED_RUN:
            if all(c in columns for c in UNCHANGED_SOURCES):
                out[name] = np.maximum.reduce([unchanged_run(columns[c], starts) for c in UNCHANGED_SOURCES])
        elif name in HISTORY_FEATURES and HISTORY_FEATURES[name] in columns:
            dev = columns[HISTORY_FEATURES[name]]
            out[name] = dev - trailing_mean(dev, starts, BASELINE_READINGS, BASELINE_MIN_READINGS)
    return out


def history_features(frame: pd.DataFrame, names: list[str], sources: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:data:`HISTORY_FEATURES` and :data:`UNCHANGED_RUN` among ``names``, from each cell's history.

    Vectorised on (cell, time)-sorted arrays with cumulative sums; results are in the
    caller's row order. A reading without history gets NaN (change) or 1 (run), which the
    detector reads as typical. ``sources`` holds peer features computed but not in ``frame``.
    """
    def column(name: str) -> np.ndarray | None:
        if name in sources:
            return sources[name]
        if name in frame.columns:
            return _floats(frame, name)
        return None

    if C.CELL_ID not in frame.columns or C.TIMESTAMP not in frame.columns:
        return {}
    needed = [HISTORY_FEATURES[n] for n in names if n in HISTORY_FEATURES]
    if UNCHANGED_RUN in names and all(c in frame.columns for c in UNCHANGED_SOURCES):
        needed += UNCHANGED_SOURCES
    available = {name: values for name in dict.fromkeys(needed) if (values := column(name)) is not None}
    if not available:
        return {}
    order, starts = _cell_order(frame)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    computed = sorted_history_features({k: v[order] for k, v in available.items()}, starts, names)
    return {name: values[inverse] for name, values in computed.items()}


def local_features(frame: pd.DataFrame, wanted: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """The locally computed features among ``wanted`` that ``frame`` does not already have."""
    missing = [w for w in wanted if w not in frame.columns]
    peer_names = [w for w in missing if w in PEER_FEATURES]
    peer_names += [HISTORY_FEATURES[w] for w in missing if w in HISTORY_FEATURES
                   and HISTORY_FEATURES[w] in PEER_FEATURES and HISTORY_FEATURES[w] not in frame.columns]
    computed = peer_features(frame, list(dict.fromkeys(peer_names)))
    history = [w for w in missing if w in HISTORY_FEATURES or w == UNCHANGED_RUN]
    if history:
        computed.update(history_features(frame, history, computed))
    return {k: v for k, v in computed.items() if k in missing}


def derive_features(frame: pd.DataFrame, wanted: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """``frame`` plus the locally computed features among ``wanted`` as columns (one concat)."""
    computed = local_features(frame, wanted)
    if not computed:
        return frame
    return pd.concat([frame, pd.DataFrame(computed, index=frame.index)], axis=1)


def select_features(frame: pd.DataFrame, requested: list[str] | None = None,
                    computed: dict[str, np.ndarray] | None = None) -> list[str]:
    """The features to train on: ``requested`` (all must exist) or the defaults present.

    A feature exists when ``frame`` has it as a numeric column or it is in ``computed``.
    """
    computed = computed or {}

    def usable(name: str) -> bool:
        if name in computed:
            return bool(np.isfinite(computed[name]).any())
        return name in frame.columns and _is_numeric(frame[name]) and bool(frame[name].notna().any())

    if requested:
        missing = [c for c in requested if c not in frame.columns and c not in computed]
        if missing:
            raise InputError(
                f"feature column(s) {', '.join(missing)} not in the data; available numeric columns: "
                f"{', '.join(numeric_columns(frame)[:30])}"
            )
        bad = [c for c in requested if c in frame.columns and c not in computed and not _is_numeric(frame[c])]
        if bad:
            raise InputError(f"feature column(s) {', '.join(bad)} are not numeric")
        return list(dict.fromkeys(requested))
    chosen = [c for c in DEFAULT_FEATURES if usable(c)]
    if len(chosen) < 2:
        numeric = numeric_columns(frame)
        raise InputError(
            "no usable numeric features: the anomaly detector needs at least two of "
            f"{', '.join(DEFAULT_FEATURES)} (run the preprocessing step or pass raw BMS readings); "
            f"the data has numeric columns {', '.join(numeric[:20]) or 'none'}"
        )
    return chosen


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if _is_numeric(frame[c])]


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def feature_matrix(frame: pd.DataFrame, features: list[str],
                   computed: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``float64`` matrix of ``features`` from ``frame`` or ``computed`` (all-NaN when neither has it)."""
    computed = computed or {}
    out = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        if name in frame.columns:
            out[:, j] = _floats(frame, name)
        elif name in computed:
            out[:, j] = computed[name]
        else:
            out[:, j] = np.nan
    return out


def describe_deviation(feature: str, value: float, z: float) -> str:
    """``"VoltageDevString = -0.210 V (voltage vs string peers, 9.1 robust SD below normal)"``."""
    unit, what = DESCRIPTIONS.get(feature, ("", feature))
    direction = "above" if z > 0 else "below"
    shown = "missing" if not np.isfinite(value) else f"{value:.4g}{(' ' + unit) if unit else ''}"
    return f"{feature} = {shown} ({what}, {abs(z):.1f} robust SD {direction} normal)"
