"""The alert rules: vectorised over the readings one ingest stored (NumPy over the new rows; Python
loops only over packets, cells or the few rows that fire).

Each rule returns *hits*: a frame with one row per reading (or packet) that fires, columns
``cell_key`` (``-1`` = a string-level alert), ``device_id``, ``kind`` (the rule), ``severity``,
``ts_us``, ``message``, ``action``, ``prediction_id``, ``details``. :func:`collapse` turns
hits into one alert row per (cell, rule), which the store opens or counts on the open alert.

Rules that need a run of readings (``min_consecutive``) keep each cell's current run length
in :class:`Streaks`, so the count continues across ingests.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C

from .config import AlertRules, severity_rank

HIT_COLUMNS = ["cell_key", "device_id", "kind", "severity", "ts_us", "message", "action", "prediction_id", "details"]
#: kinds of the physical rules: an anomaly on a cell one of them explains is not a second alert
PHYSICAL_KINDS = ("cell_voltage", "sg_spread", "cell_temperature", "sensor_dropout")
STRING_LEVEL = -1

ACTIONS = {
    "anomaly": (
        "look at the cell's recent history (GET /v1/cells/analyze), confirm with a manual voltage, "
        "temperature and SG reading; report the outcome to POST /v1/feedback"
    ),
    "cell_voltage_low": (
        "IEEE 450/1188: check the cell and its connections, equalize (flooded) or check the charger's float "
        "setting; if it stays low after a refresh charge, test capacity and plan replacement"
    ),
    "cell_voltage_high": (
        "check the charger's float voltage and temperature compensation; a cell floating high while "
        "its peers are low points at a shorted or weak neighbour - test the string"
    ),
    "sg_spread": (
        "IEEE 450 corrective action: equalize charge, then re-read SG and float voltage; check electrolyte level"
    ),
    "cell_temperature": (
        "check the cell and its intercell connectors for heat (loose or corroded connection, high float "
        "current, blocked ventilation); a VRLA cell this hot risks thermal runaway (IEEE 1188): check float "
        "current and reduce the float voltage"
    ),
    "float_current": (
        "IEEE 1188: a rising float current on VRLA precedes dry-out and thermal runaway; check cell "
        "temperatures, the float voltage and its temperature compensation; test the string's ohmic values"
    ),
    "sensor_dropout": (
        "check the cell's sensor lead and monitoring module (0xFFFF = no reading); readings of the cell are "
        "not analysed while it is missing"
    ),
}


def empty_hits() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in HIT_COLUMNS})


def _floats(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _iso(ts_us: np.ndarray) -> list[str]:
    stamps = pd.to_datetime(np.asarray(ts_us, dtype=np.int64), unit="us", utc=True)
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in stamps]


class Streaks:
    """Per (cell, rule) length of the current run of readings that meet a condition."""

    def __init__(self) -> None:
        self._runs: dict[tuple[int, str], int] = {}

    def update(self, rule: str, keys: np.ndarray, ts_us: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """Run length at each row (0 where the condition is false), continuing each cell's earlier run."""
        n = len(keys)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        order = np.lexsort((ts_us, keys))
        k, cond = keys[order], condition[order]
        idx = np.arange(n)
        start = np.r_[True, k[1:] != k[:-1]]
        last_reset = np.maximum.accumulate(np.maximum(np.where(~cond, idx, -1), np.where(start, idx - 1, -1)))
        group_first = np.maximum.accumulate(np.where(start, idx, 0))
        starts = np.flatnonzero(start)
        prior_u = np.fromiter((self._runs.get((int(c), rule), 0) for c in k[starts]), dtype=np.int64, count=len(starts))
        prior = prior_u[np.cumsum(start) - 1]
        run = np.where(cond, idx - last_reset + np.where(last_reset == group_first - 1, prior, 0), 0)
        ends = np.r_[starts[1:] - 1, n - 1]
        for c, r in zip(k[ends].tolist(), run[ends].tolist()):  # one per cell
            if r:
                self._runs[(int(c), rule)] = int(r)
            else:
                self._runs.pop((int(c), rule), None)
        out = np.empty(n, dtype=np.int64)
        out[order] = run
        return out


