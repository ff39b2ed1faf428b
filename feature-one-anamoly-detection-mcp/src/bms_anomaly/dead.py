"""Dead cells are a state, not a stream of anomalies.

A cell that has failed (sulfated, dried out, shorted) deviates from its string for good: every
reading after its death is "abnormal", and scored reading by reading it drowns the real finding
(on the default fleet 62 % of the statistical anomalies were readings of dead cells). Here a cell
is *recognised as dead* when, over a trailing :data:`DEAD_WINDOW_HOURS` of its readings, at least
:data:`DEAD_SHARE` of them deviate from the string's median at the same time by more than a
failed cell's margin (:data:`DEAD_MARGINS`: 0.085 V, 8 degC, 0.05 SG; the precursors of the
simulated failure modes stay below these, dead cells above), or - with no peers to compare with -
its voltage on float/rest is below :data:`DEAD_FLOAT_VPC` V/cell (a shorted or open cell), or -
on a VRLA string (no specific gravity, ``bms_schema.state.infer_chemistry``) - it shows the dry-out
signature (:data:`DRY_OUT_SIGNATURE`): voltage *and* temperature both above its peers by more than
0.05 V and 4 degC at the same reading. A dried-out VRLA cell dies milder than a flooded one: water
loss raises its float voltage and its share of the float current heats it, but by 60-130 mV and
4.5-9 degC (simulated fleets), under the single margins; either sign alone is common in a healthy
string (a cell's own float offset, a warm rack position, a thermal excursion), both together and
for 12 h are not. It is
dead from the first deviating reading of that window (``dead_since``) to the end of the data,
unless it comes back: a later window with at most ``1 - DEAD_SHARE`` deviating readings means a
long anomaly (a sensor stuck for 12 h), not a death.

The result names each dead cell once (when, why) and marks its rows; the hybrid then reports
those rows as ``AnomalyKind = "dead_cell"`` (not flagged, not statistical anomalies) and leaves
them out of training. Vectorised: cumulative sums over (cell, time)-sorted arrays; the only loop
is over the (few) dead cells, to phrase their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from bms_schema import columns as C

from .features import MIN_PEERS

DEAD_WINDOW_HOURS = 12.0
DEAD_SHARE = 0.8
DEAD_MIN_READINGS = 4
#: (source column, margin, unit, wording) of a failed cell's deviation from its string median.
DEAD_MARGINS: tuple[tuple[str, float, str, str], ...] = (
    (C.VOLTAGE, 0.085, "V", "voltage"),
    (C.TEMPERATURE, 8.0, "degC", "temperature"),
    (C.SPECIFIC_GRAVITY, 0.05, "", "specific gravity"),
)
#: Per chemistry: (voltage margin [V], temperature margin [degC]) that a reading must exceed *both*
#: (above the string median) to count as a dried-out cell's. Calibrated on simulated VRLA fleets of
#: calibration seeds 100-107 (failure rate 0.15): dead dry-out cells read +0.062..+0.126 V and
#: +4.7..+8.8 degC (12 h medians on float; 39 dry-outs), their last 12 h of precursor +0.012..+0.055 V and
#: +1.9..+4.7 degC but never both above these margins, living cells at most +0.026 V (488 cells).
#: Flooded dry-out deaths (+0.1 V, +10 degC and more) already exceed :data:`DEAD_MARGINS`.
DRY_OUT_SIGNATURE: dict[str, tuple[float, float]] = {"vrla": (0.05, 4.0)}
#: Below this V/cell on float or at rest a cell is shorted or open (used also without peers).
DEAD_FLOAT_VPC = 1.95

DEAD_COLUMNS = ("CellID", "DeviceID", "dead_since", "recognised_at", "readings_after", "reason")


@dataclass
class DeadCells:
    rows: np.ndarray  # bool per input row: the cell is dead at this reading
    table: pd.DataFrame  # one row per dead cell: DEAD_COLUMNS

    @property
    def cells(self) -> list[str]:
        return self.table["CellID"].astype(str).tolist()

    def reason_by_row(self, frame: pd.DataFrame) -> np.ndarray:
        """The dead cell's reason on each of its dead rows (None elsewhere)."""
        out = np.full(len(frame), None, dtype=object)
        if not self.rows.any():
            return out
        text = dict(zip(self.table["CellID"].astype(str), self.table["reason"].astype(str)))
        since = dict(zip(self.table["CellID"].astype(str), self.table["dead_since"].astype(str)))
        cells = frame[C.CELL_ID].astype(str).to_numpy()[self.rows]
        out[self.rows] = [f"dead cell since {since[c]}: {text[c]}" for c in cells]
        return out


