"""The alert rules: vectorised over the readings one ingest stored (NumPy over the new rows; Python
loops only over packets, cells or the few rows that fire).

Each rule returns *hits*: one dict per reading (or packet) that fires, with
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

Hit = dict[str, Any]
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


def _floats(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    column = frame[name]
    if not pd.api.types.is_numeric_dtype(column.dtype):
        column = pd.to_numeric(column, errors="coerce")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _iso(ts_us: np.ndarray) -> list[str]:
    stamps = pd.to_datetime(np.asarray(ts_us, dtype=np.int64), unit="us", utc=True)
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in stamps]


class Batch:
    """The arrays of one ingest's new readings, with each reading's packet (device, time), the
    per-cell time order and each string's context (chemistry, median V/cell, current, ambient,
    floating or not, by ``bms_schema.state``'s windows)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        from bms_schema.state import FLOODED, MONOBLOC_ABOVE_V, NOMINAL_CELL_V, VRLA, WINDOWS

        n = self.n = len(frame)
        self.keys = frame["cell_key"].to_numpy(dtype=np.int64)
        self.ts = frame["ts_us"].to_numpy(dtype=np.int64)
        self.device = frame[C.DEVICE_ID].to_numpy(dtype=object)
        self.cell = (
            frame[C.CELL_ID].to_numpy(dtype=object)
            if C.CELL_ID in frame
            else np.asarray([f"{d}-{c}" for d, c in zip(self.device, frame[C.CELL_NUMBER])], dtype=object)
        )
        self.v, self.t = _floats(frame, C.VOLTAGE), _floats(frame, C.TEMPERATURE)
        self.sg, self.i, self.amb = (
            _floats(frame, C.SPECIFIC_GRAVITY),
            _floats(frame, C.CURRENT),
            _floats(frame, C.AMBIENT),
        )
        self.sentinel = (
            frame[C.SENSOR_FAULT].to_numpy(dtype=bool) if C.SENSOR_FAULT in frame else np.zeros(n, dtype=bool)
        )
        codes, _ = pd.factorize(self.device)
        codes = np.asarray(codes, dtype=np.int64)
        # packets: rows sorted by (device, time), split where either changes
        order = np.lexsort((self.ts, codes))
        new = np.r_[True, (codes[order][1:] != codes[order][:-1]) | (self.ts[order][1:] != self.ts[order][:-1])]
        self.packets = np.split(order, np.flatnonzero(new)[1:]) if n else []
        self.n_packets = len(self.packets)
        self.packet_id = np.empty(n, dtype=np.int64)
        self.packet_id[order] = np.cumsum(new) - 1
        self.packet_start = np.flatnonzero(new) if n else np.zeros(0, dtype=np.int64)
        # per-cell time order, for the run lengths
        self.cell_order = np.lexsort((self.ts, self.keys))
        k = self.keys[self.cell_order]
        self.cell_start = np.r_[True, k[1:] != k[:-1]] if n else np.zeros(0, dtype=bool)
        has_sg = np.bincount(
            codes, weights=np.isfinite(self.sg).astype(np.float64), minlength=codes.max() + 1 if n else 0
        )
        self.flooded = has_sg[codes] > 0 if n else np.zeros(0, dtype=bool)
        self.chemistry = np.where(self.flooded, FLOODED, VRLA)
        self.median_v = self.per_packet(self.v)
        self.units = np.where(self.median_v > MONOBLOC_ABOVE_V, np.round(self.median_v / NOMINAL_CELL_V), 1.0)
        self.units = np.where(self.units > 0, self.units, 1.0)
        self.median_v = self.median_v / self.units
        self.current = self.per_packet(self.i)
        self.ambient = self.per_packet(self.amb)
        self.string_t = self.per_packet(self.t)
        low = np.where(self.flooded, WINDOWS[FLOODED].float_low, WINDOWS[VRLA].float_low)
        high = np.where(self.flooded, WINDOWS[FLOODED].charge_above, WINDOWS[VRLA].charge_above)
        self.floating = (
            (self.median_v >= low) & (self.median_v < high) & ~(self.current < 0)
        )  # NaN current: voltage only

    def per_packet(self, values: np.ndarray) -> np.ndarray:
        """Median of each packet's finite values (NaN if none), on each of its rows: one sort."""
        if not self.n:
            return np.zeros(0)
        pid, finite = self.packet_id, np.isfinite(values)
        key = np.where(finite, values, np.inf)  # missing values sort last within their packet
        ordered = key[np.lexsort((key, pid))]
        counts = np.bincount(pid[finite], minlength=self.n_packets)
        lo = np.clip(self.packet_start + (counts - 1) // 2, 0, self.n - 1)
        hi = np.clip(self.packet_start + counts // 2, 0, self.n - 1)
        median = np.where(counts > 0, (ordered[lo] + ordered[hi]) / 2, np.nan)
        return median[pid]

    def packet_stats(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: its packet's mean, max - min and count of finite values."""
        pid, finite = self.packet_id, np.isfinite(values)
        counts = np.bincount(pid[finite], minlength=self.n_packets)
        sums = np.bincount(pid[finite], weights=values[finite], minlength=self.n_packets)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
        high = np.full(self.n_packets, -np.inf)
        low = np.full(self.n_packets, np.inf)
        np.maximum.at(high, pid[finite], values[finite])
        np.minimum.at(low, pid[finite], values[finite])
        spread = np.where(counts > 0, high - low, np.nan)
        return mean[pid], spread[pid], counts[pid]

    def hits(
        self,
        mask: np.ndarray,
        kind: str,
        severity: np.ndarray | str,
        message: Any,
        action: str,
        details: Any,
        prediction_ids: list[str | None] | None = None,
    ) -> list[Hit]:
        """One hit per row of ``mask``; ``message(i, stamp)`` and ``details(i)`` build its text and values."""
        rows = np.flatnonzero(mask).tolist()
        if not rows:
            return []
        sev = np.broadcast_to(np.asarray(severity, dtype=object), (self.n,))
        stamps = _iso(self.ts[rows])
        return [
            {
                "cell_key": int(self.keys[i]),
                "device_id": str(self.device[i]),
                "kind": kind,
                "severity": str(sev[i]),
                "ts_us": int(self.ts[i]),
                "message": message(i, stamp),
                "action": action,
                "prediction_id": prediction_ids[j] if prediction_ids is not None else None,
                "details": details(i),
            }
            for j, (i, stamp) in enumerate(zip(rows, stamps))
        ]


class Streaks:
    """Per (cell, rule) length of the current run of readings that meet a condition."""

    def __init__(self) -> None:
        self._runs: dict[tuple[int, str], int] = {}

    def update(self, rule: str, batch: Batch, condition: np.ndarray) -> np.ndarray:
        """Run length at each row (0 where the condition is false), continuing each cell's earlier run."""
        n = batch.n
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        order, start = batch.cell_order, batch.cell_start
        k, cond = batch.keys[order], condition[order]
        idx = np.arange(n)
        last_reset = np.maximum.accumulate(np.maximum(np.where(~cond, idx, -1), np.where(start, idx - 1, -1)))
        group_first = np.maximum.accumulate(np.where(start, idx, 0))
        starts = np.flatnonzero(start)
        runs = self._runs
        prior_u = np.fromiter((runs.get((c, rule), 0) for c in k[starts].tolist()), dtype=np.int64, count=len(starts))
        prior = prior_u[np.cumsum(start) - 1]
        run = np.where(cond, idx - last_reset + np.where(last_reset == group_first - 1, prior, 0), 0)
        ends = np.r_[starts[1:] - 1, n - 1]
        for c, r in zip(k[ends].tolist(), run[ends].tolist()):  # one per cell
            if r:
                runs[(c, rule)] = r
            else:
                runs.pop((c, rule), None)
        out = np.empty(n, dtype=np.int64)
        out[order] = run
        return out


def anomaly_hits(batch: Batch, scored: dict[str, Any] | None, rules: AlertRules) -> list[Hit]:
    rule = rules.anomaly
    if not rule.enabled or not scored or not scored.get("results"):
        return []
    results = scored["results"]
    flag = np.fromiter((bool(r["AnomalyFlag"]) for r in results), dtype=bool, count=len(results))
    if not flag.any():
        return []
    kinds = np.asarray([r["AnomalyKind"] or "anomaly" for r in results], dtype=object)
    mask = flag & ~np.isin(kinds, list(rule.exclude_kinds))
    severity = np.where(np.isin(kinds, list(rule.critical_kinds)), "critical", "warning")

    def message(i: int, stamp: str) -> str:
        r = results[i]
        score = f" (anomaly score {r['AnomalyScore']:.2f})" if r["AnomalyScore"] is not None else ""
        return f"{r['CellID']} at {r['Timestamp']}: {r['reason'] or kinds[i]}{score}"

    rows = np.flatnonzero(mask).tolist()
    hits = batch.hits(
        mask,
        "anomaly",
        severity,
        message,
        ACTIONS["anomaly"],
        lambda i: {"anomaly_kind": str(kinds[i]), "score": results[i]["AnomalyScore"]},
        [results[i]["prediction_id"] for i in rows],
    )
    for hit, i in zip(hits, rows):
        hit["kind"] = f"anomaly:{kinds[i]}"  # one alert per cell and anomaly kind
    return hits


def cell_voltage_hits(batch: Batch, rules: AlertRules, streaks: Streaks) -> list[Hit]:
    from bms_schema.state import TEMP_COMP_V_PER_DEGC

    rule = rules.cell_voltage
    if not rule.enabled:
        return []
    v = batch.v / batch.units
    flooded = batch.flooded
    low = np.where(flooded, rule.flooded_band_v[0], rule.vrla_band_v[0])
    high = np.where(flooded, rule.flooded_band_v[1], rule.vrla_band_v[1])
    if rule.temperature_compensation:  # the charger compensates by the battery's temperature, not one cell's
        battery_t = np.where(np.isfinite(batch.ambient), batch.ambient, batch.string_t)
        shift = np.where(np.isfinite(battery_t), -TEMP_COMP_V_PER_DEGC * (battery_t - 25.0), 0.0)
        low, high = low + shift, high + shift
    out: list[Hit] = []
    for name, cond in (
        ("low", batch.floating & (v < low - rule.tolerance_v)),
        ("high", batch.floating & (v > high + rule.tolerance_v)),
    ):
        run = streaks.update(f"cell_voltage_{name}", batch, cond)
        mask = cond & (run >= rule.min_consecutive)
        if not mask.any():
            continue
        critical = (v < rule.critical_low_v) if name == "low" else (v > high + rule.critical_high_margin_v)
        where = "below" if name == "low" else "above"

        def message(i: int, stamp: str, where: str = where) -> str:
            std = "flooded (IEEE 450)" if flooded[i] else "VRLA (IEEE 1188)"
            return (
                f"{batch.cell[i]} at {stamp}: float voltage {v[i]:.3f} V/cell {where} the {std} float band "
                f"{low[i]:.3f}-{high[i]:.3f} V (+-{rule.tolerance_v:g} V) for {run[i]} readings; "
                f"string median {batch.median_v[i]:.3f} V"
            )

        out += batch.hits(
            mask,
            "cell_voltage",
            np.where(critical, "critical", "warning"),
            message,
            ACTIONS[f"cell_voltage_{name}"],
            lambda i: {"voltage": float(v[i]), "band": [float(low[i]), float(high[i])], "readings": int(run[i])},
        )
    return out


def sg_spread_hits(batch: Batch, rules: AlertRules, streaks: Streaks) -> list[Hit]:
    rule = rules.sg_spread
    if not rule.enabled or not np.isfinite(batch.sg).any():
        return []
    sg = batch.sg

    mean, spread, count = batch.packet_stats(sg)
    below = mean - sg
    cond = (count >= rule.min_cells) & (below > rule.below_mean)
    run = streaks.update("sg_spread", batch, cond)
    mask = cond & (run >= rule.min_consecutive)
    if not mask.any():
        return []
    return batch.hits(
        mask,
        "sg_spread",
        np.where(below >= rule.critical_below_mean, "critical", "warning"),
        lambda i, stamp: (
            f"{batch.cell[i]} at {stamp}: specific gravity {sg[i]:.3f} is {below[i]:.3f} below the string mean "
            f"{mean[i]:.3f} (limit {rule.below_mean:g}, IEEE 450; spread across the string {spread[i]:.3f}) "
            f"for {run[i]} readings"
        ),
        ACTIONS["sg_spread"],
        lambda i: {
            "sg": float(sg[i]),
            "string_mean": float(mean[i]),
            "spread": float(spread[i]),
            "readings": int(run[i]),
        },
    )


def cell_temperature_hits(batch: Batch, rules: AlertRules, streaks: Streaks) -> list[Hit]:
    rule = rules.cell_temperature
    if not rule.enabled:
        return []
    t = batch.t
    ambient = np.where(np.isfinite(batch.amb), batch.amb, batch.ambient)
    over = t - ambient
    hot = t >= rule.hot_c
    warm = np.isfinite(over) & (over >= rule.over_ambient_c)
    cond = hot | warm
    run = streaks.update("cell_temperature", batch, cond)
    mask = cond & (run >= rule.min_consecutive)
    if not mask.any():
        return []

    def message(i: int, stamp: str) -> str:
        parts = []
        if hot[i]:
            parts.append(f"at or above the hot-cell limit {rule.hot_c:g} degC")
        if warm[i]:
            parts.append(f"{over[i]:.1f} degC over ambient {ambient[i]:.1f} degC (limit {rule.over_ambient_c:g})")
        return f"{batch.cell[i]} at {stamp}: cell temperature {t[i]:.1f} degC, " + "; ".join(parts)

    critical = (t >= rule.hot_critical_c) | (np.isfinite(over) & (over >= rule.over_ambient_critical_c))
    return batch.hits(
        mask,
        "cell_temperature",
        np.where(critical, "critical", "warning"),
        message,
        ACTIONS["cell_temperature"],
        lambda i: {"temperature": float(t[i]), "ambient": float(ambient[i]) if np.isfinite(ambient[i]) else None},
    )


def sensor_dropout_hits(batch: Batch, rules: AlertRules, streaks: Streaks) -> list[Hit]:
    rule = rules.sensor_dropout
    if not rule.enabled:
        return []
    v_missing, t_missing = ~np.isfinite(batch.v), ~np.isfinite(batch.t)
    cond = v_missing | t_missing
    run = streaks.update("sensor_dropout", batch, cond)
    mask = cond & (run >= rule.min_consecutive)
    if not mask.any():
        return []

    def message(i: int, stamp: str) -> str:
        what = ", ".join(n for n, bad in (("voltage", v_missing[i]), ("temperature", t_missing[i])) if bad)
        note = " (0xFFFF sentinel: the sensor reports no reading)" if batch.sentinel[i] else ""
        return f"{batch.cell[i]} at {stamp}: {what} missing for {run[i]} readings in a row{note}"

    return batch.hits(
        mask,
        "sensor_dropout",
        "warning",
        message,
        ACTIONS["sensor_dropout"],
        lambda i: {"readings": int(run[i]), "sentinel": bool(batch.sentinel[i])},
    )


class FloatBaseline:
    """Each string's recent float currents (a bounded window per device)."""

    def __init__(self) -> None:
        self._currents: dict[str, deque[float]] = {}

    def check(self, batch: Batch, rules: AlertRules) -> list[Hit]:
        rule = rules.float_current
        if not rule.enabled:
            return []
        out: list[Hit] = []
        chem = set(rule.chemistries)
        for rows in batch.packets:  # one per packet, in (device, time) order
            i = int(rows[0])
            current = float(batch.current[i])
            if batch.chemistry[i] not in chem or not batch.floating[i] or not np.isfinite(current):
                continue
            device = str(batch.device[i])
            window = self._currents.setdefault(device, deque(maxlen=rule.window_packets))
            if len(window) >= max(1, rule.baseline_packets):
                base = float(np.median(np.asarray(window)))
                limit = max(base * rule.rise_factor, base + rule.min_rise_a)
                if current > limit:
                    ratio = f"{current / base:.1f}x" if base > 0 else "far above"
                    out.append(
                        {
                            "cell_key": STRING_LEVEL,
                            "device_id": device,
                            "kind": "float_current",
                            "severity": "critical" if current > 2 * limit else "warning",
                            "ts_us": int(batch.ts[i]),
                            "message": (
                                f"string {device} at {_iso(batch.ts[[i]])[0]}: float current {current:.2f} A, "
                                f"{ratio} its float baseline {base:.2f} A (limit {limit:.2f} A; IEEE 1188)"
                            ),
                            "action": ACTIONS["float_current"],
                            "prediction_id": None,
                            "details": {"current": current, "baseline": base, "limit": limit},
                        }
                    )
                    continue  # a raised current does not move the baseline
            window.append(current)
        return out


def collapse(hits: list[Hit]) -> list[dict[str, Any]]:
    """One alert row per (cell, rule): first/last time, how many readings fired, the worst severity,
    the message and values of the newest of the worst readings."""
    groups: dict[tuple[int, str], list[Hit]] = {}
    for hit in hits:  # the rows that fired (few)
        groups.setdefault((int(hit["cell_key"]), str(hit["kind"])), []).append(hit)
    out = []
    for (key, kind), part in sorted(groups.items()):
        last = max(part, key=lambda h: (severity_rank(h["severity"]), h["ts_us"]))
        out.append(
            {
                "cell_key": None if key == STRING_LEVEL else key,
                "device_id": str(last["device_id"]),
                "kind": kind,
                "severity": str(last["severity"]),
                "message": str(last["message"]),
                "action": str(last["action"]),
                "details": json.dumps({**(last["details"] or {}), "hits": len(part)}, default=float),
                "first_us": min(h["ts_us"] for h in part),
                "last_us": max(h["ts_us"] for h in part),
                "prediction_id": last["prediction_id"],
                "count": len(part),
            }
        )
    return out
