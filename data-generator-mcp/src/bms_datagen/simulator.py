"""Fleet simulator: realistic lead-acid battery strings in the raw 73-column BMS packet format.

Python API::

    from bms_datagen.simulator import simulate_fleet, simulate_fleet_with_truth, write_fleet_csv
    frame = simulate_fleet(devices=3, cells_per_device=24, days=30, interval_minutes=15, seed=0)
    sim = simulate_fleet_with_truth(devices=3, seed=0)   # .readings, .cells (ground truth), .summary
    write_fleet_csv(frame, "fleet.csv")                   # same seed -> byte-identical file

CLI::

    python -m bms_datagen.simulator --devices 3 --cells-per-device 24 --days 30 --out fleet.csv

The output has the 73 raw columns (see :mod:`bms_datagen.packet_format`) plus ``IsDead`` (0/1,
1 from the cell's death onwards), ``IsAnomaly`` (0/1) and ``AnomalyType`` (``"none"`` on normal
rows). Rows are packets of one device (one row per cell) in delivery order: device by device,
time ascending, except for the injected duplicate and late packets.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .anomalies import ANOMALY_TYPES, inject_anomalies
from .fleet_config import CHEMISTRIES, FleetConfig
from .fleet_physics import (
    CHEMISTRY,
    EOL_CRITERION,
    FAILURE_MODES,
    arrhenius,
    failure_probability,
    simulate_state,
    state_of_health,
)
from .packet_fields import device_constants, string_fields
from .packet_format import (
    NO_ANOMALY,
    OUTPUT_COLUMNS,
    RAW_COLUMNS,
    SENTINEL_SG,
    SENTINEL_TEMPERATURE,
    SENTINEL_VOLTAGE,
    write_packet_csv,
)
from .telemetry_mess import MISSING_FIELDS, choose_rows, missing_fields, packet_order, rows_for_packets

SPECIFIC_GRAVITY = "CellSpecificGravity"

log = logging.getLogger("bms.datagen")

RNG_STREAMS = (
    "devices",
    "cells",
    "ambient",
    "events",
    "noise",
    "anomalies",
    "dropouts",
    "missing",
    "order",
    "fields",
    "constants",
    "ageing",
)


@dataclass
class FleetSimulation:
    """A simulated fleet: the packet table, the per-cell ground truth and summary counts."""

    readings: pd.DataFrame
    cells: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    config: FleetConfig | None = None
    table: Any = field(default=None, repr=False)  # the same readings as a pyarrow Table (fast CSV writing)
    soh: pd.DataFrame | None = None  # state of health over time per cell (ground truth)


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent streams, so changing e.g. the dropout rate leaves the physics unchanged."""
    children = np.random.SeedSequence(seed).spawn(len(RNG_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(RNG_STREAMS, children)}


def _iso_seconds(values: np.ndarray) -> np.ndarray:
    """datetime64[s] -> 'YYYY-MM-DDTHH:MM:SS' (NumPy unicode, vectorised)."""
    return np.datetime_as_string(values, unit="s")


def _reformat(iso: np.ndarray, picks: list[int | str], width: int) -> np.ndarray:
    """Rearrange the characters of fixed-width ISO strings (vectorised), e.g. into dd/mm/yyyy."""
    chars = np.ascontiguousarray(iso.astype("U19")).view("U1").reshape(len(iso), 19)
    cols = [chars[:, p] if isinstance(p, int) else np.full(len(iso), p, dtype="U1") for p in picks]
    return np.ascontiguousarray(np.stack(cols, axis=1)).view(f"U{width}").reshape(-1)


def _string_column(values: np.ndarray, take: np.ndarray | None = None) -> Any:
    """A pyarrow string array from an array of strings, optionally taken per row (vectorised)."""
    import pyarrow as pa

    arr = pa.array(values, type=pa.string(), from_pandas=True)
    if take is not None:
        arr = arr.take(pa.array(take))
    return arr


def output_columns(config: FleetConfig) -> tuple[str, ...]:
    """The columns of a simulated packet table: all 76 for flooded cells; VRLA has no ``CellSpecificGravity``."""
    if config.has_sg:
        return OUTPUT_COLUMNS
    return tuple(c for c in OUTPUT_COLUMNS if c != SPECIFIC_GRAVITY)


def _to_frame(out: dict[str, Any], columns: tuple[str, ...] = OUTPUT_COLUMNS) -> tuple[pd.DataFrame, Any]:
    """Assemble the columns (NumPy or pyarrow arrays) as an Arrow table and a DataFrame.

    Going through Arrow (split blocks) avoids pandas' block consolidation, which would cost
    seconds on a 1M-row frame; strings become ``string[pyarrow]`` columns.
    """
    import pyarrow as pa

    arrays = [
        out[name] if isinstance(out[name], pa.Array) else pa.array(out[name], from_pandas=True) for name in columns
    ]
    table = pa.Table.from_arrays(arrays, names=list(columns))
    mapper = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    frame = table.to_pandas(split_blocks=True, types_mapper=mapper.get)
    return frame, table


def simulate_fleet_with_truth(config: FleetConfig | None = None, **params: Any) -> FleetSimulation:
    """Simulate a fleet; see :class:`FleetConfig` for the parameters (or pass ``config``)."""
    if config is None:
        config = FleetConfig(**params)
    elif params:
        raise TypeError("pass either a FleetConfig or keyword parameters, not both")
    rngs = _rngs(config.seed)
    d, t, n = config.devices, config.steps, config.cells_per_device
    rows = config.rows
    constants = device_constants(config, rngs["constants"])
    state = simulate_state(config, rngs, age_days=constants["_age_days"])

    voltage = state.voltage.reshape(-1).copy()
    temperature = state.temperature.reshape(-1).copy()
    sg = state.sg.reshape(-1).copy()
    dead = state.dead.reshape(-1)
    anomalies = inject_anomalies(
        voltage,
        temperature,
        sg,
        dead,
        (d, t, n),
        config.anomaly_rate,
        config.dt_hours,
        rngs["anomalies"],
        has_sg=config.has_sg,
    )
    voltage = np.round(voltage, 3)
    temperature = np.round(temperature, 2)
    sg = np.round(sg, 4)

    dropout = choose_rows(rows, config.dropout_rate, anomalies.is_anomaly, rngs["dropouts"])
    voltage[dropout] = SENTINEL_VOLTAGE
    temperature[dropout] = SENTINEL_TEMPERATURE
    sg[dropout] = SENTINEL_SG
    fields_that_can_be_empty = (
        MISSING_FIELDS if config.has_sg else tuple(f for f in MISSING_FIELDS if f != SPECIFIC_GRAVITY)
    )
    missing = missing_fields(
        rows, config.missing_rate, anomalies.is_anomaly | dropout, rngs["missing"], fields_that_can_be_empty
    )

    packet = string_fields(
        config,
        state,
        constants,
        voltage.reshape(d, t, n),
        temperature.reshape(d, t, n),
        dropout.reshape(d, t, n),
        rngs["fields"],
    )

    # timestamps per packet
    start64 = np.datetime64(config.start_timestamp.tz_localize(None).to_datetime64(), "s")
    offsets = np.round(np.arange(t) * config.interval_minutes * 60.0).astype(np.int64)[None, :]
    if config.timestamp_jitter_seconds:
        offsets = offsets + rngs["order"].integers(0, config.timestamp_jitter_seconds + 1, size=(d, t))
    packet_time = (start64 + np.broadcast_to(offsets, (d, t)).astype("timedelta64[s]")).reshape(-1)
    server_delay = rngs["fields"].integers(0, 6, size=d * t).astype("timedelta64[s]")
    cell_lag = rngs["fields"].integers(0, 91, size=rows).astype("timedelta64[s]")

    # delivery order: duplicates and late packets
    order, n_dup, n_late = packet_order(d * t, config.duplicate_rate, config.out_of_order_rate, rngs["order"])
    row_index = rows_for_packets(order, n)
    packet_of_row = row_index // n
    cell_of_row = row_index % n
    device_of_row = packet_of_row // t

    iso = _iso_seconds(packet_time)
    out: dict[str, Any] = {}
    for name in RAW_COLUMNS:
        if name in packet:
            out[name] = np.asarray(packet[name]).reshape(-1)[packet_of_row]
    out["StartPacket"] = _string_column(np.array(["U"], dtype=object), np.zeros(len(row_index), dtype=np.int64))
    out["ProtocolVersion"] = _string_column(np.array([None], dtype=object), np.zeros(len(row_index), dtype=np.int64))
    out["DataIdentifier"] = _string_column(np.array(["P"], dtype=object), np.zeros(len(row_index), dtype=np.int64))
    for name in ("SiteID", "SerialNumber", "InstallationDate"):
        out[name] = _string_column(constants[name], device_of_row)
    for name in ("DeviceID", "BMSManufacturerID", "ChargerID", "ChargerDeviceID"):
        out[name] = constants[name][device_of_row]
    out["Time"] = _string_column(_reformat(iso, list(range(11, 19)), 8), packet_of_row)
    out["Date"] = _string_column(_reformat(iso, [8, 9, "/", 5, 6, "/", 0, 1, 2, 3], 10), packet_of_row)
    out["PacketDateTime"] = _string_column(iso, packet_of_row)
    out["ServerTime"] = _string_column(_iso_seconds(packet_time + server_delay), packet_of_row)
    out["CellsConnectedCount"] = np.full(len(row_index), n, dtype=np.int64)
    out["CellNumber"] = (cell_of_row + 1).astype(np.int64)
    out["CellServerTime"] = _string_column(_iso_seconds(packet_time[packet_of_row] - cell_lag[row_index]))
    out["CellVoltage"] = voltage[row_index]
    out["CellTemperature"] = temperature[row_index]
    if config.has_sg:
        out["CellSpecificGravity"] = sg[row_index]
    for name, mask in missing.items():  # every column here is a fresh (fancy-indexed) float array
        out[name][mask[row_index]] = np.nan
    out["IsDead"] = dead[row_index].astype(np.int64)
    out["IsAnomaly"] = anomalies.is_anomaly[row_index].astype(np.int64)
    type_names = np.array((NO_ANOMALY,) + ANOMALY_TYPES, dtype=object)
    out["AnomalyType"] = _string_column(type_names, anomalies.type_code[row_index].astype(np.int64))
    columns = output_columns(config)
    missing_cols = [c for c in columns if c not in out]
    if missing_cols:  # a programming error, not a user error
        raise RuntimeError(f"simulator produced no values for {missing_cols}")
    readings, table = _to_frame(out, columns)

    cells = ground_truth(config, state, constants, start64, anomalies.type_code, dropout)
    soh = soh_table(config, state, constants, start64)
    summary = _summary(config, state, readings, cells, anomalies.events, dropout, missing, n_dup, n_late)
    log.info("simulated %d rows (%d devices x %d cells x %d readings)", len(readings), d, n, t)
    return FleetSimulation(readings=readings, cells=cells, summary=summary, config=config, table=table, soh=soh)


SOH_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "CellID",
    "DeviceID",
    "CellNumber",
    "CapacityPercent",
    "ResistanceRatio",
    "StateOfHealth",
    "IsDead",
)


