"""Which features the detectors see, how they are derived, and how to describe them to a person.

The detectors work on the domain features of ``bms_schema.features`` (deviation from
string peers at the same timestamp, temperature over ambient, rates of change, rolling
spread) plus two peer-deviation features computed here (temperature and internal
resistance against the string median at the same timestamp), which need only one packet
of a string and so also work for live readings without history.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.errors import InputError
from numpy.lib.stride_tricks import sliding_window_view

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
#: the peer deviation minus the value a line through the cell's previous deviations predicts,
#: which removes a cell's persistent offset from its string and follows its slow drift (an older
#: cell floats at a lower SG, a little lower each day; a sudden drop is what matters).
HISTORY_FEATURES: dict[str, str] = {
    "VoltageDevChange": "VoltageDevString",
    "SGDevChange": "SGDevString",
    "TempDevChange": TEMP_DEV_STRING,
}
#: Computed here from the cell's own history when it has no peers (one cell / a monobloc per string):
#: the reading minus the value a line through its previous readings in the same operating-state run
#: predicts (the last :data:`OWN_BASELINE_SECONDS`, at least :data:`OWN_BASELINE_READINGS` readings;
#: :func:`trailing_trend`), so a discharge starting is not a change, the voltage falling through it
#: is followed, and a sag or a hot spot within it stands out.
OWN_FEATURES: dict[str, str] = {
    "VoltageChangeOwn": C.VOLTAGE,
    "SGChangeOwn": C.SPECIFIC_GRAVITY,
    "TempChangeOwn": C.TEMPERATURE,
}
OWN_BASELINE_SECONDS = 1800.0
OWN_BASELINE_READINGS = 12
#: The own-history outlier screen: a trailing median over the previous hour of the state run (at least
#: :data:`OWN_BASELINE_READINGS` readings), and the residual scale from the median absolute residual of the
#: previous :data:`OWN_SCALE_READINGS` readings: a fault shorter than half of either (30 min at 5 s) neither
#: moves the screen nor widens it, so it stays out of the trend line and leaves no echo after it ends.
OWN_SCREEN_SECONDS = 3600.0
OWN_SCALE_READINGS = 720
#: Passes of the own-history outlier screen (:func:`screened_baseline` with ``median_scale``): each screens
#: against the readings the previous one kept, so the screen follows what a reading-by-reading screen
#: would keep (the passes stop early once nothing changes, which gives the same result).
SCREEN_PASSES = 3
#: Longest current run of an unchanged reading (voltage, temperature or SG) of the cell, in readings:
#: a stuck sensor repeats its value exactly for hours, a live one does not.
UNCHANGED_RUN = "UnchangedRun"
UNCHANGED_SOURCES: tuple[str, ...] = (C.VOLTAGE, C.TEMPERATURE, C.SPECIFIC_GRAVITY)
BASELINE_READINGS = 96
BASELINE_MIN_READINGS = 8

#: Features the hybrid uses by default on strings with peers, in order (those present in the data
#: are used). The rolling-SD fluctuation features are not among them: a spike keeps a 12-reading
#: rolling SD high for 11 more readings, and those echoes were 84 % of the false alarms on
#: held-out fleets (precision 0.88 -> 0.96 without them, recall unchanged within 0.02). Nor is
#: ``TemperatureRateDevString``: it flags the cooling after a thermal excursion ends, and its noise cost
#: recall (0.76-0.83 vs 0.85-0.90 on flooded development fleets 71-74).
DEFAULT_FEATURES: tuple[str, ...] = (
    "VoltageDevChange",
    "SGDevChange",
    "TempDevChange",
    UNCHANGED_RUN,
)
#: Features used when the strings have fewer than :data:`MIN_PEERS` cells (nothing to compare with).
PEERLESS_FEATURES: tuple[str, ...] = ("VoltageChangeOwn", "SGChangeOwn", "TempChangeOwn")
MIN_PEERS = 3

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
    "VoltageChangeOwn": ("V", "voltage vs the cell's own recent readings in this operating state"),
    "SGChangeOwn": ("", "specific gravity vs the cell's own recent readings in this operating state"),
    "TempChangeOwn": ("degC", "temperature vs the cell's own recent readings in this operating state"),
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
    """The column as float64, always a copy: callers blank values in place (a 0xFFFF reading), which on a view
    would change the caller's frame (a second scoring of the same frame then differed from the first)."""
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)


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


