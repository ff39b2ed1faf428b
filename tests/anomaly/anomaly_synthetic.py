"""Small labelled readings for the anomaly tests (independent of the fleet simulator).

Strings of 2 V lead-acid cells float-charging with a daily discharge, plus injected
anomalies of four kinds, each confined to one cell for a few consecutive readings:
``voltage_drop`` (a cell sags below its peers), ``thermal`` (a cell heats above its
string and ambient), ``sg_drop`` (electrolyte SG falls), ``voltage_spike``. A few rows
carry 0xFFFF sentinels (sensor faults). Vectorised; deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_readings(
    devices: int = 3,
    cells: int = 8,
    steps: int = 400,
    anomaly_rate: float = 0.03,
    sensor_faults: int = 6,
    seed: int = 0,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2026-01-01", periods=steps, freq="15min", tz="UTC")
    dev = np.repeat(np.arange(devices), cells * steps)
    cell = np.tile(np.repeat(np.arange(1, cells + 1), steps), devices)
    t = np.tile(np.arange(steps), devices * cells)
    hours = t * 0.25
    n = len(t)
    discharging = ((hours % 24) >= 18) & ((hours % 24) < 19.5)
    current = np.where(discharging, -40.0, 1.5) + rng.normal(0, 0.3, n)
    ambient = 24 + 3 * np.sin(2 * np.pi * hours / 24) + np.repeat(rng.normal(0, 1, devices), cells * steps)
    cell_offset = rng.normal(0, 0.004, devices * cells)[dev * cells + cell - 1]
    voltage = 2.25 + cell_offset + np.where(discharging, -0.12, 0.0) + rng.normal(0, 0.003, n)
    temperature = ambient + 1.5 + np.where(discharging, 1.0, 0.0) + rng.normal(0, 0.25, n)
    sg = 1.240 + rng.normal(0, 0.0015, n) + np.where(discharging, -0.01, 0.0)

    label = np.zeros(n, dtype=bool)
    kind = np.full(n, "", dtype=object)
    episodes = max(1, int(anomaly_rate * n / 4))
    kinds = np.array(["voltage_drop", "thermal", "sg_drop", "voltage_spike"])
    series = rng.integers(0, devices * cells, episodes)
    starts = rng.integers(10, steps - 10, episodes)
    lengths = rng.integers(2, 7, episodes)
    chosen = kinds[rng.integers(0, 4, episodes)]
    offsets = np.arange(7)
    rows = series[:, None] * steps + starts[:, None] + offsets[None, :]
    valid = offsets[None, :] < lengths[:, None]
    rows, which = rows[valid], np.repeat(chosen, lengths)
    sizes = rng.uniform(0.6, 1.4, len(rows))
    voltage[rows[which == "voltage_drop"]] -= 0.10 * sizes[which == "voltage_drop"]
    voltage[rows[which == "voltage_spike"]] += 0.12 * sizes[which == "voltage_spike"]
    temperature[rows[which == "thermal"]] += 9.0 * sizes[which == "thermal"]
    sg[rows[which == "sg_drop"]] -= 0.045 * sizes[which == "sg_drop"]
    label[rows] = True
    kind[rows] = which

    fault_rows = rng.choice(np.flatnonzero(~label), sensor_faults, replace=False)
    voltage[fault_rows] = 65.535
    temperature[fault_rows] = 65535.0
    label[fault_rows] = True
    kind[fault_rows] = "sensor_fault"

    return pd.DataFrame(
        {
            "DeviceID": np.array([f"D{d}" for d in range(devices)])[dev],
            "CellNumber": cell,
            "Timestamp": times[t],
            "CellVoltage": voltage,
            "CellTemperature": temperature,
            "CellSpecificGravity": sg,
            "InstantaneousCurrent": current,
            "AmbientTemperature": ambient,
            "IsAnomaly": label.astype(np.int8),
            "AnomalyType": pd.array(np.where(kind == "", None, kind), dtype="string"),
        }
    )