def soh_table(
    config: FleetConfig, state: Any, constants: dict[str, np.ndarray], start64: np.datetime64
) -> pd.DataFrame:
    """Ground-truth state of health of every cell every ``soh_interval_hours`` (and at the last reading).

    ``CapacityPercent``: capacity in % of the string's rated capacity; ``ResistanceRatio``: internal
    resistance over the cell's installation baseline; ``StateOfHealth``: the lower of the capacity
    and the resistance mapped to the same scale (ratio 1.5 -> 80 %), see :func:`state_of_health`.
    """
    d, t, n = config.devices, config.steps, config.cells_per_device
    every = max(1, int(round(config.soh_interval_hours / config.dt_hours)))
    steps = np.unique(np.append(np.arange(0, t, every), t - 1))
    cap = state.capacity_pct[:, steps, :]
    ratio = state.resistance_ratio[:, steps, :]
    secs = np.round(state.hours[steps] * 3600.0).astype(np.int64).astype("timedelta64[s]")
    times = pd.to_datetime(start64 + secs).tz_localize("UTC")
    k = len(steps)
    device = np.broadcast_to(constants["DeviceID"][:, None, None], (d, k, n)).reshape(-1)
    number = np.broadcast_to(np.arange(1, n + 1)[None, None, :], (d, k, n)).reshape(-1)
    ids = np.array([f"{a}-{b}" for a in constants["DeviceID"] for b in range(1, n + 1)], dtype=object)
    cell_index = (np.arange(d)[:, None, None] * n + np.arange(n)[None, None, :]) + np.zeros((1, k, 1), dtype=np.int64)
    return pd.DataFrame(
        {
            "Timestamp": np.broadcast_to(np.asarray(times)[None, :, None], (d, k, n)).reshape(-1),
            "CellID": ids[cell_index.reshape(-1)],
            "DeviceID": device,
            "CellNumber": number,
            "CapacityPercent": np.round(cap.reshape(-1), 3),
            "ResistanceRatio": np.round(ratio.reshape(-1), 4),
            "StateOfHealth": np.round(state_of_health(cap, ratio).reshape(-1), 3),
            "IsDead": state.dead[:, steps, :].reshape(-1).astype(np.int64),
        }
    ).assign(Timestamp=lambda f: pd.to_datetime(f.Timestamp, utc=True))


