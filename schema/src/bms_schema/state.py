"""Operating state of each battery string at each time: float, charge, discharge, rest, equalize.

A stationary lead-acid string spends most of its life on **float** (the charger holds it at
2.20-2.27 V/cell for flooded cells, 2.25-2.30 V/cell for VRLA, with a small positive current
of ~1 mA per Ah). A mains outage **discharges** it (negative current, voltage falling), after
which the charger **charges** it (bulk: large positive current; absorption: high voltage,
current decaying back to float). A charger that is off or disconnected leaves the string at
**rest** (no current, open-circuit voltage below the float window). An **equalize** charge holds
the string above the float window (flooded 2.30-2.45 V/cell) with a low current for hours.

Classification, per string (``DeviceID``) and time stamp, vectorised:

1. The string's packet at each time: the median ``InstantaneousCurrent`` over its cells (a string
   field repeated on every cell row) and the median cell voltage in V/cell (a monobloc above 3 V
   is divided by its number of 2 V cells, ``round(V / 2.2)``), temperature-compensated to 25 degC
   with the usual -3 mV/degC/cell when ``CellTemperature`` is present.
2. Thresholds from the string's own current: its float current (lower quartile of the positive
   currents while the voltage is in the float window) and its current noise (MAD of successive
   differences). Discharge: current below ``-max(2 x float, 4 x noise, 0.02 A)``; charge: above
   ``max(3 x float, float + 4 x noise, 0.02 A)``; optionally also a share of the capacity.
3. Voltage windows (V/cell at 25 degC) of the chemistry (:data:`WINDOWS`): at or above the
   equalize level with a current that is not a charge current -> equalize; below the float window
   with no charge/discharge current and no float current flowing (current below half the float
   current, where that is clear of the noise) -> rest; otherwise float. Without current (the column absent,
   or missing in a packet) the voltage alone decides (discharge below the open-circuit level,
   charge between the float and equalize windows) and the result says so.
4. Hysteresis (a Schmitt trigger): a charge or discharge run starts only where the current passes
   twice its threshold and continues while it stays past the threshold, so a current hovering at
   the threshold does not chatter.
5. Minimum duration: a run of any state covering less than ``min_duration_s`` (default 120 s;
   each reading covers the time to the next one, at most three typical intervals) is replaced
   by the state before it, unless it is the string's last run (still going on: its length is not known yet, and a
   stream sees each new run as the last one). With 1 s..1 min sampling a single noisy sample cannot flip the state;
   with 15 min..1 h sampling one reading already covers more than the minimum and counts.

``operating_state(frame)`` returns a categorical :data:`OPERATING_STATE` Series on the frame's
index (``Series.attrs["operating_state"]`` holds per-string details: which source decided, the
chemistry and thresholds used); ``add_operating_state(frame)`` returns a copy with the column.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from .errors import InputError

OPERATING_STATE = "OperatingState"


class OperatingState(str, Enum):
    FLOAT = "float"
    CHARGE = "charge"
    DISCHARGE = "discharge"
    REST = "rest"
    EQUALIZE = "equalize"


#: Category order of the :data:`OPERATING_STATE` column.
STATES: tuple[str, ...] = tuple(s.value for s in OperatingState)
STATE_DTYPE = pd.CategoricalDtype(categories=list(STATES), ordered=False)
_CODE = {s: i for i, s in enumerate(STATES)}

FLOODED = "flooded"
VRLA = "vrla"
CHEMISTRIES = (FLOODED, VRLA)

#: Volts per degC per cell by which float/equalize voltages fall as the battery warms.
TEMP_COMP_V_PER_DEGC = 0.003
#: A unit whose median voltage exceeds this is a monobloc of several 2 V cells.
MONOBLOC_ABOVE_V = 3.0
NOMINAL_CELL_V = 2.2


@dataclass(frozen=True)
class VoltageWindows:
    """V/cell at 25 degC. ``float_low``: below it (no current) a string is at rest; ``equalize_low``:
    at or above it a string is equalising (or in absorption with a charge current); voltage only:
    below ``discharge_below`` a string is discharging, in ``[charge_above, equalize_low)`` charging."""

    float_low: float
    charge_above: float
    equalize_low: float
    discharge_below: float


#: Windows per chemistry (IEEE 450 flooded float 2.17-2.25 V/cell typical, equalize 2.30-2.40;
#: IEEE 1188 / manufacturers VRLA float 2.25-2.30, equalize 2.35-2.45 where allowed; open-circuit
#: voltage ~ SG + 0.84: 2.04-2.07 V flooded at 1.200-1.225, 2.12-2.16 V VRLA at 1.28-1.32).
WINDOWS: dict[str, VoltageWindows] = {
    FLOODED: VoltageWindows(float_low=2.15, charge_above=2.30, equalize_low=2.30, discharge_below=2.03),
    VRLA: VoltageWindows(float_low=2.20, charge_above=2.31, equalize_low=2.35, discharge_below=2.10),
}


@dataclass
class StringStateInfo:
    """How one string's states were decided."""

    device: str
    chemistry: str
    source: str  # "current+voltage", "voltage only", or "current+voltage, voltage only in N packets"
    packets: int
    voltage_only_packets: int
    cells_per_unit: int
    float_current_a: float | None
    current_noise_a: float | None
    discharge_below_a: float | None
    charge_above_a: float | None
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _floats(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def infer_chemistry(frame: pd.DataFrame) -> str:
    """``flooded`` when the table has specific-gravity readings, else ``vrla`` (sealed cells have none)."""
    if C.SPECIFIC_GRAVITY in frame.columns and np.isfinite(_floats(frame, C.SPECIFIC_GRAVITY)).any():
        return FLOODED
    return VRLA


def _runs(values: np.ndarray, boundary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run id of each element (a run = equal consecutive values within one segment) and run starts."""
    n = len(values)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (values[1:] != values[:-1]) | boundary[1:]
    run_id = np.cumsum(new) - 1
    return run_id, np.flatnonzero(new)


def _hysteresis(weak: np.ndarray, strong: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """True on runs of ``weak`` (within one string) that contain at least one ``strong`` element."""
    if not weak.any():
        return weak
    run_id, _ = _runs(weak, boundary)
    has_strong = np.bincount(run_id, weights=(strong & weak).astype(np.float64)) > 0
    return weak & has_strong[run_id]


def _fill_previous(codes: np.ndarray, keep: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Replace codes where ``keep`` is False by the last kept code of the same segment (else the next)."""
    n = len(codes)
    idx = np.arange(n)
    seg = np.cumsum(boundary) - 1
    last = np.where(keep, idx, -1)
    last = np.maximum.accumulate(last)
    seg_start = np.flatnonzero(boundary)[seg]
    out = codes.copy()
    prev_ok = last >= seg_start
    out[~keep & prev_ok] = codes[last[~keep & prev_ok]]
    rest = ~keep & ~prev_ok
    if rest.any():  # no earlier kept state in this string: take the next kept one
        nxt = np.where(keep, idx, n)
        nxt = np.minimum.accumulate(nxt[::-1])[::-1]
        seg_end = np.r_[np.flatnonzero(boundary)[1:], n][seg]
        ok = rest & (nxt < seg_end)
        out[ok] = codes[nxt[ok]]
    return out


def _min_duration(codes: np.ndarray, covers_s: np.ndarray, boundary: np.ndarray, min_duration_s: float) -> np.ndarray:
    """Runs covering less than ``min_duration_s`` take the state of the run before them (one pass)."""
    if min_duration_s <= 0 or len(codes) == 0:
        return codes
    run_id, starts = _runs(codes, boundary)
    duration = np.bincount(run_id, weights=covers_s)
    run_boundary = boundary[starts]
    # a string made of a single run keeps it whatever its length
    runs_per_string = np.bincount(np.cumsum(run_boundary) - 1)
    alone = runs_per_string[np.cumsum(run_boundary) - 1] == 1
    # the string's last run has not ended: its length is unknown, so it keeps its state (a stream scored
    # packet by packet sees every new run as the last one, and a discharge must be one from its start)
    last_run = np.r_[run_boundary[1:], True]
    keep_run = (duration >= min_duration_s) | alone | last_run
    run_codes = _fill_previous(codes[starts], keep_run, run_boundary)
    return run_codes[run_id]


def _robust_noise(current: np.ndarray) -> float:
    d = np.diff(current[np.isfinite(current)])
    if len(d) < 4:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


@dataclass(frozen=True)
class _Packets:
    device: np.ndarray  # device code per packet (sorted by device, time)
    time_ns: np.ndarray
    current: np.ndarray
    vpc: np.ndarray  # V/cell at 25 degC
    row_packet: np.ndarray  # packet index of each input row


def _packets(frame: pd.DataFrame, devices: np.ndarray) -> tuple[_Packets, np.ndarray, np.ndarray]:
    """One row per (string, time stamp): median current, V/cell, temperature over the string's cells."""
    ts = frame[C.TIMESTAMP]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_any_dtype(ts):
        ts = pd.to_datetime(ts, utc=True, errors="coerce")
    time_ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if (ts.isna()).any():
        raise InputError(
            f"operating state: {int(ts.isna().sum())} row(s) have no valid {C.TIMESTAMP}; drop or fix them first"
        )
    dev_codes, dev_names = pd.factorize(devices, sort=True)
    key = pd.MultiIndex.from_arrays([dev_codes, time_ns])
    packet_codes, uniques = pd.factorize(key, sort=True)
    table = pd.DataFrame(
        {
            "p": packet_codes,
            "I": _floats(frame, C.CURRENT),
            "V": _floats(frame, C.VOLTAGE),
            "T": _floats(frame, C.TEMPERATURE),
        }
    )
    quality_bad = np.zeros(len(frame), dtype=bool)
    for flag in (C.SENSOR_FAULT, C.OUT_OF_RANGE):
        if flag in frame.columns:
            quality_bad |= frame[flag].fillna(False).astype(bool).to_numpy()
    table.loc[quality_bad, ["V", "T"]] = np.nan
    med = table.groupby("p", sort=True)[["I", "V", "T"]].median().reindex(np.arange(len(uniques)))
    packet_dev = np.asarray(uniques.get_level_values(0), dtype=np.int64)
    packet_time = np.asarray(uniques.get_level_values(1), dtype=np.int64)
    volts = med["V"].to_numpy()
    temp = med["T"].to_numpy()
    cells_per_unit = np.ones(len(dev_names), dtype=np.int64)
    for d in range(len(dev_names)):  # a handful of strings, not rows
        v = volts[packet_dev == d]
        typical = float(np.nanmedian(v)) if np.isfinite(v).any() else np.nan
        if np.isfinite(typical) and typical > MONOBLOC_ABOVE_V:
            cells_per_unit[d] = max(1, int(round(typical / NOMINAL_CELL_V)))
    vpc = volts / cells_per_unit[packet_dev]
    vpc = vpc + TEMP_COMP_V_PER_DEGC * np.where(np.isfinite(temp), np.clip(temp, -20, 60) - 25.0, 0.0)
    return (
        _Packets(packet_dev, packet_time, med["I"].to_numpy(), vpc, np.asarray(packet_codes)),
        np.asarray(dev_names),
        cells_per_unit,
    )


def classify_packets(
    device: np.ndarray,
    time_ns: np.ndarray,
    current: np.ndarray,
    vpc: np.ndarray,
    chemistry: str | np.ndarray,
    *,
    min_duration_s: float = 120.0,
    capacity_ah: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """State codes (indices into :data:`STATES`) of string packets sorted by (device, time).

    ``device`` integer codes, ``current`` in A (NaN = not measured), ``vpc`` V/cell at 25 degC,
    ``chemistry`` one per device code or one for all. Returns codes and per-device threshold details.
    """
    n = len(device)
    codes = np.full(n, _CODE["float"], dtype=np.int64)
    if n == 0:
        return codes, []
    boundary = np.ones(n, dtype=bool)
    boundary[1:] = device[1:] != device[:-1]
    n_dev = int(device.max()) + 1
    chem = np.broadcast_to(np.asarray(chemistry, dtype=object), (n_dev,))
    bad = [c for c in set(chem.tolist()) if c not in WINDOWS]
    if bad:
        raise InputError(f"unknown chemistry {bad[0]!r}: use one of {', '.join(CHEMISTRIES)}")
    win = {
        name: np.array([getattr(WINDOWS[c], name) for c in chem])[device]
        for name in ("float_low", "charge_above", "equalize_low", "discharge_below")
    }

    # per-device current thresholds (a loop over strings, not readings)
    d_thr = np.full(n_dev, np.nan)
    c_thr = np.full(n_dev, np.nan)
    i_float_dev = np.full(n_dev, np.nan)
    noise_dev = np.full(n_dev, np.nan)
    details: list[dict[str, Any]] = []
    for d in range(n_dev):
        sel = device == d
        cur = current[sel]
        finite = np.isfinite(cur)
        info: dict[str, Any] = {
            "float_current_a": None,
            "current_noise_a": None,
            "discharge_below_a": None,
            "charge_above_a": None,
        }
        if finite.sum() >= 1:
            v = vpc[sel]
            in_float = finite & (v >= WINDOWS[chem[d]].float_low) & (v < WINDOWS[chem[d]].equalize_low) & (cur > 0)
            positive = cur[in_float] if in_float.sum() >= 3 else cur[finite & (cur > 0)]
            i_float = float(np.quantile(positive, 0.25)) if len(positive) else 0.0
            noise = _robust_noise(cur)
            floor = 0.02
            if capacity_ah is not None and np.isfinite(capacity_ah[d]):
                floor = max(floor, 0.002 * float(capacity_ah[d]))
            i_float_dev[d] = i_float
            noise_dev[d] = noise
            d_thr[d] = max(2.0 * i_float, 4.0 * noise, floor)
            c_thr[d] = max(3.0 * i_float, i_float + 4.0 * noise, floor)
            info = {
                "float_current_a": round(i_float, 4),
                "current_noise_a": round(noise, 4),
                "discharge_below_a": round(-float(d_thr[d]), 4),
                "charge_above_a": round(float(c_thr[d]), 4),
            }
        details.append(info)

    has_i = np.isfinite(current)
    dthr, cthr = d_thr[device], c_thr[device]
    with np.errstate(invalid="ignore"):
        dis = _hysteresis(has_i & (current < -dthr), has_i & (current < -2.0 * dthr), boundary)
        chg = _hysteresis(has_i & (current > cthr), has_i & (current > 2.0 * cthr), boundary)
    has_v = np.isfinite(vpc)
    equalize = has_v & (vpc >= win["equalize_low"])
    rest = has_v & (vpc < win["float_low"])
    # a float current still flowing (clearly above the current noise) is no rest: a charger holds the
    # string, whose voltage dipped below the float window (a sagging cell, a low charger setting)
    i_fl = np.nan_to_num(i_float_dev[device])
    with np.errstate(invalid="ignore"):
        flowing = has_i & (i_fl > 3.0 * np.nan_to_num(noise_dev[device])) & (current >= 0.5 * i_fl)
    rest &= ~flowing
    # voltage only where the current is not measured
    v_only = ~has_i & has_v
    dis |= v_only & (vpc < win["discharge_below"])
    chg |= v_only & (vpc >= win["charge_above"]) & (vpc < win["equalize_low"])
    # at the equalize voltage only a bulk-like current (10 x float) is a charge; a few times the float
    # current there is the equalize charge itself
    eq_charge = np.maximum(cthr, 10.0 * np.nan_to_num(i_float_dev[device]))
    with np.errstate(invalid="ignore"):
        chg &= ~(equalize & has_i & (current <= eq_charge))
    codes[rest] = _CODE["rest"]
    codes[equalize] = _CODE["equalize"]
    codes[chg] = _CODE["charge"]
    codes[dis] = _CODE["discharge"]
    # neither current nor voltage: carry the previous state
    unknown = ~has_i & ~has_v
    if unknown.any():
        codes = _fill_previous(codes, ~unknown, boundary)

    # how long each packet "covers": time to the next packet of the string, capped at 3 typical gaps
    gaps = np.diff(time_ns).astype(np.float64) / 1e9
    covers = np.r_[gaps, 0.0]
    last = np.r_[boundary[1:], True]
    typical = np.median(gaps[~boundary[1:]]) if (~boundary[1:]).any() else min_duration_s
    covers[last] = typical
    covers = np.clip(covers, 0.0, 3.0 * max(float(typical), 1e-3))
    codes = _min_duration(codes, covers, boundary, min_duration_s)
    for d, info in enumerate(details):
        sel = device == d
        info["voltage_only_packets"] = int((sel & v_only).sum())
        info["packets"] = int(sel.sum())
    return codes, details


def operating_state(
    frame: pd.DataFrame,
    *,
    chemistry: str = "auto",
    min_duration_s: float = 120.0,
    capacity_ah: float | dict[str, float] | None = None,
) -> pd.Series:
    """The :data:`OPERATING_STATE` of every row's string at its time, a categorical Series on ``frame``'s index.

    ``frame``: canonical readings (``DeviceID``, ``Timestamp``, ``CellVoltage``; ``InstantaneousCurrent``
    and ``CellTemperature`` used when present). ``chemistry``: ``"flooded"``, ``"vrla"`` or ``"auto"``
    (flooded when the table has specific gravity). ``capacity_ah``: rated Ah (one value or per
    device), optional: adds ``0.2 % of C`` as a floor of the current thresholds. Details per
    string are in ``result.attrs["operating_state"]``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError("operating state: expected a table (pandas DataFrame) of readings")
    missing = [c for c in (C.TIMESTAMP, C.VOLTAGE) if c not in frame.columns]
    if missing:
        raise InputError(
            f"operating state needs the column(s) {', '.join(missing)}; the table has "
            f"{', '.join(map(str, frame.columns[:20]))}"
        )
    if chemistry not in ("auto", *CHEMISTRIES):
        raise InputError(f"unknown chemistry {chemistry!r}: use 'auto', 'flooded' or 'vrla'")
    if len(frame) == 0:
        out = pd.Series(pd.Categorical([], dtype=STATE_DTYPE), index=frame.index, name=OPERATING_STATE)
        out.attrs["operating_state"] = {"strings": [], "chemistry": chemistry}
        return out
    chem = infer_chemistry(frame) if chemistry == "auto" else chemistry
    devices = (
        frame[C.DEVICE_ID].astype("string").fillna("").to_numpy(dtype=object)
        if C.DEVICE_ID in frame.columns
        else np.full(len(frame), "", dtype=object)
    )
    packets, dev_names, cells_per_unit = _packets(frame, devices)
    cap = None
    if capacity_ah is not None:
        if isinstance(capacity_ah, dict):
            cap = np.array([float(capacity_ah.get(str(name), np.nan)) for name in dev_names])
        else:
            cap = np.full(len(dev_names), float(capacity_ah))
    codes, details = classify_packets(
        packets.device,
        packets.time_ns,
        packets.current,
        packets.vpc,
        chem,
        min_duration_s=min_duration_s,
        capacity_ah=cap,
    )
    row_codes = codes[packets.row_packet]
    result = pd.Series(pd.Categorical.from_codes(row_codes, dtype=STATE_DTYPE), index=frame.index, name=OPERATING_STATE)
    has_current = C.CURRENT in frame.columns and np.isfinite(packets.current).any()
    strings = []
    for d, name in enumerate(dev_names):
        info = details[d]
        n_v = info.pop("voltage_only_packets")
        packets_d = info.pop("packets")
        if n_v == 0:
            source = "current+voltage"
        elif n_v == packets_d:
            source = "voltage only"
        else:
            source = f"current+voltage, voltage only in {n_v} of {packets_d} packets (current missing)"
        sel = packets.device == d
        counts = {s: int(np.sum(codes[sel] == i)) for i, s in enumerate(STATES)}
        strings.append(
            StringStateInfo(
                device=str(name),
                chemistry=chem,
                source=source,
                packets=packets_d,
                voltage_only_packets=n_v,
                cells_per_unit=int(cells_per_unit[d]),
                counts=counts,
                **info,
            ).to_dict()
        )
    result.attrs["operating_state"] = {
        "chemistry": chem,
        "chemistry_source": "given"
        if chemistry != "auto"
        else ("specific gravity present -> flooded" if chem == FLOODED else "no specific gravity -> VRLA"),
        "current": "measured" if has_current else f"absent: states from voltage only ({C.CURRENT} missing)",
        "min_duration_s": min_duration_s,
        "strings": strings,
    }
    return result


def add_operating_state(frame: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """A copy of ``frame`` with the :data:`OPERATING_STATE` column (see :func:`operating_state`);
    the details are in ``out.attrs["operating_state"]``."""
    state = operating_state(frame, **kwargs)
    out = frame.assign(**{OPERATING_STATE: state})
    out.attrs["operating_state"] = state.attrs["operating_state"]
    return out


def state_summary(info: dict[str, Any]) -> str:
    """One sentence for an envelope message: chemistry, source, share of time in each state."""
    strings = info.get("strings", [])
    totals: dict[str, int] = {}
    for s in strings:
        for k, v in s["counts"].items():
            totals[k] = totals.get(k, 0) + v
    total = sum(totals.values()) or 1
    shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in totals.items() if v)
    sources = sorted({s["source"] for s in strings})
    return f"operating state ({info.get('chemistry')}, from {'; '.join(sources)}): {shares}"


__all__ = [
    "CHEMISTRIES",
    "FLOODED",
    "OPERATING_STATE",
    "STATES",
    "STATE_DTYPE",
    "VRLA",
    "WINDOWS",
    "OperatingState",
    "StringStateInfo",
    "VoltageWindows",
    "add_operating_state",
    "classify_packets",
    "infer_chemistry",
    "operating_state",
    "state_summary",
]