def trailing_mean_time(
    values: np.ndarray, starts: np.ndarray, seconds: np.ndarray, window_s: float, min_count: int
) -> np.ndarray:
    """Mean of the previous readings of the same segment within ``window_s`` seconds (current row excluded)."""
    n = len(values)
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(n)
    # segments are contiguous and time-sorted: offset each segment's times so one searchsorted works
    seg = np.cumsum(np.r_[True, starts[1:] != starts[:-1]]) - 1
    key = seconds - seconds[starts] + seg * (float(np.nanmax(seconds) - np.nanmin(seconds)) + 10 * window_s + 1.0)
    lo = np.maximum(starts, np.searchsorted(key, key - window_s, side="left"))
    total = csum[idx] - csum[lo]
    count = ccnt[idx] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_count, total / np.maximum(count, 1), np.nan)


#: Readings more than this many robust SDs from a first baseline are left out of the second one.
BASELINE_OUTLIER_SD = 4.0

#: The causal screen's bound in SDs estimated from the mean absolute residual: lower than
#: :data:`BASELINE_OUTLIER_SD` because the trailing mean, unlike the MAD, is inflated by the very
#: outliers it screens (3 vs 4-5: F1 0.93 vs 0.90-0.92 in tests/anomaly/test_hybrid.py).
CAUSAL_OUTLIER_SD = 3.0

#: Mean absolute deviation -> standard deviation for normal residuals (sqrt(pi / 2)).
_MEAN_ABS_TO_SD = 1.2533141373155

#: Previous readings needed for exact history features: the first and the second baseline reach back
#: :data:`BASELINE_READINGS` each, the trailing residual scale that screens them :data:`SCALE_READINGS`. The live
#: service remembers at least this many readings per cell so it reproduces the batch features.
#: Previous residuals of a segment that estimate its residual SD for the outlier screen.
SCALE_READINGS = 4 * BASELINE_READINGS
HISTORY_REACH = 2 * BASELINE_READINGS + SCALE_READINGS + 1
#: The same for the own-history features (strings without peers) at 5-second sampling or slower: the trend
#: line's outlier screen reaches back an hour (720 readings at 5 s), the residual scale
#: :data:`OWN_SCALE_READINGS` residuals, each screened an hour back; each of the :data:`SCREEN_PASSES`
#: passes reaches that far behind the previous one's, and the trend line half an hour (360) more.
OWN_HISTORY_REACH = SCREEN_PASSES * (OWN_SCALE_READINGS + 720) + 720 + 1


def trailing_median(
    values: np.ndarray,
    starts: np.ndarray,
    seconds: np.ndarray | None,
    window_s: float,
    min_readings: int,
    min_count: int,
) -> np.ndarray:
    """Median of the previous readings of the same segment (current row excluded): those within
    ``window_s`` seconds, or the last ``min_readings`` readings when the time window holds fewer
    (``seconds`` None: always the last ``min_readings``); NaN if fewer than ``min_count`` finite ones.

    Causal and robust: an anomaly lasting less than half the window does not move it (a trailing
    mean follows a 10-minute hot spot and echoes it as a cold anomaly after it ends)."""
    n = len(values)
    if n == 0:
        return values.astype(np.float64)
    seg = np.cumsum(np.r_[True, starts[1:] != starts[:-1]]) - 1
    series = pd.Series(values, dtype=np.float64)
    by_count = (
        series.groupby(seg, sort=False).rolling(min_readings, min_periods=min_count, closed="left").median().to_numpy()
    )
    if seconds is None:
        return by_count
    stamps = pd.to_datetime(np.round(seconds * 1e3).astype(np.int64), unit="ms")
    timed = pd.DataFrame({"x": values, "seg": seg, "t": stamps})
    rolled = timed.groupby("seg", sort=False).rolling(f"{int(window_s)}s", on="t", closed="left", min_periods=min_count)
    by_time = rolled["x"].median().to_numpy()
    count = rolled["x"].count().to_numpy()
    return np.where(count >= min_readings, by_time, by_count)


#: Median absolute deviation -> standard deviation for normal residuals.
_MAD_TO_SD = 1.4826