def ground_truth(
    config: FleetConfig,
    state: Any,
    constants: dict[str, np.ndarray],
    start64: np.datetime64,
    type_code: np.ndarray,
    dropout: np.ndarray,
) -> pd.DataFrame:
    """One row per cell: id, fate, failure mode, precursor start, death time, manufacturing figures."""
    d, t, n = config.devices, config.steps, config.cells_per_device
    cells = state.cells
    device = np.repeat(constants["DeviceID"], n)
    number = np.tile(np.arange(1, n + 1), d)
    mode = cells.failure_mode.reshape(-1)
    failed = mode >= 0
    mode_names = np.array(("none",) + FAILURE_MODES, dtype=object)

    def when(hours: np.ndarray) -> np.ndarray:
        finite = np.isfinite(hours)
        secs = np.where(finite, np.round(np.where(finite, hours, 0.0) * 3600.0), 0).astype(np.int64)
        text = _iso_seconds(start64 + secs.astype("timedelta64[s]")).astype(object)
        text[~finite] = ""
        return text

    # index of the first dead reading (the simulated death time snapped to the reading grid)
    dead_steps = state.dead.reshape(d, t, n)
    first_dead = np.where(dead_steps.any(axis=1), dead_steps.argmax(axis=1), -1).reshape(-1)
    per_cell_anomalies = (type_code.reshape(d, t, n) > 0).sum(axis=1).reshape(-1)
    per_cell_dropouts = dropout.reshape(d, t, n).sum(axis=1).reshape(-1)
    cap_pct, ratio = state.capacity_pct, state.resistance_ratio
    table = pd.DataFrame(
        {
            "CellID": [f"{a}-{b}" for a, b in zip(device, number)],
            "DeviceID": device,
            "CellNumber": number,
            "SerialNumber": np.repeat(constants["SerialNumber"], n),
            "Fate": np.where(failed, "failed", "healthy"),
            "FailureMode": mode_names[mode + 1],
            "PrecursorStart": when(cells.onset_h.reshape(-1)),
            "DeathTime": when(cells.death_h.reshape(-1)),
            "FirstDeadReading": first_dead,
            "CapacityAh": np.round(cells.capacity_ah.reshape(-1), 2),
            "InternalResistanceMilliOhm": np.round(cells.resistance_ohm.reshape(-1) * 1000.0, 4),
            "FullChargeSG": np.round(cells.sg_full.reshape(-1), 4),
            "FloatOffsetV": np.round(cells.float_offset_v.reshape(-1), 4),
            "AnomalyRows": per_cell_anomalies,
            "DropoutRows": per_cell_dropouts,
            # survival ground truth (see the package README, "Ageing and end of life")
            "EndOfLifeTime": when(cells.death_h.reshape(-1)),
            "EndOfLifeHours": np.round(np.where(failed, cells.death_h.reshape(-1), np.nan), 3),
            "EOLCriterion": np.array([""] + [EOL_CRITERION[m] for m in FAILURE_MODES], dtype=object)[mode + 1],
            "Censored": ~failed,
            "ObservedHours": np.full(d * n, round(float(state.hours[-1]), 3)),
            "AgeDaysAtStart": np.repeat(constants["_age_days"], n),
            "AgeingSpeed": np.round(
                (
                    arrhenius(state.devices.ambient_mean_c[:, None] + cells.position_temp_c)
                    * cells.wear_rate
                    * cells.design_life_h
                ).reshape(-1),
                4,
            ),
            "CapacityPercentStart": np.round(cap_pct[:, 0, :].reshape(-1), 3),
            "CapacityPercentEnd": np.round(cap_pct[:, -1, :].reshape(-1), 3),
            "ResistanceRatioStart": np.round(ratio[:, 0, :].reshape(-1), 4),
            "ResistanceRatioEnd": np.round(ratio[:, -1, :].reshape(-1), 4),
            "StateOfHealthStart": np.round(state_of_health(cap_pct[:, 0, :], ratio[:, 0, :]).reshape(-1), 3),
            "StateOfHealthEnd": np.round(state_of_health(cap_pct[:, -1, :], ratio[:, -1, :]).reshape(-1), 3),
        }
    )
    if not config.has_sg:  # VRLA: the electrolyte SG is never measured
        table = table.drop(columns=["FullChargeSG"])
    return table


