"""A realistic charge/discharge record with labelled injected faults (the anomaly benchmark's data).

One 12 V monobloc (6 cells with cell-level sensing, the default) or one 2 V cell, sampled every
few seconds through: float -> a mains-outage discharge -> rest (open circuit) -> bulk charge
(constant current) -> absorption (constant voltage, current tapering) -> float again. The physics
is the fleet simulator's (:mod:`bms_datagen.fleet_physics`: OCV = SG + 0.84 V with the
chemistry's acid SG, I x R and polarisation, temperature-compensated float, float current doubling
per 10 degC, I^2 R heating through a thermal lag) plus what a seconds-resolution record shows and
a 15-minute fleet does not: the polarisation building up and relaxing with time constants of
minutes, the charge acceptance falling near full charge (gassing overvoltage in bulk, the
unaccepted absorption current turned into heat by oxygen recombination in a VRLA cell).

Python API::

    from bms_datagen.records import simulate_cycle_record
    rec = simulate_cycle_record(seed=0, interval_seconds=5, chemistry="vrla", cells=6)
    rec.readings   # minimal readings table + Phase, TrueState, IsAnomaly, AnomalyType
    rec.faults     # one row per injected fault: type, cell, phase, start, end, magnitude, rows
    rec.phases     # start/end of each phase

CLI::

    python -m bms_datagen.records --out record.csv [--faults-out faults.csv] [--seed 0] [--cells 6]

Faults (``faults=``): ``None`` places the default set (a sudden 0.08 V/cell sag in float,
discharge, rest and bulk charge, and a +12 degC hot spot in discharge and in float); a list of
type names places one of each at its default position; a list of dicts gives full control:
``{"type": "voltage_sag", "cell": 2, "phase": "float_before", "at": 0.3, "minutes": 3,
"magnitude": 0.08}`` (``at`` = position within the phase, 0..1). Types: ``voltage_sag`` (V/cell
drop), ``hot_spot`` (degC rise, 1-minute ramps), ``sensor_spike`` (one reading, +V), ``stuck_sensor``
(the voltage frozen), ``loose_connection`` (extra resistance in ohm: the reading deviates by
I x R only while current flows). Every reading inside a fault window is labelled
``IsAnomaly = 1`` with its ``AnomalyType``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema.errors import InputError

from .fleet_physics import CHEMISTRY, FLOAT_TEMP_COMP, OCV_OFFSET, first_order_filter

PHASES: tuple[str, ...] = ("float_before", "discharge", "rest", "bulk", "absorption", "float_after")
#: Operating state (``bms_schema.state`` names) of each phase.
PHASE_STATE: dict[str, str] = {
    "float_before": "float",
    "discharge": "discharge",
    "rest": "rest",
    "bulk": "charge",
    "absorption": "charge",
    "float_after": "float",
}
FAULT_TYPES: tuple[str, ...] = ("voltage_sag", "hot_spot", "sensor_spike", "stuck_sensor", "loose_connection")
#: Default magnitude and duration (minutes) per fault type.
FAULT_DEFAULTS: dict[str, tuple[float, float]] = {
    "voltage_sag": (0.08, 3.0),
    "hot_spot": (12.0, 20.0),
    "sensor_spike": (0.30, 0.0),
    "stuck_sensor": (0.0, 10.0),
    "loose_connection": (0.004, 20.0),
}
DEFAULT_FAULTS: tuple[dict[str, Any], ...] = (
    {"type": "voltage_sag", "cell": 2, "phase": "float_before", "at": 0.35},
    {"type": "voltage_sag", "cell": 5, "phase": "discharge", "at": 0.55},
    {"type": "voltage_sag", "cell": 3, "phase": "rest", "at": 0.60},
    {"type": "voltage_sag", "cell": 4, "phase": "bulk", "at": 0.40},
    {"type": "hot_spot", "cell": 1, "phase": "discharge", "at": 0.20},
    {"type": "hot_spot", "cell": 6, "phase": "float_after", "at": 0.50},
)
#: Where a fault named without a position goes.
DEFAULT_PLACE: dict[str, tuple[str, float]] = {
    "voltage_sag": ("float_before", 0.35),
    "hot_spot": ("float_after", 0.5),
    "sensor_spike": ("bulk", 0.5),
    "stuck_sensor": ("discharge", 0.4),
    "loose_connection": ("discharge", 0.7),
}

ABSORPTION_V = {"vrla": 2.40, "flooded": 2.35}  # V/cell held in absorption (boost)
MAX_STEPS = 2_000_000


@dataclass
class CycleRecord:
    readings: pd.DataFrame
    faults: pd.DataFrame
    phases: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def _faults(faults: Sequence[str | dict[str, Any]] | None, cells: int) -> list[dict[str, Any]]:
    specs = list(DEFAULT_FAULTS) if faults is None else list(faults)
    out = []
    for i, spec in enumerate(specs):
        item: dict[str, Any] = {"type": spec} if isinstance(spec, str) else dict(spec)
        kind = item.get("type")
        if kind not in FAULT_TYPES:
            raise InputError(f"fault {i}: type must be one of {', '.join(FAULT_TYPES)}, got {kind!r}")
        unknown = set(item) - {"type", "cell", "phase", "at", "minutes", "magnitude"}
        if unknown:
            raise InputError(
                f"fault {i}: unknown key(s) {sorted(unknown)}; use type, cell, phase, at, minutes, magnitude"
            )
        phase, at = DEFAULT_PLACE[kind]
        magnitude, minutes = FAULT_DEFAULTS[kind]
        item.setdefault("phase", phase)
        item.setdefault("at", at)
        item.setdefault("minutes", minutes)
        item.setdefault("magnitude", magnitude)
        item.setdefault("cell", 1 + i % cells)
        if item["phase"] not in PHASES:
            raise InputError(f"fault {i}: phase must be one of {', '.join(PHASES)}, got {item['phase']!r}")
        if not 0.0 <= float(item["at"]) <= 1.0:
            raise InputError(f"fault {i}: 'at' is the position within the phase, 0..1, got {item['at']}")
        cell = int(item["cell"])
        item["cell"] = 1 + (cell - 1) % cells  # a 6-cell layout on a one-cell record maps onto cell 1
        out.append(item)
    return out


def simulate_cycle_record(
    seed: int = 0,
    interval_seconds: float = 5.0,
    chemistry: str = "vrla",
    cells: int = 6,
    faults: Sequence[str | dict[str, Any]] | None = None,
    steps: int = 16_000,
    capacity_ah: float = 100.0,
    discharge_hours: float = 4.0,
    discharge_c_rate: float = 0.125,
    float_hours_before: float = 3.0,
    rest_hours: float = 1.0,
    start: str = "2025-03-01T00:00:00Z",
    jitter_seconds: float = 0.0,
) -> CycleRecord:
    """One charge/discharge cycle of a monobloc (``cells`` cells) with injected, labelled faults.

    ``steps`` readings per cell at ``interval_seconds`` (default 16,000 x 5 s = 22.2 h): float
    for ``float_hours_before``, a discharge at ``discharge_c_rate`` x C for ``discharge_hours``
    (default C/8 for 4 h: half the capacity), ``rest_hours`` open circuit, bulk at 0.15 C up to
    the absorption voltage, absorption until the current falls to 0.01 C (at most 4 h), then float
    to the end. ``jitter_seconds`` > 0 makes the time stamps irregular (each +/- up to that).
    """
    if chemistry not in CHEMISTRY:
        raise InputError(f"chemistry must be one of {', '.join(repr(c) for c in CHEMISTRY)}, got {chemistry!r}")
    if not (isinstance(cells, (int, np.integer)) and 1 <= cells <= 24):
        raise InputError(f"cells must be a whole number from 1 (one cell) to 24, got {cells!r}")
    if not 0.1 <= float(interval_seconds) <= 3600.0:
        raise InputError(f"interval_seconds must be between 0.1 and 3600, got {interval_seconds}")
    if not (isinstance(steps, (int, np.integer)) and 10 <= steps and steps * cells <= MAX_STEPS * 6):
        raise InputError(
            f"steps must be a whole number of at least 10 and steps x cells at most {MAX_STEPS * 6:,}, got {steps!r}"
        )
    if not 0.0 <= float(jitter_seconds) < float(interval_seconds) / 2:
        raise InputError(f"jitter_seconds must be at least 0 and less than half the interval, got {jitter_seconds}")
    specs = _faults(faults, cells)
    chem = CHEMISTRY[chemistry]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 13]))
    dt_h = float(interval_seconds) / 3600.0
    n, t = int(cells), int(steps)
    hours = np.arange(t) * dt_h
    cap = float(capacity_ah)

    # cells: manufacturing spread as in the fleet simulator
    cap_cell = cap * (1.0 + np.clip(rng.normal(0.0, 0.03, n), -0.08, 0.08))
    r_cell = (0.15 / cap) * rng.lognormal(0.0, 0.12, n)
    offset = np.clip(rng.normal(0.0, 0.006, n), -0.015, 0.015)
    offset -= offset.mean() if n > 1 else offset  # the charger holds the string: offsets sum to zero
    position = 0.5 * np.sin(np.pi * (np.arange(n) + 0.5) / n) - 0.25 + rng.normal(0.0, 0.1, n)
    sg_full = np.clip(rng.normal(np.mean(chem.sg_nominal), 0.004, n), *chem.sg_clip)
    float_nominal = float(np.mean(chem.float_nominal_v))
    v_abs = ABSORPTION_V[chemistry]

    # ambient: an indoor battery room, 24 degC with a small daily swing
    ambient = 24.0 + 1.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0) + rng.normal(0.0, 0.05, t)

    # phase boundaries (hours): bulk ends where the charge voltage reaches the absorption level
    i_dis = discharge_c_rate * cap
    i_bulk = 0.15 * cap
    t_dis0 = float_hours_before
    t_rest0 = t_dis0 + discharge_hours
    t_bulk0 = t_rest0 + rest_hours
    dod = min(0.9, discharge_c_rate * discharge_hours)
    soc_after = 1.0 - dod
    eta_bulk = 0.95
    grid = np.linspace(0.0, 12.0, 12 * 3600 + 1)
    soc_grid = np.minimum(soc_after + i_bulk * grid * eta_bulk / cap, 1.0)
    v_grid = _charge_voltage(soc_grid, i_bulk, cap, float(np.mean(sg_full)), chem.sg_span, float(np.mean(r_cell)), grid)
    reach = np.flatnonzero(v_grid >= v_abs)
    bulk_h = float(grid[reach[0]]) if len(reach) else 12.0
    soc_abs0 = float(soc_grid[min(len(grid) - 1, int(round(bulk_h * 3600)))])
    tau_abs = 1.0
    abs_h = min(4.0, tau_abs * np.log(i_bulk / (0.01 * cap)))
    t_abs0 = t_bulk0 + bulk_h
    t_float1 = t_abs0 + abs_h
    bounds = np.array([0.0, t_dis0, t_rest0, t_bulk0, t_abs0, t_float1, np.inf])
    phase_idx = np.searchsorted(bounds, hours, side="right") - 1
    if hours[-1] < t_float1 + 0.5:
        raise InputError(
            f"{t} readings at {interval_seconds} s cover {hours[-1]:.1f} h, but the cycle needs "
            f"{t_float1 + 0.5:.1f} h: use more steps or a longer interval"
        )

    # string current and state of charge over time (vectorised, phase by phase)
    temp_guess = ambient  # the float current follows the temperature (doubling per 10 degC)
    float_i = chem.float_current_c * cap * 2.0 ** ((temp_guess - 25.0) / 10.0)
    since = hours - bounds[np.clip(phase_idx, 0, 5)]
    current = np.zeros(t)
    soc = np.ones(t)
    m = phase_idx == 0
    current[m] = float_i[m]
    m = phase_idx == 1
    current[m] = -i_dis
    soc[m] = 1.0 - i_dis * since[m] / cap
    m = phase_idx == 2
    soc[m] = soc_after
    m = phase_idx == 3
    current[m] = i_bulk
    soc[m] = np.minimum(soc_after + i_bulk * since[m] * eta_bulk / cap, 1.0)
    m = phase_idx == 4
    decay = np.exp(-since[m] / tau_abs)
    current[m] = i_bulk * decay
    stored = min(1.0, (1.0 - soc_abs0) / (i_bulk * tau_abs / cap))  # share of the absorption current stored
    soc[m] = np.minimum(soc_abs0 + stored * i_bulk * tau_abs * (1.0 - decay) / cap, 1.0)
    m = phase_idx == 5
    i_end = i_bulk * np.exp(-abs_h / tau_abs)
    current[m] = float_i[m] + (i_end - float_i[m]) * np.exp(-since[m] / (20.0 / 60.0))
    current = current * (1.0 + rng.normal(0.0, 0.005, t)) + rng.normal(0.0, 0.02, t)

    # cell voltages
    # each cell's state of charge: the same Ah out of a smaller cell is a deeper discharge
    soc_cell = np.clip(1.0 - (1.0 - soc[:, None]) * cap / cap_cell[None, :], 0.0, 1.0)
    ocv = sg_full[None, :] - chem.sg_span * (1.0 - soc_cell) + OCV_OFFSET
    float_v = (
        np.clip(float_nominal - FLOAT_TEMP_COMP * (ambient - 25.0), *chem.float_window_v)[:, None] + offset[None, :]
    )
    volts = np.empty((t, n))
    p = phase_idx[:, None]
    tau_pol = 10.0 / 60.0
    # float before: the charger's float voltage
    volts[:] = float_v
    # discharge: OCV - I R - polarisation building up over minutes
    pol_d = 0.6 * i_dis / cap_cell[None, :] * (1.0 - np.exp(-since[:, None] / tau_pol))
    v_dis = ocv - i_dis * r_cell[None, :] - pol_d
    volts = np.where(p == 1, v_dis, volts)
    # rest: the I R drop vanishes at once, the polarisation relaxes over ~20 min
    pol_end = 0.6 * i_dis / cap_cell * (1.0 - np.exp(-discharge_hours / tau_pol))
    v_rest = ocv - pol_end[None, :] * np.exp(-since[:, None] / (20.0 / 60.0))
    volts = np.where(p == 2, v_rest, volts)
    # bulk: OCV + I R + polarisation + gassing overvoltage near full charge (per cell)
    v_bulk = _charge_voltage(
        soc_cell, i_bulk, cap_cell[None, :], sg_full[None, :], chem.sg_span, r_cell[None, :], since[:, None]
    )
    volts = np.where(p == 3, v_bulk, volts)
    # absorption: the charger holds n x v_abs; cells share it by their offsets
    volts = np.where(p == 4, v_abs + offset[None, :] * 1.5, volts)
    # float after: from the absorption level down to float over ~10 min (surface charge)
    v_fl = float_v + (v_abs - float_nominal) * np.exp(-since[:, None] / tau_pol)
    volts = np.where(p == 5, v_fl, volts)

    # temperatures: ambient + rack position + lagged heat (I^2 R, and the unaccepted absorption/
    # float current recombined into heat: I x V)
    heat = current[:, None] ** 2 * r_cell[None, :]
    unaccepted = np.where(phase_idx == 4, (1.0 - stored) * current, 0.0)
    unaccepted = np.where(phase_idx == 5, np.maximum(current - float_i, 0.0) + 0.5 * float_i, unaccepted)
    unaccepted = np.where(phase_idx == 0, 0.5 * float_i, unaccepted)
    if chemistry == "vrla":
        heat = heat + (unaccepted * v_abs)[:, None]
    k_per_w = 1.2 * (100.0 / cap_cell)  # ~5 kg per 100 Ah cell, 2 h thermal time constant
    alpha = 1.0 - np.exp(-dt_h / 2.0)
    lagged = first_order_filter(alpha, alpha - 1.0, heat, axis=0)
    # start in thermal equilibrium with the float heat
    lagged = lagged + heat[0][None, :] * (1.0 - alpha) ** np.arange(1, t + 1)[:, None]
    temps = ambient[:, None] + position[None, :] + k_per_w[None, :] * lagged

    # injected faults
    is_anom = np.zeros((t, n), dtype=bool)
    kind = np.full((t, n), "none", dtype=object)
    rows_out = []
    for spec in specs:
        j = spec["cell"] - 1
        k = PHASES.index(spec["phase"])
        p0, p1 = bounds[k], min(bounds[k + 1], hours[-1])
        at_h = p0 + float(spec["at"]) * (p1 - p0)
        i0 = int(np.searchsorted(hours, at_h))
        length = max(1, int(round(float(spec["minutes"]) * 60.0 / interval_seconds)))
        i1 = min(t, i0 + length)
        window = slice(i0, i1)
        kind_name, mag = spec["type"], float(spec["magnitude"])
        if kind_name == "voltage_sag":
            volts[window, j] -= mag
        elif kind_name == "hot_spot":
            ramp = max(1, int(round(60.0 / interval_seconds)))
            x = np.arange(i1 - i0)
            shape = np.minimum(1.0, np.minimum((x + 1) / ramp, (i1 - i0 - x) / ramp))
            temps[window, j] += mag * shape
        elif kind_name == "sensor_spike":
            i1 = i0 + 1
            window = slice(i0, i1)
            volts[window, j] += mag
        elif kind_name == "stuck_sensor":
            volts[window, j] = volts[i0, j]
        elif kind_name == "loose_connection":
            volts[window, j] += current[window] * mag
        is_anom[window, j] = True
        kind[window, j] = kind_name
        rows_out.append(
            {
                "type": kind_name,
                "cell": spec["cell"],
                "phase": spec["phase"],
                "start_index": i0,
                "end_index": i1,
                "magnitude": mag,
                "rows": i1 - i0,
            }
        )

    volts = np.round(volts + rng.normal(0.0, 0.001, (t, n)), 3)
    temps = np.round(temps + rng.normal(0.0, 0.05, (t, n)), 1)
    # a stuck sensor repeats its value exactly (after noise and rounding)
    for row in rows_out:
        if row["type"] == "stuck_sensor":
            j = row["cell"] - 1
            volts[row["start_index"] : row["end_index"], j] = volts[row["start_index"], j]

    start_ts = pd.Timestamp(start)
    start_ts = start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    offsets_s = hours * 3600.0
    if jitter_seconds:
        offsets_s = offsets_s + rng.uniform(-jitter_seconds, jitter_seconds, t)
        offsets_s[0] = 0.0
    stamps = start_ts + pd.to_timedelta(np.round(offsets_s * 1000.0).astype(np.int64), unit="ms")

    phase_names = np.array(PHASES, dtype=object)[phase_idx]
    state_names = np.array([PHASE_STATE[p] for p in PHASES], dtype=object)[phase_idx]
    string_v = np.round(volts.sum(axis=1), 2)
    readings = pd.DataFrame(
        {
            "Timestamp": np.repeat(stamps, n),
            "DeviceID": np.ones(t * n, dtype=np.int64),
            "CellNumber": np.tile(np.arange(1, n + 1), t),
            "CellVoltage": volts.reshape(-1),
            "CellTemperature": temps.reshape(-1),
            "InstantaneousCurrent": np.repeat(np.round(current, 2), n),
            "AmbientTemperature": np.repeat(np.round(ambient, 1), n),
            "StringVoltage": np.repeat(string_v, n),
            "Phase": np.repeat(phase_names, n),
            "TrueState": np.repeat(state_names, n),
            "IsDead": np.zeros(t * n, dtype=np.int64),
            "IsAnomaly": is_anom.reshape(-1).astype(np.int64),
            "AnomalyType": kind.reshape(-1),
        }
    )
    readings["AnomalyType"] = readings["AnomalyType"].astype("string")
    fault_table = pd.DataFrame(
        rows_out, columns=["type", "cell", "phase", "start_index", "end_index", "magnitude", "rows"]
    )
    if len(fault_table):
        fault_table["start"] = stamps[fault_table["start_index"].to_numpy()]
        fault_table["end"] = stamps[np.minimum(fault_table["end_index"].to_numpy(), t - 1)]
    phase_table = pd.DataFrame(
        {
            "phase": list(PHASES),
            "state": [PHASE_STATE[p] for p in PHASES],
            "start_hours": np.round(bounds[:-1], 4),
            "end_hours": np.round(np.minimum(bounds[1:], hours[-1]), 4),
        }
    )
    summary = {
        "rows": int(len(readings)),
        "cells": n,
        "readings_per_cell": t,
        "interval_seconds": float(interval_seconds),
        "hours": round(float(hours[-1]), 3),
        "chemistry": chemistry,
        "depth_of_discharge": round(dod, 3),
        "bulk_hours": round(bulk_h, 3),
        "absorption_hours": round(float(abs_h), 3),
        "anomaly_rows": int(is_anom.sum()),
        "anomaly_share": round(float(is_anom.mean()), 5),
        "faults": {k: int((fault_table["type"] == k).sum()) for k in FAULT_TYPES if (fault_table["type"] == k).any()},
        "min_cell_voltage": float(volts.min()),
        "max_cell_voltage": float(volts.max()),
        "max_cell_temperature": float(temps.max()),
    }
    return CycleRecord(readings=readings, faults=fault_table, phases=phase_table, summary=summary)


def _charge_voltage(
    soc: np.ndarray, current: float, cap: Any, sg_full: Any, sg_span: float, r: Any, since_h: np.ndarray
) -> np.ndarray:
    """Cell voltage on constant-current charge: OCV + I R + polarisation + gassing overvoltage."""
    ocv = sg_full - sg_span * (1.0 - soc) + OCV_OFFSET
    pol = 0.6 * current / cap * (1.0 - np.exp(-since_h / (10.0 / 60.0)))
    gassing = 1.6 * np.maximum(soc - 0.70, 0.0) ** 1.2
    return ocv + current * r + pol + gassing


def write_record(record: CycleRecord, path: str | Path, faults_path: str | Path | None = None) -> dict[str, Path]:
    """Write the readings (ISO time stamps in UTC) and optionally the fault table as CSV (atomic)."""
    from .packet_format import write_packet_csv

    readings = record.readings.assign(
        Timestamp=record.readings["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    )
    paths = {"readings": write_packet_csv(readings, path)}
    if faults_path is not None:
        faults = record.faults.copy()
        for col in ("start", "end"):
            if col in faults:
                faults[col] = faults[col].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
        paths["faults"] = write_packet_csv(faults, faults_path)
    return paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bms_datagen.records",
        description="A charge/discharge record of one monobloc or cell with labelled injected faults.",
    )
    parser.add_argument("--out", required=True, help="CSV file for the readings")
    parser.add_argument("--faults-out", default=None, help="optional CSV file for the injected faults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval-seconds", type=float, default=5.0)
    parser.add_argument("--chemistry", choices=list(CHEMISTRY), default="vrla")
    parser.add_argument("--cells", type=int, default=6, help="6: a 12 V monobloc with cell sensing; 1: one cell")
    parser.add_argument("--steps", type=int, default=16_000, help="readings per cell")
    parser.add_argument(
        "--faults",
        default=None,
        help=f"comma-separated fault types to inject ({', '.join(FAULT_TYPES)}); default: the standard set; 'none' for none",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    faults: list[str] | None = None
    if args.faults is not None:
        faults = (
            [] if args.faults.strip().lower() == "none" else [f.strip() for f in args.faults.split(",") if f.strip()]
        )
    from bms_schema.errors import BMSError

    try:
        record = simulate_cycle_record(
            seed=args.seed,
            interval_seconds=args.interval_seconds,
            chemistry=args.chemistry,
            cells=args.cells,
            faults=faults,
            steps=args.steps,
        )
        paths = write_record(record, args.out, args.faults_out)
    except BMSError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(
        json.dumps({"paths": {k: str(v) for k, v in paths.items()}, "summary": record.summary}, indent=1) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