def screened_baseline(
    values: np.ndarray,
    baseline: Callable[[np.ndarray], np.ndarray],
    groups: np.ndarray | None = None,
    screen: Callable[[np.ndarray], np.ndarray] | None = None,
    segments: np.ndarray | None = None,
    median_scale: bool = False,
    scale_readings: int = SCALE_READINGS,
    rescreen: Callable[[np.ndarray], np.ndarray] | None = None,
    final: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``baseline(values)`` computed twice: the second time without the readings the first one finds
    far off (more than :data:`BASELINE_OUTLIER_SD` SDs of the residuals, :data:`CAUSAL_OUTLIER_SD`
    for the causal screen), so an anomaly inside the
    trailing window (a 6-hour thermal excursion) does not shift the baseline and echo as a second,
    opposite anomaly after it ends. ``screen``: another baseline to find the far-off readings with
    (a trailing mean, which does not follow a fault the way a trend line does).

    The residual SD: with ``segments`` (start index of each row's segment on (cell, time)-sorted
    rows) it is estimated causally from the previous :data:`SCALE_READINGS` residuals of the segment,
    so a reading's features never depend on later readings or on the size of the batch (what the
    live service needs to reproduce them); otherwise robustly (MAD) over all rows of each of
    ``groups`` (e.g. operating-state codes), which depends on the batch.

    Returns the baseline and the readings screened out of it (a boolean mask)."""
    first = baseline(values)
    resid = values - (first if screen is None else screen(values))
    if segments is not None and median_scale:
        # the median absolute residual is not inflated by the fault it screens (a mean is: 100 readings
        # of a +12 degC hot spot lift a 384-reading mean absolute residual to ~3 degC, and the rest of
        # the hot spot then passes the screen into the baseline)
        outlier = np.zeros(len(values), dtype=bool)
        ref = first if screen is None else screen(values)
        for k in range(SCREEN_PASSES):
            resid = values - ref
            kept = np.where(outlier, np.nan, np.abs(resid))
            scale = _MAD_TO_SD * trailing_median(kept, segments, None, 0.0, scale_readings, 20)
            with np.errstate(invalid="ignore"):
                found = np.isfinite(scale) & (scale > 0) & (np.abs(resid) > CAUSAL_OUTLIER_SD * scale)
            # a fixed point from the second pass on (the first screens with ``screen``, the others with
            # ``rescreen``): stopping there gives what the remaining passes would, on any batch
            if (k > 0 and np.array_equal(found, outlier)) or k + 1 == SCREEN_PASSES:
                outlier = found
                break
            outlier = found
            # the next pass screens against the readings this one kept (``rescreen``, else ``screen``), and
            # takes the scale from their residuals: a fault longer than half of what the state run holds so
            # far (a hot spot 5 min into a discharge) no longer drags the screen and widens its scale
            following = (rescreen or screen or baseline)(np.where(outlier, np.nan, values))
            ref = np.where(np.isfinite(following), following, ref)
    elif segments is not None:
        scale = _MEAN_ABS_TO_SD * trailing_mean(np.abs(resid), segments, SCALE_READINGS, 20)
        with np.errstate(invalid="ignore"):
            outlier = np.isfinite(scale) & (scale > 0) & (np.abs(resid) > CAUSAL_OUTLIER_SD * scale)
    else:
        finite = np.isfinite(resid)
        if finite.sum() < 20:
            return first, np.zeros(len(values), dtype=bool)
        groups = np.zeros(len(values), dtype=np.int64) if groups is None else groups
        outlier = np.zeros(len(values), dtype=bool)
        for g in np.unique(groups):  # a handful of states
            sel = finite & (groups == g)
            if sel.sum() < 20:
                continue
            r = resid[sel]
            mad = 1.4826 * float(np.median(np.abs(r - np.median(r))))
            if np.isfinite(mad) and mad > 0:
                outlier[sel] = np.abs(r - np.median(r)) > BASELINE_OUTLIER_SD * mad
    if not outlier.any() and final is None:
        return first, outlier
    second = (final or baseline)(np.where(outlier, np.nan, values))
    return np.where(np.isfinite(second), second, first), outlier


#: Readings (of the current state run) whose successive changes estimate a cell's resistance online.
RESISTANCE_READINGS = 720
#: Ridge (A^2) of the online resistance estimate: with little current change (float) it stays near 0.
RESISTANCE_RIDGE_A2 = 1.0


def online_resistance(volts: np.ndarray, current: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Resistance (V/A) of each row's cell from its previous readings in the same state run, causally:
    the least-squares slope of successive voltage changes on successive current changes over the
    last :data:`RESISTANCE_READINGS` steps, shrunk to 0 by :data:`RESISTANCE_RIDGE_A2` (a discharge's
    current ripple moves the voltage by I x R; a sag moves it without a current step, so it hardly
    enters the estimate). ``volts - R * current``-style compensation then removes the ripple."""
    n = len(volts)
    if n == 0:
        return np.zeros(0)
    dv = np.full(n, np.nan)
    di = np.full(n, np.nan)
    same = np.zeros(n, dtype=bool)
    same[1:] = runs[1:] == runs[:-1]
    dv[1:] = np.where(same[1:], volts[1:] - volts[:-1], np.nan)
    di[1:] = np.where(same[1:], current[1:] - current[:-1], np.nan)
    ok = np.isfinite(dv) & np.isfinite(di)
    prod = np.where(ok, dv * di, 0.0)
    sq = np.where(ok, di * di, 0.0)
    csum_p = np.concatenate([[0.0], np.cumsum(prod)])
    csum_s = np.concatenate([[0.0], np.cumsum(sq)])
    idx = np.arange(n)
    lo = np.maximum(runs, idx - RESISTANCE_READINGS)
    return (csum_p[idx] - csum_p[lo]) / (csum_s[idx] - csum_s[lo] + RESISTANCE_RIDGE_A2)