def _summary(
    config: FleetConfig,
    state: Any,
    readings: pd.DataFrame,
    cells: pd.DataFrame,
    events: int,
    dropout: np.ndarray,
    missing: dict[str, np.ndarray],
    n_dup: int,
    n_late: int,
) -> dict[str, Any]:
    base_rows = config.rows
    anomaly_rows = int((readings["IsAnomaly"] == 1).sum())
    types = readings["AnomalyType"].value_counts()
    return {
        "rows": int(len(readings)),
        "base_rows": base_rows,
        "devices": config.devices,
        "cells": config.devices * config.cells_per_device,
        "readings_per_cell": config.steps,
        "start": str(readings["PacketDateTime"].min()),
        "end": str(readings["PacketDateTime"].max()),
        "failed_cells": int((cells["Fate"] == "failed").sum()),
        "expected_failed_cells": round(failure_probability(config) * config.devices * config.cells_per_device, 2),
        "chemistry": config.chemistry,
        "failure_modes": {m: int((cells["FailureMode"] == m).sum()) for m in CHEMISTRY[config.chemistry].modes},
        "dead_rows": int(readings["IsDead"].sum()),
        "anomaly_rows": anomaly_rows,
        "anomaly_events": events,
        "anomaly_types": {k: int(types.get(k, 0)) for k in ANOMALY_TYPES},
        "dropout_rows": int(dropout.sum()),
        "missing_fields": {k: int(v.sum()) for k, v in missing.items()},
        "duplicate_packets": n_dup,
        "duplicate_rows": n_dup * config.cells_per_device,
        "late_packets": n_late,
        "discharge_events": int(state.events.started[:, -1].sum()),
        "censored_cells": int(cells["Censored"].sum()),
        "eol_criteria": {k: int(v) for k, v in cells.loc[~cells["Censored"], "EOLCriterion"].value_counts().items()},
        "state_of_health_end": {
            "min": round(float(cells["StateOfHealthEnd"].min()), 2),
            "median": round(float(cells["StateOfHealthEnd"].median()), 2),
        },
    }