def _no_dead(n: int) -> DeadCells:
    return DeadCells(rows=np.zeros(n, dtype=bool), table=pd.DataFrame(columns=list(DEAD_COLUMNS)))


def recognise_dead_cells(frame: pd.DataFrame, states: np.ndarray | None = None) -> DeadCells:
    """Which cells of ``frame`` (canonical readings, any row order) are dead, since when and why."""
    from bms_schema.grouped import cell_starts
    from bms_schema.state import STATES, infer_chemistry

    from .features import _floats, group_codes, group_median

    n = len(frame)
    if n == 0 or any(c not in frame.columns for c in (C.CELL_ID, C.DEVICE_ID, C.TIMESTAMP, C.VOLTAGE)):
        return _no_dead(n)
    quality_bad = np.zeros(n, dtype=bool)
    for flag in (C.SENSOR_FAULT, C.OUT_OF_RANGE):
        if flag in frame.columns:
            quality_bad |= frame[flag].fillna(False).astype(bool).to_numpy()
    codes = group_codes(frame)
    size = np.bincount(np.unique(codes, return_inverse=True)[1].ravel())
    peers = np.unique(codes, return_inverse=True)[1].ravel()
    has_peers = size[peers] >= MIN_PEERS
    exceed = np.zeros(n, dtype=bool)
    measured = np.zeros(n, dtype=bool)
    deviation: dict[str, np.ndarray] = {}
    for source, margin, _, _ in DEAD_MARGINS:
        if source not in frame.columns:
            continue
        values = _floats(frame, source)
        values[quality_bad] = np.nan
        dev = values - group_median(codes, values)
        deviation[source] = dev
        ok = np.isfinite(dev) & has_peers
        measured |= ok
        with np.errstate(invalid="ignore"):
            exceed |= ok & (np.abs(dev) > margin)
    dry_out = np.zeros(n, dtype=bool)
    signature = DRY_OUT_SIGNATURE.get(infer_chemistry(frame))
    if signature is not None and C.VOLTAGE in deviation and C.TEMPERATURE in deviation:
        with np.errstate(invalid="ignore"):
            dry_out = has_peers & (deviation[C.VOLTAGE] > signature[0]) & (deviation[C.TEMPERATURE] > signature[1])
        exceed |= dry_out
    volts = _floats(frame, C.VOLTAGE)
    volts[quality_bad] = np.nan
    if states is not None:
        resting = np.isin(states, [STATES.index("float"), STATES.index("rest")])
        with np.errstate(invalid="ignore"):
            low = resting & np.isfinite(volts) & (volts < DEAD_FLOAT_VPC)
        exceed |= low
        measured |= resting & np.isfinite(volts)

    cell = pd.factorize(frame[C.CELL_ID].to_numpy())[0]
    ts = frame[C.TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts, cell))
    starts = cell_starts(cell[order])
    share_input = np.where(measured[order], exceed[order].astype(np.float64), np.nan)
    seconds = ts[order] / 1e9
    window_s = DEAD_WINDOW_HOURS * 3600.0
    # share of deviating readings among the readings of the trailing window, this one included
    share = _trailing_share(share_input, starts, seconds, window_s)
    count = _trailing_count(np.isfinite(share_input), starts, seconds, window_s)
    span = _trailing_span(starts, seconds, window_s)
    dead_now = (share >= DEAD_SHARE) & (count >= DEAD_MIN_READINGS) & (span >= 0.5 * window_s)
    if not dead_now.any():
        return _no_dead(n)
    sorted_cell = cell[order]
    first_hit = np.full(int(cell.max()) + 1, -1, dtype=np.int64)
    hits = np.flatnonzero(dead_now)
    # the first recognition per cell: hits are sorted by (cell, time)
    uniq, first_pos = np.unique(sorted_cell[hits], return_index=True)
    first_hit[uniq] = hits[first_pos]
    rows_sorted = np.zeros(n, dtype=bool)
    records = []
    ts_sorted = ts[order]
    exceed_sorted = exceed[order]
    cell_end = np.r_[np.flatnonzero(np.diff(sorted_cell) != 0) + 1, n]
    for c in uniq:  # a loop over dead cells only
        i = first_hit[c]
        lo = int(np.searchsorted(ts_sorted[starts[i] : i + 1], ts_sorted[i] - int(window_s * 1e9))) + starts[i]
        window_hits = np.flatnonzero(exceed_sorted[lo : i + 1])
        since_pos = lo + int(window_hits[0]) if len(window_hits) else i
        end = int(cell_end[np.searchsorted(cell_end, i, side="right")])
        after = slice(i + 1, end)
        recovered = (share[after] <= 1.0 - DEAD_SHARE) & (count[after] >= DEAD_MIN_READINGS)
        if recovered.any():  # back to normal for a whole window: a long anomaly (a stuck sensor), not death
            continue
        rows_sorted[since_pos:end] = True
        window_rows = order[since_pos : i + 1]
        reasons = []
        for source, margin, unit, wording in DEAD_MARGINS:
            if source in deviation:
                med = (
                    float(np.nanmedian(deviation[source][window_rows]))
                    if np.isfinite(deviation[source][window_rows]).any()
                    else np.nan
                )
                if np.isfinite(med) and abs(med) > margin:
                    side = "above" if med > 0 else "below"
                    reasons.append(f"{wording} {abs(med):.3g}{(' ' + unit) if unit else ''} {side} its string peers")
        if not reasons and dry_out[window_rows].mean() >= 0.5 and signature is not None:
            dv = float(np.nanmedian(deviation[C.VOLTAGE][window_rows]))
            dt = float(np.nanmedian(deviation[C.TEMPERATURE][window_rows]))
            reasons.append(
                f"voltage {dv:.3g} V and temperature {dt:.3g} degC above its string peers together "
                f"(VRLA dry-out: beyond {signature[0]:g} V and {signature[1]:g} degC at once)"
            )
        if not reasons:
            med_v = float(np.nanmedian(volts[window_rows])) if np.isfinite(volts[window_rows]).any() else np.nan
            reasons.append(f"voltage {med_v:.3g} V on float/rest, below {DEAD_FLOAT_VPC} V/cell (shorted or open)")
        records.append(
            {
                "CellID": str(frame[C.CELL_ID].iloc[order[i]]),
                "DeviceID": str(frame[C.DEVICE_ID].iloc[order[i]]),
                "dead_since": pd.Timestamp(ts_sorted[since_pos], tz="UTC"),
                "recognised_at": pd.Timestamp(ts_sorted[i], tz="UTC"),
                "readings_after": int(end - since_pos),
                "reason": "; ".join(reasons) + f" (median over {DEAD_WINDOW_HOURS:g} h, "
                f"{DEAD_SHARE:.0%}+ of its readings beyond a failed cell's margin)",
            }
        )
    if not records:
        return _no_dead(n)
    rows = np.zeros(n, dtype=bool)
    rows[order] = rows_sorted
    table = pd.DataFrame(records, columns=list(DEAD_COLUMNS)).sort_values("dead_since").reset_index(drop=True)
    return DeadCells(rows=rows, table=table)