def _hits(
    frame: pd.DataFrame,
    mask: np.ndarray,
    kind: str,
    severity: np.ndarray | str,
    messages: list[str],
    action: str,
    details: list[dict[str, Any]],
    prediction_ids: list[str | None] | None = None,
) -> pd.DataFrame:
    rows = np.flatnonzero(mask)
    if not len(rows):
        return empty_hits()
    sev = np.broadcast_to(np.asarray(severity, dtype=object), (len(frame),))[rows]
    return pd.DataFrame(
        {
            "cell_key": frame["cell_key"].to_numpy(dtype=np.int64)[rows],
            "device_id": frame[C.DEVICE_ID].astype(str).to_numpy(dtype=object)[rows],
            "kind": kind,
            "severity": sev,
            "ts_us": frame["ts_us"].to_numpy(dtype=np.int64)[rows],
            "message": messages,
            "action": action,
            "prediction_id": prediction_ids if prediction_ids is not None else [None] * len(rows),
            "details": details,
        }
    )


def packet_context(frame: pd.DataFrame) -> pd.DataFrame:
    """Per reading: its string's chemistry (SG present -> flooded), the packet's median V/cell,
    median temperature, median current and whether the string is floating (``bms_schema.state`` windows)."""
    from bms_schema.state import FLOODED, MONOBLOC_ABOVE_V, NOMINAL_CELL_V, VRLA, WINDOWS

    v = _floats(frame, C.VOLTAGE)
    sg = _floats(frame, C.SPECIFIC_GRAVITY)
    device = frame[C.DEVICE_ID].astype(str)
    has_sg = pd.Series(np.isfinite(sg), index=frame.index).groupby(device).transform("any").to_numpy(dtype=bool)
    chemistry = np.where(has_sg, FLOODED, VRLA)
    packet = [device, frame["ts_us"]]
    group = pd.DataFrame(
        {"v": v, "t": _floats(frame, C.TEMPERATURE), "i": _floats(frame, C.CURRENT), "amb": _floats(frame, C.AMBIENT)},
        index=frame.index,
    ).groupby(packet)
    median_v = group["v"].transform("median").to_numpy(dtype=np.float64)
    units = np.where(median_v > MONOBLOC_ABOVE_V, np.round(median_v / NOMINAL_CELL_V), 1.0)
    per_cell = median_v / np.where(units > 0, units, 1.0)
    current = group["i"].transform("median").to_numpy(dtype=np.float64)
    ambient = group["amb"].transform("median").to_numpy(dtype=np.float64)
    string_t = group["t"].transform("median").to_numpy(dtype=np.float64)
    low = np.where(chemistry == FLOODED, WINDOWS[FLOODED].float_low, WINDOWS[VRLA].float_low)
    high = np.where(chemistry == FLOODED, WINDOWS[FLOODED].charge_above, WINDOWS[VRLA].charge_above)
    floating = (per_cell >= low) & (per_cell < high) & ~(current < 0)  # NaN current: voltage only
    return pd.DataFrame(
        {
            "chemistry": chemistry,
            "units": units,
            "median_v": per_cell,
            "current": current,
            "ambient": ambient,
            "string_t": string_t,
            "floating": floating,
        },
        index=frame.index,
    )


def anomaly_hits(frame: pd.DataFrame, scored: dict[str, Any] | None, rules: AlertRules) -> pd.DataFrame:
    rule = rules.anomaly
    if not rule.enabled or not scored or not scored.get("results"):
        return empty_hits()
    results = scored["results"]
    flag = np.fromiter((bool(r["AnomalyFlag"]) for r in results), dtype=bool, count=len(results))
    kinds = np.asarray([r["AnomalyKind"] or "anomaly" for r in results], dtype=object)
    mask = flag & ~np.isin(kinds, list(rule.exclude_kinds))
    rows = np.flatnonzero(mask)
    if not len(rows):
        return empty_hits()
    severity = np.where(np.isin(kinds, list(rule.critical_kinds)), "critical", "warning")
    messages = [
        f"{results[i]['CellID']} at {results[i]['Timestamp']}: {results[i]['reason'] or kinds[i]} "
        f"(anomaly score {results[i]['AnomalyScore']:.2f})"
        if results[i]["AnomalyScore"] is not None
        else f"{results[i]['CellID']} at {results[i]['Timestamp']}: {results[i]['reason'] or kinds[i]}"
        for i in rows.tolist()
    ]
    details = [{"anomaly_kind": kinds[i], "score": results[i]["AnomalyScore"]} for i in rows.tolist()]
    hits = _hits(
        frame,
        mask,
        "anomaly",
        severity,
        messages,
        ACTIONS["anomaly"],
        details,
        [results[i]["prediction_id"] for i in rows.tolist()],
    )
    hits["kind"] = ["anomaly:" + str(kinds[i]) for i in rows.tolist()]  # one alert per cell and anomaly kind
    return hits