def simulate_fleet(
    devices: int = 3,
    cells_per_device: int = 24,
    days: float = 30.0,
    interval_minutes: float = 15.0,
    seed: int = 0,
    failure_rate: float = 0.03,
    anomaly_rate: float = 0.01,
    dropout_rate: float = 0.19,
    duplicate_rate: float = 0.005,
    out_of_order_rate: float = 0.01,
    start: str = "2025-01-01T00:00:00Z",
    missing_rate: float = 0.002,
    discharge_every_days: float = 4.0,
    timestamp_jitter_seconds: int = 0,
    chemistry: str = "flooded",
) -> pd.DataFrame:
    """The simulated packet table (73 raw columns + ``IsDead``, ``IsAnomaly``, ``AnomalyType``;
    ``chemistry="vrla"``: 72, without ``CellSpecificGravity``)."""
    config = FleetConfig(
        devices=devices,
        cells_per_device=cells_per_device,
        days=days,
        interval_minutes=interval_minutes,
        seed=seed,
        failure_rate=failure_rate,
        anomaly_rate=anomaly_rate,
        dropout_rate=dropout_rate,
        duplicate_rate=duplicate_rate,
        out_of_order_rate=out_of_order_rate,
        start=start,
        missing_rate=missing_rate,
        discharge_every_days=discharge_every_days,
        timestamp_jitter_seconds=timestamp_jitter_seconds,
        chemistry=chemistry,
    )
    return simulate_fleet_with_truth(config).readings


MINIMAL_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "DeviceID",
    "CellNumber",
    "CellVoltage",
    "CellTemperature",
    "CellSpecificGravity",
    "InstantaneousCurrent",
    "AmbientTemperature",
    "IsDead",
    "IsAnomaly",
    "AnomalyType",
)