def _window_lo(starts: np.ndarray, seconds: np.ndarray, window_s: float) -> np.ndarray:
    seg = np.cumsum(np.r_[True, starts[1:] != starts[:-1]]) - 1 if len(starts) else starts
    offset = float(np.nanmax(seconds) - np.nanmin(seconds)) + 10 * window_s + 1.0 if len(seconds) else 0.0
    key = seconds - seconds[starts] + seg * offset
    return np.maximum(starts, np.searchsorted(key, key - window_s, side="left"))


def _trailing_share(values: np.ndarray, starts: np.ndarray, seconds: np.ndarray, window_s: float) -> np.ndarray:
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(len(values)) + 1
    lo = _window_lo(starts, seconds, window_s)
    cnt = ccnt[idx] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (csum[idx] - csum[lo]) / np.maximum(cnt, 1), 0.0)


def _trailing_count(finite: np.ndarray, starts: np.ndarray, seconds: np.ndarray, window_s: float) -> np.ndarray:
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(len(finite)) + 1
    return ccnt[idx] - ccnt[_window_lo(starts, seconds, window_s)]


def _trailing_span(starts: np.ndarray, seconds: np.ndarray, window_s: float) -> np.ndarray:
    """Seconds since the cell's first reading, capped at the window (a dead cell needs half a window of data)."""
    return np.minimum(seconds - seconds[starts], window_s)