def cell_voltage_hits(frame: pd.DataFrame, ctx: pd.DataFrame, rules: AlertRules, streaks: Streaks) -> pd.DataFrame:
    from bms_schema.state import FLOODED, TEMP_COMP_V_PER_DEGC

    rule = rules.cell_voltage
    if not rule.enabled:
        return empty_hits()
    v = _floats(frame, C.VOLTAGE) / ctx["units"].to_numpy()
    flooded = ctx["chemistry"].to_numpy() == FLOODED
    low = np.where(flooded, rule.flooded_band_v[0], rule.vrla_band_v[0])
    high = np.where(flooded, rule.flooded_band_v[1], rule.vrla_band_v[1])
    if rule.temperature_compensation:  # the charger compensates by the battery's temperature, not one cell's
        battery_t = ctx["ambient"].to_numpy()
        battery_t = np.where(np.isfinite(battery_t), battery_t, ctx["string_t"].to_numpy())
        shift = np.where(np.isfinite(battery_t), -TEMP_COMP_V_PER_DEGC * (battery_t - 25.0), 0.0)
        low, high = low + shift, high + shift
    floating = ctx["floating"].to_numpy(dtype=bool)
    too_low = floating & (v < low - rule.tolerance_v)
    too_high = floating & (v > high + rule.tolerance_v)
    keys, ts = frame["cell_key"].to_numpy(dtype=np.int64), frame["ts_us"].to_numpy(dtype=np.int64)
    out = []
    for name, cond in (("low", too_low), ("high", too_high)):
        run = streaks.update(f"cell_voltage_{name}", keys, ts, cond)
        mask = cond & (run >= rule.min_consecutive)
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        critical = (v < rule.critical_low_v) if name == "low" else (v > high + rule.critical_high_margin_v)
        stamps = _iso(ts[rows])
        cells = frame[C.CELL_ID].astype(str).to_numpy(dtype=object)
        messages = [
            f"{cells[i]} at {s}: float voltage {v[i]:.3f} V/cell {'below' if name == 'low' else 'above'} the "
            f"{'flooded (IEEE 450)' if flooded[i] else 'VRLA (IEEE 1188)'} float band {low[i]:.3f}-{high[i]:.3f} V "
            f"(+-{rule.tolerance_v:g} V) for {run[i]} readings; string median {ctx['median_v'].iloc[i]:.3f} V"
            for i, s in zip(rows.tolist(), stamps)
        ]
        details = [
            {"voltage": float(v[i]), "band": [float(low[i]), float(high[i])], "readings": int(run[i])}
            for i in rows.tolist()
        ]
        out.append(
            _hits(
                frame,
                mask,
                "cell_voltage",
                np.where(critical, "critical", "warning"),
                messages,
                ACTIONS[f"cell_voltage_{name}"],
                details,
            )
        )
    return pd.concat(out, ignore_index=True) if out else empty_hits()