def trailing_trend(
    values: np.ndarray,
    starts: np.ndarray,
    seconds: np.ndarray,
    window_s: float,
    min_readings: int,
    min_count: int,
    slope_only: bool = False,
) -> np.ndarray:
    """Value at each row predicted by a least-squares line through the previous readings of its segment
    (the larger of ``window_s`` seconds and ``min_readings`` readings; current row excluded); NaN if
    fewer than ``min_count``. A line, not a mean: a voltage falling through a discharge or a
    temperature cooling after one is followed without lag. ``slope_only``: the line's slope (per hour)."""
    n = len(values)
    idx = np.arange(n)
    t = (seconds - seconds[starts]) / 3600.0  # hours since the segment start: small, exact numbers
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0)
    w = finite.astype(np.float64)
    tw = np.where(finite, t, 0.0)

    def csum(a: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(a)])

    s0, s1, s2, sx, stx = csum(w), csum(tw), csum(tw * tw), csum(x), csum(tw * x)
    lo = _trend_window(starts, seconds, window_s, min_readings)
    c = s0[idx] - s0[lo]
    m1, m2 = s1[idx] - s1[lo], s2[idx] - s2[lo]
    mx, mtx = sx[idx] - sx[lo], stx[idx] - stx[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = c * m2 - m1 * m1
        slope = np.where(var > 1e-12 * np.maximum(c, 1) ** 2, (c * mtx - m1 * mx) / var, 0.0)
        mean_t, mean_x = m1 / c, mx / c
        pred = mean_x + slope * (t - mean_t)
    return np.where(c >= min_count, slope if slope_only else pred, np.nan)


#: Robust SDs off a window's resistant line beyond which a reading is left out of its trend line.
REFIT_BOUND_SD = 4.0
#: Most readings of one trend window the robust refit (:func:`resistant_trend`) looks at; a longer window
#: (30 min at 1 s) is read at evenly spaced readings.
REFIT_READINGS = 512
#: Rows per block of the robust refit (a block is ``rows x window`` floats).
REFIT_BLOCK_ROWS = 2048


def _trend_window(starts: np.ndarray, seconds: np.ndarray, window_s: float, min_readings: int) -> np.ndarray:
    """First index of each row's trend window (:func:`trailing_trend`): the segment's previous readings within
    ``window_s`` seconds, or its last ``min_readings`` when the time window holds fewer."""
    n = len(starts)
    idx = np.arange(n)
    if n == 0:
        return idx
    seg = np.cumsum(np.r_[True, starts[1:] != starts[:-1]]) - 1
    offset = float(np.nanmax(seconds) - np.nanmin(seconds)) + 10 * window_s + 1.0
    key = seconds - seconds[starts] + seg * offset
    lo_time = np.searchsorted(key, key - window_s, side="left")
    return np.maximum(starts, np.minimum(lo_time, idx - min_readings))


def row_nanmedian(X: np.ndarray) -> np.ndarray:
    """``np.nanmedian(X, axis=1)`` (NaN for a row without a value), by one sort: NumPy's own goes through
    masked arrays for rows this short, which made :func:`resistant_trend` most of the scoring time."""
    S = np.sort(X, axis=1)  # NaN last
    n = np.count_nonzero(~np.isnan(X), axis=1)
    lo = np.maximum((n - 1) // 2, 0)[:, None]
    hi = np.maximum(n // 2, 0)[:, None]
    mid = 0.5 * (np.take_along_axis(S, lo, axis=1)[:, 0] + np.take_along_axis(S, hi, axis=1)[:, 0])
    return np.where(n > 0, mid, np.nan)


def _thirds_slope(X: np.ndarray, T: np.ndarray, first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per row of ``X`` (values) and ``T`` (times), the slope of Tukey's resistant line through the readings in
    columns ``first .. first + count``: from the medians of their first and last thirds (0 with fewer than 6)."""
    third = np.maximum(count // 3, 1)
    kk = np.arange(int(third.max(initial=1)))[None, :]
    in_third = kk < third[:, None]
    left = in_third & (kk < count[:, None])
    L = np.where(left, first[:, None] + kk, 0)
    R = (first + count - third)[:, None] + kk
    right = in_third & (R >= first[:, None])
    R = np.where(right, R, 0)
    x_l = row_nanmedian(np.where(left, np.take_along_axis(X, L, axis=1), np.nan))
    t_l = row_nanmedian(np.where(left, np.take_along_axis(T, L, axis=1), np.nan))
    x_r = row_nanmedian(np.where(right, np.take_along_axis(X, R, axis=1), np.nan))
    t_r = row_nanmedian(np.where(right, np.take_along_axis(T, R, axis=1), np.nan))
    dt = t_r - t_l
    slope = np.where(np.isfinite(dt) & (dt > 1e-9) & (count >= 6), (x_r - x_l) / np.where(dt > 1e-9, dt, 1.0), 0.0)
    return np.nan_to_num(slope)


def resistant_trend(
    values: np.ndarray,
    starts: np.ndarray,
    seconds: np.ndarray,
    window_s: float,
    min_readings: int,
    min_count: int,
    bound_sd: float,
    rows: np.ndarray | None = None,
    recent: bool = False,
) -> np.ndarray:
    """A trend line through each row's trend window (:func:`trailing_trend`'s, current row excluded) that
    readings far off the window's own resistant line do not tilt; NaN where fewer than ``min_count`` remain.

    Per row: Tukey's resistant line through the window (slope from the medians of its first and last thirds,
    level from the median), the readings more than ``bound_sd`` robust SDs (the window's own MAD) off it left
    out, and a least-squares line through the rest, evaluated at the row's time. Every reading of the window is
    judged against the window as it stands at this row, not only against the readings before it: a fault at
    the start of a state run (a sag the discharge began in) had no past to be screened against when it
    happened, and a line through it stayed tilted for the whole window (30 min of flags after it). Causal:
    only readings before the row enter; vectorised over blocks of rows x window readings.

    ``rows`` (indices, ascending): the only rows whose line is wanted (the others stay NaN); the live service
    asks for the readings that just arrived, not for the remembered ones their windows reach back to.

    ``recent``: also a resistant line through the most recent half of the window; where it fits the whole window
    better (a smaller median absolute residual), it judges the readings instead. A fault the state run began in
    (a sag 20 s into a discharge) is most of the first third, and tilts the thirds' line for as long as it stays
    there (30 min); once the readings after it outnumber it, the recent line fits the window and leaves it out."""
    n = len(values)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    lo_all = _trend_window(starts, seconds, window_s, min_readings)
    wanted = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    lo_w, count_w, seconds_w = lo_all[wanted], wanted - lo_all[wanted], seconds[wanted]
    finite_x = np.where(np.isfinite(values), values, np.nan)
    x_windows = sliding_window_view(np.r_[finite_x, np.full(REFIT_READINGS, np.nan)], REFIT_READINGS)
    t_windows = sliding_window_view(np.r_[seconds.astype(np.float64), np.zeros(REFIT_READINGS)], REFIT_READINGS)
    for a in range(0, len(wanted), REFIT_BLOCK_ROWS):
        b = min(len(wanted), a + REFIT_BLOCK_ROWS)
        c, lo, at = count_w[a:b], lo_w[a:b], seconds_w[a:b, None]
        m = np.minimum(c, REFIT_READINGS)
        width = int(m.max(initial=0))
        if width < min_count:
            continue
        k = np.arange(width)
        valid = k[None, :] < m[:, None]
        if int(c.max()) <= REFIT_READINGS:  # every reading of each window: contiguous slices
            X = np.where(valid, x_windows[lo, :width], np.nan)
            T = np.where(valid, (t_windows[lo, :width] - at) / 3600.0, np.nan)
        else:  # long windows read at evenly spaced readings
            step = np.maximum(c / np.maximum(m, 1), 1.0)
            J = lo[:, None] + np.floor(k[None, :] * step[:, None]).astype(np.int64)
            J = np.where(valid, J, 0)
            X = np.where(valid, finite_x[J], np.nan)
            T = np.where(valid, (seconds[J] - at) / 3600.0, np.nan)
        T = np.where(np.isfinite(X), T, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            slope = _thirds_slope(X, T, np.zeros_like(m), m)
            level = row_nanmedian(X - slope[:, None] * T)
            resid = X - level[:, None] - slope[:, None] * T
            mad = row_nanmedian(np.abs(resid))
            if recent:
                half = m // 2
                first = m - half
                slope_b = _thirds_slope(X, T, first, half)
                in_b = (k[None, :] >= first[:, None]) & valid
                level_b = row_nanmedian(np.where(in_b, X - slope_b[:, None] * T, np.nan))
                resid_b = X - level_b[:, None] - slope_b[:, None] * T
                mad_b = row_nanmedian(np.abs(resid_b))
                use_b = (half >= 6) & np.isfinite(mad_b) & (mad_b < mad)
                resid = np.where(use_b[:, None], resid_b, resid)
                mad = np.where(use_b, mad_b, mad)
            scale = _MAD_TO_SD * mad
        with np.errstate(invalid="ignore"):
            keep = np.abs(resid) <= bound_sd * scale[:, None]
        w = keep.astype(np.float64)
        x0 = np.where(keep, X, 0.0)
        t0 = np.where(keep, T, 0.0)
        s0, s1, s2 = w.sum(axis=1), t0.sum(axis=1), (t0 * t0).sum(axis=1)
        sx, stx = x0.sum(axis=1), (t0 * x0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = s0 * s2 - s1 * s1
            ls = np.where(var > 1e-12 * np.maximum(s0, 1) ** 2, (s0 * stx - s1 * sx) / var, 0.0)
            pred = sx / s0 - ls * s1 / s0  # at the row's own time (T = 0)
        out[wanted[a:b]] = np.where(s0 >= min_count, pred, np.nan)
    return out


def sliding_median(values: np.ndarray, runs: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """The own-history screen once outliers are known (NaN in ``values``): the median of the previous
    hour's readings of the run (:data:`OWN_SCREEN_SECONDS`, at least :data:`OWN_BASELINE_READINGS`),
    moved along their least-squares slope from their median time to the reading's. A plain trailing median
    lags a voltage falling through a discharge by half an hour's fall (-15 mV): the residuals, and with
    them the screen's scale, grow with the slope, and a hot spot's -36 mV passed a 3 x 16 mV screen. The
    slope is only taken from readings already screened (a fault inside the window would tilt it), and
    trusted in proportion to the part of the hour the run has lasted: a few readings of a fault the
    previous pass missed tilt a line through a few minutes' readings a lot (and a median through them
    lags little)."""
    kept = np.isfinite(values)
    level = trailing_median(values, runs, seconds, OWN_SCREEN_SECONDS, OWN_BASELINE_READINGS, BASELINE_MIN_READINGS)
    at = trailing_median(
        np.where(kept, seconds - seconds[runs], np.nan),
        runs,
        seconds,
        OWN_SCREEN_SECONDS,
        OWN_BASELINE_READINGS,
        BASELINE_MIN_READINGS,
    )
    per_hour = trailing_trend(
        values, runs, seconds, OWN_SCREEN_SECONDS, OWN_BASELINE_READINGS, BASELINE_MIN_READINGS, slope_only=True
    )
    elapsed = seconds - seconds[runs]
    trust = np.clip(elapsed / OWN_SCREEN_SECONDS, 0.0, 1.0)
    return level + trust * np.nan_to_num(per_hour) * (elapsed - at) / 3600.0


def state_runs(starts: np.ndarray, states: np.ndarray) -> np.ndarray:
    """For each row of (cell, time)-sorted arrays, the index of the first row of its contiguous state run."""
    n = len(starts)
    idx = np.arange(n)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (starts[1:] != starts[:-1]) | (states[1:] != states[:-1])
    return np.maximum.accumulate(np.where(new, idx, 0))


def sorted_history_features(
    columns: Mapping[str, np.ndarray],
    starts: np.ndarray,
    names: Iterable[str],
    states: np.ndarray | None = None,
    seconds: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:data:`HISTORY_FEATURES`, :data:`OWN_FEATURES` and :data:`UNCHANGED_RUN` among ``names`` whose
    sources are in ``columns``, on rows sorted by (cell, time); ``starts`` from
    ``bms_schema.grouped.cell_starts``.

    ``states`` (operating-state codes per row, optional): own-history changes compare with the
    current state run only, and the own-history baselines judge outliers per state. The peer-deviation
    baselines (:data:`HISTORY_FEATURES`) are causal (see :func:`screened_baseline`): the live service
    reproduces them from :data:`HISTORY_REACH` remembered readings per cell. (A peer deviation
    compared with the cell's usual deviation *in the same state* was measured and dropped: a
    cell has few discharges, one bad one poisons the next; F1 0.80 vs 0.87 on held-out fleets.) ``seconds`` (time of each row) bounds the own
    baseline to :data:`OWN_BASELINE_SECONDS`; without it the last :data:`BASELINE_READINGS`.
    The array-level definition, shared by :func:`history_features` and the live service.
    ``rows`` (ascending indices): only these rows' features are wanted (the live service's new readings); the
    others may differ from their full values (their resistant trend refit is skipped).
    """
    out: dict[str, np.ndarray] = {}
    state_runs_v = state_runs(starts, np.asarray(states, dtype=np.int64)) if states is not None else starts
    state_arr = None if states is None else np.asarray(states, dtype=np.int64)
    hot: np.ndarray | None = None  # temperature readings screened out of their own baseline
    # the temperature first: its screen also keeps hot readings out of the voltage's baseline
    names = sorted(names, key=lambda n: n != "TempChangeOwn")
    for name in names:
        if name == UNCHANGED_RUN:
            present = [c for c in UNCHANGED_SOURCES if c in columns]
            if present and (C.VOLTAGE in columns):
                out[name] = np.maximum.reduce([unchanged_run(columns[c], starts) for c in present])
        elif name in HISTORY_FEATURES and HISTORY_FEATURES[name] in columns:
            dev = columns[HISTORY_FEATURES[name]]
            # a line, not a mean, through the previous readings' deviations: a cell drifting from its peers
            # over days (ageing, a slow SG decline) is followed, a sudden change stands out; outliers are
            # screened against the trailing mean, which does not follow a fault the way a line does
            pos = seconds if seconds is not None else np.arange(len(dev), dtype=np.float64)
            base = screened_baseline(
                dev,
                lambda v: trailing_trend(v, starts, pos, 0.0, BASELINE_READINGS, BASELINE_MIN_READINGS),
                screen=lambda v: trailing_mean(v, starts, BASELINE_READINGS, BASELINE_MIN_READINGS),
                segments=starts,
                final=lambda v: resistant_trend(
                    v, starts, pos, 0.0, BASELINE_READINGS, BASELINE_MIN_READINGS, REFIT_BOUND_SD, rows
                ),
            )[0]
            out[name] = dev - base
        elif name in OWN_FEATURES and OWN_FEATURES[name] in columns:
            x = columns[OWN_FEATURES[name]]
            # the voltage steps where the current does (a state change), the temperature and the acid's
            # SG are continuous (thermal mass, diffusion): their baseline runs on across state changes,
            # so a hot spot early in a discharge is judged against the readings before it
            runs = state_runs_v if name == "VoltageChangeOwn" else starts
            if seconds is None:
                base = screened_baseline(
                    x, lambda v: trailing_mean(v, runs, BASELINE_READINGS, BASELINE_MIN_READINGS), state_arr
                )[0]
            else:
                source = x
                if name == "VoltageChangeOwn" and C.TEMPERATURE in columns:
                    # readings during a temperature excursion stay out of the voltage baseline: a hot spot
                    # pulls the voltage down (about -3 mV/degC/cell), and a state run that began inside one
                    # (a recharge ending into float) would otherwise take the hot readings as its level and
                    # flag the voltage's return for half an hour after the hot spot ends
                    if hot is None:
                        hot = own_baseline(columns[C.TEMPERATURE], starts, seconds, rows)[1]
                    source = np.where(hot, np.nan, x)
                base, screened = own_baseline(source, runs, seconds, rows)
                if name == "TempChangeOwn":
                    hot = screened
                if name == "VoltageChangeOwn" and C.CURRENT in columns:
                    # the current's ripple around its own trend moves the voltage by R x ripple (R estimated
                    # online): removed, so a heavy discharge's ripple is not a voltage anomaly (only the
                    # ripple is multiplied by R, so an imprecise R hardly matters where the current is steady)
                    amps = columns[C.CURRENT]
                    amps_trend = trailing_trend(
                        amps, runs, seconds, OWN_BASELINE_SECONDS, OWN_BASELINE_READINGS, BASELINE_MIN_READINGS
                    )
                    ripple = np.nan_to_num(amps - amps_trend)
                    base = base + online_resistance(x, np.nan_to_num(amps), runs) * ripple
            out[name] = x - base
    return out


def own_baseline(
    values: np.ndarray, runs: np.ndarray, seconds: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The own-history baseline of :data:`OWN_FEATURES` (a resistant trend line through the previous
    :data:`OWN_BASELINE_SECONDS` of the run, outliers screened against the trailing median) and the
    readings screened out of it (on every row). ``rows``: the rows whose baseline is wanted (see
    :func:`sorted_history_features`)."""
    return screened_baseline(
        values,
        lambda v: trailing_trend(v, runs, seconds, OWN_BASELINE_SECONDS, OWN_BASELINE_READINGS, BASELINE_MIN_READINGS),
        screen=lambda v: trailing_median(
            v, runs, seconds, OWN_SCREEN_SECONDS, OWN_BASELINE_READINGS, BASELINE_MIN_READINGS
        ),
        segments=runs,
        median_scale=True,
        scale_readings=OWN_SCALE_READINGS,
        rescreen=lambda v: sliding_median(v, runs, seconds),
        final=lambda v: resistant_trend(
            v,
            runs,
            seconds,
            OWN_BASELINE_SECONDS,
            OWN_BASELINE_READINGS,
            BASELINE_MIN_READINGS,
            REFIT_BOUND_SD,
            rows,
            recent=True,
        ),
    )


def state_codes(frame: pd.DataFrame) -> np.ndarray:
    """Operating-state code of each row (index into ``bms_schema.state.STATES``): the frame's
    ``OperatingState`` column, else derived from current and voltage, else all float (0)."""
    from bms_schema.state import OPERATING_STATE, STATE_DTYPE, operating_state

    if OPERATING_STATE in frame.columns:
        values = frame[OPERATING_STATE]
        codes = pd.Categorical(values.astype("string").str.lower(), dtype=STATE_DTYPE).codes.astype(np.int64)
        return np.where(codes < 0, 0, codes)
    if C.TIMESTAMP in frame.columns and C.VOLTAGE in frame.columns and len(frame):
        try:
            return operating_state(frame).cat.codes.to_numpy().astype(np.int64)
        except InputError:
            pass
    return np.zeros(len(frame), dtype=np.int64)


def history_features(
    frame: pd.DataFrame, names: list[str], sources: dict[str, np.ndarray], states: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """:data:`HISTORY_FEATURES`, :data:`OWN_FEATURES` and :data:`UNCHANGED_RUN` among ``names``, from each
    cell's history (per operating state, see :func:`sorted_history_features`).

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
    needed += [OWN_FEATURES[n] for n in names if n in OWN_FEATURES]
    if "VoltageChangeOwn" in names:
        needed += [C.CURRENT, C.TEMPERATURE]  # the temperature's screen keeps hot readings out of its baseline
    if UNCHANGED_RUN in names:
        needed += [c for c in UNCHANGED_SOURCES if c in frame.columns]
    available = {name: values for name in dict.fromkeys(needed) if (values := column(name)) is not None}
    if not available:
        return {}
    order, starts = _cell_order(frame)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    if states is None:
        states = state_codes(frame)
    seconds = frame[C.TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)[order] / 1e9
    computed = sorted_history_features(
        {k: v[order] for k, v in available.items()}, starts, names, states=states[order], seconds=seconds
    )
    return {name: values[inverse] for name, values in computed.items()}


def string_size(frame: pd.DataFrame) -> float:
    """Median number of cells reporting in one string packet (device, timestamp)."""
    if len(frame) == 0 or C.DEVICE_ID not in frame.columns or C.TIMESTAMP not in frame.columns:
        return 0.0
    return float(np.median(np.bincount(np.unique(group_codes(frame), return_inverse=True)[1].ravel())))


def local_features(
    frame: pd.DataFrame, wanted: list[str] | tuple[str, ...], states: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The locally computed features among ``wanted`` that ``frame`` does not already have."""
    missing = [w for w in wanted if w not in frame.columns]
    peer_names = [w for w in missing if w in PEER_FEATURES]
    peer_names += [
        HISTORY_FEATURES[w]
        for w in missing
        if w in HISTORY_FEATURES and HISTORY_FEATURES[w] in PEER_FEATURES and HISTORY_FEATURES[w] not in frame.columns
    ]
    computed = peer_features(frame, list(dict.fromkeys(peer_names)))
    history = [w for w in missing if w in HISTORY_FEATURES or w in OWN_FEATURES or w == UNCHANGED_RUN]
    if history:
        computed.update(history_features(frame, history, computed, states))
    return {k: v for k, v in computed.items() if k in missing}


def derive_features(frame: pd.DataFrame, wanted: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """``frame`` plus the locally computed features among ``wanted`` as columns (one concat)."""
    computed = local_features(frame, wanted)
    if not computed:
        return frame
    return pd.concat([frame, pd.DataFrame(computed, index=frame.index)], axis=1)


def select_features(
    frame: pd.DataFrame,
    requested: list[str] | None = None,
    computed: dict[str, np.ndarray] | None = None,
    defaults: tuple[str, ...] = DEFAULT_FEATURES,
) -> list[str]:
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
    chosen = [c for c in defaults if usable(c)]
    if len(chosen) < 2:
        numeric = numeric_columns(frame)
        raise InputError(
            "no usable numeric features: the anomaly detector needs at least two of "
            f"{', '.join(defaults)} (run the preprocessing step or pass raw BMS readings); "
            f"the data has numeric columns {', '.join(numeric[:20]) or 'none'}"
        )
    return chosen


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if _is_numeric(frame[c])]


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def feature_matrix(
    frame: pd.DataFrame, features: list[str], computed: dict[str, np.ndarray] | None = None
) -> np.ndarray:
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