#: A cell *drifting from its peers* (a failure precursor likely, not yet dead) is recognised by either of two
#: sustained deviations of its float/rest readings from the string median, each in :data:`DEAD_SHARE`+ of a
#: trailing window (and those readings at least half of the window's):
#:
#: - *a day beyond a watch margin* (:data:`WATCH_MARGINS`, about a third of a failed cell's) over
#:   :data:`FAILING_WINDOW_HOURS`: twice the dead window, so no reading anomaly of the simulator (thermal
#:   excursions last up to 8 h, SG drops 6 h, stuck sensors 12 h) fills it;
#: - *a voltage departing from its peers* over :data:`DEPARTING_WINDOW_HOURS`: the voltage deviation
#:   compensated for the cell's own temperature deviation (:data:`FLOAT_V_PER_DEGC`, the float voltage's
#:   -3 mV/degC, so a hot spot or a thermal excursion, which lowers a cell's float voltage by exactly that,
#:   does not count) beyond the 0.03 V watch margin; readings that repeat the previous voltage exactly (a frozen
#:   sensor) or of a cell 3 degC+ off its peers' temperature are left out (held-out VRLA seeds 62 / 64 showed a
#:   voltage sensor frozen 0.18 V low and a temperature sensor frozen 13.7 degC high reported as failing).
#:   An internal short pulls a cell ~0.05-0.07 V below its
#:   string in its last 1.5-4 days; a day-long window saw it only hours before death (or after). No other
#:   reading anomaly moves the compensated voltage for hours (sags last 1-4 readings).
WATCH_MARGINS: tuple[tuple[str, float, str, str], ...] = (
    (C.VOLTAGE, 0.03, "V", "float voltage"),
    (C.TEMPERATURE, 3.0, "degC", "temperature"),
    (C.SPECIFIC_GRAVITY, 0.02, "", "specific gravity"),
)
FAILING_WINDOW_HOURS = 24.0
DEPARTING_WINDOW_HOURS = 6.0
#: Float voltage change per degC of cell temperature (lead-acid, per 2 V cell; chargers compensate by it).
FLOAT_V_PER_DEGC = -0.003
#: A flag of a failing cell is "its drift" only if its reading is within :data:`SUDDEN_MARGINS` of the cell's
#: deviation over its previous readings (median over :data:`STEP_REFERENCE_HOURS` of that channel): a drift moves
#: a few mV, a few thousandths of SG or a degC or two in that time, while a sag (0.06 V+, up to 4 readings at
#: 15 min), a spike, a hot spot (+12 degC), a thermal excursion (+6-15 degC over 2-8 h) or an SG drop (0.015+,
#: 1-6 h) steps away from its recent past. The reference spans more than twice the longest such fault of the
#: channel, so the fault cannot move its median. The temperature's margin is the watch margin: a VRLA thermal
#: runaway precursor warms its cell 1.5-2.5 degC above the previous 18 h (simulated fleets, dev seeds 54).
SUDDEN_MARGINS: dict[str, float] = {C.VOLTAGE: 0.015, C.TEMPERATURE: 3.0, C.SPECIFIC_GRAVITY: 0.01}
STEP_REFERENCE_HOURS: dict[str, float] = {C.VOLTAGE: 2.0, C.TEMPERATURE: 18.0, C.SPECIFIC_GRAVITY: 14.0}
#: A channel is part of a failing cell's drift signature when its median deviation over the recognition
#: window is beyond this share of its watch margin (the sign is the drift's direction).
SIGNATURE_SHARE = 1.0 / 3.0
FAILING_COLUMNS = ("CellID", "DeviceID", "failing_since", "recognised_at", "dead_since", "reason")
#: Statistical features that measure a peer deviation's change, and the measurement each one follows.
DRIFT_FEATURES: dict[str, str] = {
    "VoltageDevChange": C.VOLTAGE,
    "SGDevChange": C.SPECIFIC_GRAVITY,
    "TempDevChange": C.TEMPERATURE,
}