def sg_spread_hits(frame: pd.DataFrame, ctx: pd.DataFrame, rules: AlertRules, streaks: Streaks) -> pd.DataFrame:
    rule = rules.sg_spread
    if not rule.enabled or C.SPECIFIC_GRAVITY not in frame:
        return empty_hits()
    sg = _floats(frame, C.SPECIFIC_GRAVITY)
    packet = [frame[C.DEVICE_ID].astype(str), frame["ts_us"]]
    group = pd.Series(sg, index=frame.index).groupby(packet)
    mean = group.transform("mean").to_numpy(dtype=np.float64)
    count = group.transform("count").to_numpy(dtype=np.int64)
    spread = (group.transform("max") - group.transform("min")).to_numpy(dtype=np.float64)
    below = mean - sg
    cond = (count >= rule.min_cells) & (below > rule.below_mean)
    keys, ts = frame["cell_key"].to_numpy(dtype=np.int64), frame["ts_us"].to_numpy(dtype=np.int64)
    run = streaks.update("sg_spread", keys, ts, cond)
    mask = cond & (run >= rule.min_consecutive)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return empty_hits()
    cells = frame[C.CELL_ID].astype(str).to_numpy(dtype=object)
    messages = [
        f"{cells[i]} at {s}: specific gravity {sg[i]:.3f} is {below[i]:.3f} below the string mean {mean[i]:.3f} "
        f"(limit {rule.below_mean:g}, IEEE 450; spread across the string {spread[i]:.3f}) for {run[i]} readings"
        for i, s in zip(rows.tolist(), _iso(ts[rows]))
    ]
    details = [
        {"sg": float(sg[i]), "string_mean": float(mean[i]), "spread": float(spread[i]), "readings": int(run[i])}
        for i in rows.tolist()
    ]
    severity = np.where(below >= rule.critical_below_mean, "critical", "warning")
    return _hits(frame, mask, "sg_spread", severity, messages, ACTIONS["sg_spread"], details)


def cell_temperature_hits(frame: pd.DataFrame, ctx: pd.DataFrame, rules: AlertRules, streaks: Streaks) -> pd.DataFrame:
    rule = rules.cell_temperature
    if not rule.enabled:
        return empty_hits()
    t = _floats(frame, C.TEMPERATURE)
    ambient = _floats(frame, C.AMBIENT)
    ambient = np.where(np.isfinite(ambient), ambient, ctx["ambient"].to_numpy())
    over = t - ambient
    hot = t >= rule.hot_c
    warm = np.isfinite(over) & (over >= rule.over_ambient_c)
    cond = hot | warm
    keys, ts = frame["cell_key"].to_numpy(dtype=np.int64), frame["ts_us"].to_numpy(dtype=np.int64)
    run = streaks.update("cell_temperature", keys, ts, cond)
    mask = cond & (run >= rule.min_consecutive)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return empty_hits()
    cells = frame[C.CELL_ID].astype(str).to_numpy(dtype=object)
    messages = []
    for i, s in zip(rows.tolist(), _iso(ts[rows])):
        parts = []
        if hot[i]:
            parts.append(f"at or above the hot-cell limit {rule.hot_c:g} degC")
        if warm[i]:
            parts.append(f"{over[i]:.1f} degC over ambient {ambient[i]:.1f} degC (limit {rule.over_ambient_c:g})")
        messages.append(f"{cells[i]} at {s}: cell temperature {t[i]:.1f} degC, " + "; ".join(parts))
    details = [
        {"temperature": float(t[i]), "ambient": None if not np.isfinite(ambient[i]) else float(ambient[i])}
        for i in rows.tolist()
    ]
    critical = (t >= rule.hot_critical_c) | (np.isfinite(over) & (over >= rule.over_ambient_critical_c))
    return _hits(
        frame,
        mask,
        "cell_temperature",
        np.where(critical, "critical", "warning"),
        messages,
        ACTIONS["cell_temperature"],
        details,
    )


def sensor_dropout_hits(frame: pd.DataFrame, rules: AlertRules, streaks: Streaks) -> pd.DataFrame:
    rule = rules.sensor_dropout
    if not rule.enabled:
        return empty_hits()
    v, t = _floats(frame, C.VOLTAGE), _floats(frame, C.TEMPERATURE)
    cond = ~np.isfinite(v) | ~np.isfinite(t)
    keys, ts = frame["cell_key"].to_numpy(dtype=np.int64), frame["ts_us"].to_numpy(dtype=np.int64)
    run = streaks.update("sensor_dropout", keys, ts, cond)
    mask = cond & (run >= rule.min_consecutive)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return empty_hits()
    cells = frame[C.CELL_ID].astype(str).to_numpy(dtype=object)
    sentinel = frame[C.SENSOR_FAULT].to_numpy(dtype=bool) if C.SENSOR_FAULT in frame else np.zeros(len(frame), bool)
    messages = [
        f"{cells[i]} at {s}: "
        + ", ".join(n for n, bad in (("voltage", not np.isfinite(v[i])), ("temperature", not np.isfinite(t[i]))) if bad)
        + f" missing for {run[i]} readings in a row"
        + (" (0xFFFF sentinel: the sensor reports no reading)" if sentinel[i] else "")
        for i, s in zip(rows.tolist(), _iso(ts[rows]))
    ]
    details = [{"readings": int(run[i]), "sentinel": bool(sentinel[i])} for i in rows.tolist()]
    return _hits(frame, mask, "sensor_dropout", "warning", messages, ACTIONS["sensor_dropout"], details)