def to_minimal_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The packet table reduced to the minimal readings shape of DESIGN.md (values as sent, sentinels kept).

    A VRLA table (no ``CellSpecificGravity`` column) gives the minimal table without it.
    """
    out = frame[[c for c in MINIMAL_COLUMNS[1:] if c in frame.columns]].copy()
    out.insert(0, "Timestamp", frame["PacketDateTime"])
    return out.reset_index(drop=True)


def precursor_rows(frame: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    """Rows of ``frame`` read while their cell was in its failure precursor (from ``PrecursorStart``
    up to its end of life): alive, unlabelled readings that drift away from the peers on purpose.

    ``frame``: simulated packets, their minimal table or the canonical table (``DeviceID``,
    ``CellNumber`` and ``PacketDateTime`` or ``Timestamp``); ``cells``: ``FleetSimulation.cells``.
    Useful to score an anomaly detector on reading anomalies without counting the (unlabelled)
    degradation of dying cells against it, or to measure how early it sees them.
    """
    time_col = "Timestamp" if "Timestamp" in frame.columns else "PacketDateTime"
    ts = pd.to_datetime(frame[time_col], utc=True, format="ISO8601")
    failed = cells.loc[cells["Fate"] == "failed"]
    key = frame["DeviceID"].astype(str) + "-" + frame["CellNumber"].astype(str)
    ids = failed["DeviceID"].astype(str) + "-" + failed["CellNumber"].astype(str)
    onset = pd.Series(pd.to_datetime(failed["PrecursorStart"], utc=True).to_numpy(), index=ids.to_numpy())
    death = pd.Series(pd.to_datetime(failed["DeathTime"], utc=True).to_numpy(), index=ids.to_numpy())
    start = pd.to_datetime(key.map(onset), utc=True)
    end = pd.to_datetime(key.map(death), utc=True)
    return ((ts >= start) & (ts < end)).fillna(False).to_numpy(dtype=bool)


def write_fleet_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a simulated packet table as CSV (atomic; same frame -> byte-identical file)."""
    return write_packet_csv(frame, path)


def write_simulation(
    sim: FleetSimulation,
    readings_path: str | Path,
    truth_path: str | Path | None = None,
    soh_path: str | Path | None = None,
) -> dict[str, Path]:
    """Write readings (and the per-cell ground truth, and the state-of-health table) as CSV files."""
    paths = {"readings": write_packet_csv(sim.table if sim.table is not None else sim.readings, readings_path)}
    if truth_path is not None:
        paths["cells"] = write_packet_csv(sim.cells, truth_path)
    if soh_path is not None and sim.soh is not None:
        soh = sim.soh.assign(Timestamp=sim.soh["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
        paths["soh"] = write_packet_csv(soh, soh_path)
    return paths


# -- CLI -----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bms_datagen.simulator",
        description="Simulate lead-acid battery strings as raw BMS packets (CSV) with ground-truth labels.",
    )
    defaults = FleetConfig()
    for f in fields(FleetConfig):
        default = getattr(defaults, f.name)
        kind = type(default)
        extra: dict[str, Any] = {"choices": list(CHEMISTRIES)} if f.name == "chemistry" else {}
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=default, help=f"default {default}", **extra
        )
    parser.add_argument("--out", required=True, help="CSV file to write the packets to")
    parser.add_argument("--truth", default=None, help="optional CSV file for the per-cell ground truth")
    parser.add_argument("--soh", default=None, help="optional CSV file for the state of health of every cell over time")
    parser.add_argument(
        "--cycle-record",
        action="store_true",
        help="instead of a fleet: one monobloc's charge/discharge record with labelled injected faults "
        "(bms_datagen.records; uses --seed, --chemistry, --record-cells, --record-interval-seconds; "
        "--truth receives the fault table)",
    )
    parser.add_argument("--record-cells", type=int, default=6, help="cells of the cycle record (6: a 12 V monobloc)")
    parser.add_argument("--record-interval-seconds", type=float, default=5.0, help="sampling of the cycle record")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = {f.name: getattr(args, f.name) for f in fields(FleetConfig)}
    from bms_schema.errors import BMSError

    if args.cycle_record:
        from .records import simulate_cycle_record, write_record

        chemistry = args.chemistry if "--chemistry" in (argv if argv is not None else sys.argv) else "vrla"
        try:
            record = simulate_cycle_record(
                seed=args.seed,
                chemistry=chemistry,
                cells=args.record_cells,
                interval_seconds=args.record_interval_seconds,
            )
            written = write_record(record, args.out, args.truth)
        except BMSError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 2
        sys.stdout.write(
            json.dumps(
                {"paths": {k: str(v) for k, v in written.items()}, "summary": record.summary}, indent=1, default=str
            )
            + "\n"
        )
        return 0
    try:
        sim = simulate_fleet_with_truth(FleetConfig(**params))
        paths = write_simulation(sim, args.out, args.truth, args.soh)
    except BMSError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    result = {"paths": {k: str(v) for k, v in paths.items()}, "summary": sim.summary}
    # CLI output (this module never runs as the MCP server's main, so stdout is ours here)
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