@dataclass
class FailingCells:
    rows: np.ndarray  # bool per input row: the cell is drifting (from failing_since until it is dead, if it dies)
    table: pd.DataFrame  # one row per failing cell: FAILING_COLUMNS
    #: bool per input row: the cell has been *recognised* as failing at or before this reading, not dead (causal)
    recognised: np.ndarray | None = None
    #: per failing cell, the drift's direction (+1 / -1) on each channel of its signature
    signature: dict[str, dict[str, float]] = field(default_factory=dict)
    #: per input row, per measurement: deviation from the string median, and from the cell's previous readings
    deviation: dict[str, np.ndarray] = field(default_factory=dict)
    step: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def cells(self) -> list[str]:
        return self.table["CellID"].astype(str).tolist()

    def note_by_row(self, frame: pd.DataFrame) -> np.ndarray:
        """A short note on each failing row (None elsewhere)."""
        out = np.full(len(frame), None, dtype=object)
        if not self.rows.any():
            return out
        since = dict(zip(self.table["CellID"].astype(str), self.table["failing_since"].astype(str)))
        cells = frame[C.CELL_ID].astype(str).to_numpy()[self.rows]
        out[self.rows] = [f"cell drifting from its peers since {since[c]}: failure precursor likely" for c in cells]
        return out

    def explained(self, frame: pd.DataFrame, flagged: np.ndarray, feature: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Which ``flagged`` rows are the recognised drift itself: the cell was recognised as failing at or before
        the reading, the flag's top ``feature`` is a peer-deviation change of a channel of the cell's drift
        signature in the drift's direction (``value``'s sign), and the reading did not step away from the cell's
        previous readings (:data:`SUDDEN_MARGINS`). Causal: only earlier readings decide."""
        out = np.zeros(len(frame), dtype=bool)
        if self.recognised is None or not (self.recognised & flagged).any():
            return out
        cells = frame[C.CELL_ID].astype(str).to_numpy()
        for i in np.flatnonzero(self.recognised & flagged):  # a loop over the flags of recognised failing cells
            source = DRIFT_FEATURES.get(str(feature[i]))
            direction = self.signature.get(cells[i], {}).get(source or "", 0.0)
            if source is None or direction == 0.0 or not np.isfinite(value[i]) or np.sign(value[i]) != direction:
                continue
            step = self.step.get(source)
            if step is not None and np.isfinite(step[i]) and abs(step[i]) <= SUDDEN_MARGINS[source]:
                out[i] = True
        return out


def _sustained(
    exceed: np.ndarray,
    measured: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    seconds: np.ndarray,
    window_s: float,
    blocked: np.ndarray,
) -> np.ndarray:
    """Per (cell, time)-sorted row: DEAD_SHARE+ of the trailing window's measured readings exceed, they are at least
    half of its readings, and the cell has a whole window of data (``blocked`` rows never qualify)."""
    n = len(order)
    share_input = np.where(measured[order], exceed[order].astype(np.float64), np.nan)
    share = _trailing_share(share_input, starts, seconds, window_s)
    count = _trailing_count(np.isfinite(share_input), starts, seconds, window_s)
    span = _trailing_span(starts, seconds, window_s)
    readings = _trailing_count(np.ones(n, dtype=bool), starts, seconds, window_s)
    # the measured (float/rest, valid) readings are at least half of the window's, so a short excursion amid a
    # long gap or a day of discharges and recharges cannot fill it
    covered = count >= np.maximum(DEAD_MIN_READINGS, 0.5 * readings)
    result: np.ndarray = (share >= DEAD_SHARE) & covered & (span >= window_s) & ~blocked[order]
    return result


def _previous_median(values: np.ndarray, starts: np.ndarray, seconds: np.ndarray, hours: float) -> np.ndarray:
    """Median of each row's previous readings of its cell within ``hours`` ((cell, time)-sorted rows)."""
    from .features import trailing_median

    return trailing_median(values, starts, seconds, hours * 3600.0, DEAD_MIN_READINGS, DEAD_MIN_READINGS)