class FloatBaseline:
    """Each string's recent float currents (a bounded window per device)."""

    def __init__(self) -> None:
        self._currents: dict[str, deque[float]] = {}

    def check(self, frame: pd.DataFrame, ctx: pd.DataFrame, rules: AlertRules) -> pd.DataFrame:
        rule = rules.float_current
        if not rule.enabled or C.CURRENT not in frame:
            return empty_hits()
        wanted = np.isin(ctx["chemistry"].to_numpy(), list(rule.chemistries)) & ctx["floating"].to_numpy(dtype=bool)
        wanted &= np.isfinite(ctx["current"].to_numpy())
        if not wanted.any():
            return empty_hits()
        packets = (
            pd.DataFrame(
                {
                    "device_id": frame[C.DEVICE_ID].astype(str).to_numpy()[wanted],
                    "ts_us": frame["ts_us"].to_numpy(dtype=np.int64)[wanted],
                    "current": ctx["current"].to_numpy()[wanted],
                }
            )
            .drop_duplicates(["device_id", "ts_us"])
            .sort_values(["device_id", "ts_us"])
        )
        rows = []
        for device, ts, current in packets.itertuples(index=False):  # one per packet
            window = self._currents.setdefault(device, deque(maxlen=rule.window_packets))
            if len(window) >= rule.baseline_packets:
                base = float(np.median(np.asarray(window)))
                limit = max(base * rule.rise_factor, base + rule.min_rise_a)
                if current > limit:
                    rows.append(
                        {
                            "cell_key": STRING_LEVEL,
                            "device_id": device,
                            "kind": "float_current",
                            "severity": "critical" if current > 2 * limit else "warning",
                            "ts_us": int(ts),
                            "message": (
                                f"string {device} at {_iso(np.array([ts]))[0]}: float current {current:.2f} A, "
                                f"{current / base if base > 0 else float('inf'):.1f}x its float baseline {base:.2f} A "
                                f"(limit {limit:.2f} A; IEEE 1188)"
                            ),
                            "action": ACTIONS["float_current"],
                            "prediction_id": None,
                            "details": {"current": float(current), "baseline": base, "limit": limit},
                        }
                    )
                    continue  # a raised current does not move the baseline
            window.append(float(current))
        return pd.DataFrame(rows, columns=HIT_COLUMNS) if rows else empty_hits()


def collapse(hits: pd.DataFrame) -> list[dict[str, Any]]:
    """One alert row per (cell, rule): first/last time, how many readings fired, the worst severity,
    the message and values of the newest (worst) reading."""
    if hits.empty:
        return []
    hits = hits.assign(rank=[severity_rank(s) for s in hits["severity"]]).sort_values(
        ["cell_key", "kind", "rank", "ts_us"], kind="stable"
    )
    out = []
    for (key, kind), part in hits.groupby(["cell_key", "kind"], sort=True):  # one per cell and rule
        last = part.iloc[-1]
        out.append(
            {
                "cell_key": None if int(key) == STRING_LEVEL else int(key),
                "device_id": str(last["device_id"]),
                "kind": str(kind),
                "severity": str(last["severity"]),
                "message": str(last["message"]),
                "action": str(last["action"]),
                "details": json.dumps({**(last["details"] or {}), "hits": int(len(part))}, default=float),
                "first_us": int(part["ts_us"].min()),
                "last_us": int(part["ts_us"].max()),
                "prediction_id": last["prediction_id"],
                "count": int(len(part)),
            }
        )
    return out