def recognise_failing_cells(
    frame: pd.DataFrame, states: np.ndarray | None = None, dead: DeadCells | None = None
) -> FailingCells:
    """Which living cells of ``frame`` drift away from their string (since when, why): see :data:`WATCH_MARGINS`.

    A state like dead, reported once per cell. Cells already dead at the first recognition are not listed (they are
    dead cells). ``recognised`` marks the readings from the recognition on (until death): the hybrid reports the
    flags there that are the drift itself through this state (:meth:`FailingCells.explained`)."""
    from bms_schema.grouped import cell_starts
    from bms_schema.state import STATES

    from .features import _floats, group_codes, group_median

    n = len(frame)
    empty = FailingCells(rows=np.zeros(n, dtype=bool), table=pd.DataFrame(columns=list(FAILING_COLUMNS)))
    if n == 0 or any(c not in frame.columns for c in (C.CELL_ID, C.DEVICE_ID, C.TIMESTAMP, C.VOLTAGE)):
        return empty
    quality_bad = np.zeros(n, dtype=bool)
    for flag in (C.SENSOR_FAULT, C.OUT_OF_RANGE):
        if flag in frame.columns:
            quality_bad |= frame[flag].fillna(False).astype(bool).to_numpy()
    codes = group_codes(frame)
    dense = np.unique(codes, return_inverse=True)[1].ravel()
    has_peers = np.bincount(dense)[dense] >= MIN_PEERS
    resting = np.isin(states, [STATES.index("float"), STATES.index("rest")]) if states is not None else np.ones(n, bool)
    dead_rows = dead.rows if dead is not None else np.zeros(n, dtype=bool)
    exceed = np.zeros(n, dtype=bool)
    measured = np.zeros(n, dtype=bool)
    deviation: dict[str, np.ndarray] = {}
    for source, margin, _, _ in WATCH_MARGINS:
        if source not in frame.columns:
            continue
        values = _floats(frame, source)
        values[quality_bad] = np.nan
        dev = values - group_median(codes, values)
        deviation[source] = dev
        ok = np.isfinite(dev) & has_peers & resting & ~dead_rows
        measured |= ok
        with np.errstate(invalid="ignore"):
            exceed |= ok & (np.abs(dev) > margin)
    cell = pd.factorize(frame[C.CELL_ID].to_numpy())[0]
    ts = frame[C.TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts, cell))
    starts = cell_starts(cell[order])
    departing = np.zeros(n, dtype=bool)
    measured_v = np.zeros(n, dtype=bool)
    if C.VOLTAGE in deviation:
        temp_dev = deviation.get(C.TEMPERATURE, np.zeros(n))
        compensated = deviation[C.VOLTAGE] - FLOAT_V_PER_DEGC * np.nan_to_num(temp_dev)
        # a reading that repeats the cell's previous voltage exactly (a frozen sensor repeats it for hours) or of
        # a cell hotter or colder than its peers by the watch margin (a thermal excursion; heat is the day-long
        # route's) does not count: neither moves a living cell's float voltage for hours in a normal string
        volts = _floats(frame, C.VOLTAGE)[order]
        repeat_sorted = np.zeros(n, dtype=bool)
        repeat_sorted[1:] = (volts[1:] == volts[:-1]) & (starts[1:] == starts[:-1])
        repeat = np.empty(n, dtype=bool)
        repeat[order] = repeat_sorted
        with np.errstate(invalid="ignore"):
            tempered = ~(np.abs(temp_dev) > WATCH_MARGINS[1][1])
            measured_v = np.isfinite(compensated) & has_peers & resting & ~dead_rows & ~repeat & tempered
            departing = measured_v & (np.abs(compensated) > WATCH_MARGINS[0][1])
    if not (exceed.any() or departing.any()):
        return empty
    seconds = ts[order] / 1e9
    day = _sustained(exceed, measured, order, starts, seconds, FAILING_WINDOW_HOURS * 3600.0, dead_rows)
    early = _sustained(departing, measured_v, order, starts, seconds, DEPARTING_WINDOW_HOURS * 3600.0, dead_rows)
    now = day | early
    if not now.any():
        return empty
    sorted_cell = cell[order]
    hits = np.flatnonzero(now)
    uniq, first_pos = np.unique(sorted_cell[hits], return_index=True)
    ts_sorted = ts[order]
    dead_sorted = dead_rows[order]
    cell_end = np.r_[np.flatnonzero(np.diff(sorted_cell) != 0) + 1, n]
    rows_sorted = np.zeros(n, dtype=bool)
    recognised_sorted = np.zeros(n, dtype=bool)
    records = []
    signature: dict[str, dict[str, float]] = {}
    for p in first_pos:  # a loop over failing cells only
        i = int(hits[p])
        by_day = bool(day[i])
        window_s = (FAILING_WINDOW_HOURS if by_day else DEPARTING_WINDOW_HOURS) * 3600.0
        route = exceed[order] if by_day else departing[order]
        lo = int(np.searchsorted(ts_sorted[starts[i] : i + 1], ts_sorted[i] - int(window_s * 1e9))) + starts[i]
        window_hits = np.flatnonzero(route[lo : i + 1])
        since_pos = lo + int(window_hits[0]) if len(window_hits) else i
        end = int(cell_end[np.searchsorted(cell_end, i, side="right")])
        died = np.flatnonzero(dead_sorted[i:end])
        stop = i + int(died[0]) if len(died) else end
        rows_sorted[since_pos:stop] = True
        recognised_sorted[i:stop] = True
        window_rows = order[since_pos : i + 1]
        window_rows = window_rows[resting[window_rows]] if resting[window_rows].any() else window_rows
        reasons = []
        cell_id = str(frame[C.CELL_ID].iloc[order[i]])
        signature[cell_id] = {}
        for source, margin, unit, wording in WATCH_MARGINS:
            if source in deviation and np.isfinite(deviation[source][window_rows]).any():
                med = float(np.nanmedian(deviation[source][window_rows]))
                if abs(med) > SIGNATURE_SHARE * margin:
                    signature[cell_id][source] = float(np.sign(med))
                if abs(med) > margin:
                    side = "above" if med > 0 else "below"
                    reasons.append(f"{wording} {abs(med):.3g}{(' ' + unit) if unit else ''} {side} its string peers")
        how = (
            f"over {FAILING_WINDOW_HOURS:g} h on float/rest, {DEAD_SHARE:.0%}+ of its readings beyond the watch "
            "margins 0.03 V / 3 degC / 0.02 SG"
            if by_day
            else f"over {DEPARTING_WINDOW_HOURS:g} h on float/rest, {DEAD_SHARE:.0%}+ of its readings beyond 0.03 V "
            f"from its peers after compensating {FLOAT_V_PER_DEGC * 1000:g} mV/degC for its own temperature"
        )
        records.append(
            {
                "CellID": cell_id,
                "DeviceID": str(frame[C.DEVICE_ID].iloc[order[i]]),
                "failing_since": pd.Timestamp(ts_sorted[since_pos], tz="UTC"),
                "recognised_at": pd.Timestamp(ts_sorted[i], tz="UTC"),
                "dead_since": pd.Timestamp(ts_sorted[stop], tz="UTC") if stop < end else pd.NaT,
                "reason": "drifting from its peers: "
                + ("; ".join(reasons) or "beyond a watch margin")
                + f" ({how}); failure precursor likely",
            }
        )
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n)
    rows = rows_sorted[inverse]
    recognised = recognised_sorted[inverse]
    step: dict[str, np.ndarray] = {}
    mine = order[np.isin(sorted_cell, uniq)]  # the failing cells' rows, still (cell, time)-sorted
    mine_starts = cell_starts(cell[mine])
    for source, dev in deviation.items():
        step[source] = np.full(n, np.nan)
        sub = dev[mine]
        step[source][mine] = sub - _previous_median(sub, mine_starts, ts[mine] / 1e9, STEP_REFERENCE_HOURS[source])
    table = pd.DataFrame(records, columns=list(FAILING_COLUMNS)).sort_values("failing_since").reset_index(drop=True)
    return FailingCells(
        rows=rows, table=table, recognised=recognised, signature=signature, deviation=deviation, step=step
    )
