"""A realistic charge/discharge record of one 12 V VRLA battery, with injected faults.

Made from the fleet simulator's own physics (``bms_datagen.simulator.simulate_fleet``,
``chemistry="vrla"``): one string of 6 VRLA cells (the cells of one 12 V monobloc) sampled every
5 s for 30 h, with frequent mains outages (``discharge_every_days=0.12``) so the record holds
float, discharges (C/20..C/5, 0.5-3 h) and constant-voltage recharges whose current decays back
to float; no simulated anomalies, dropouts or failures. The six cells are then reported as
one monobloc, the way a battery monitor on a 12 V block does: one voltage (the block voltage
given per cell, i.e. divided by 6, as the canonical table's limits are per 2 V cell) and one
temperature (the block's mean). About 16,000 readings.

Faults (``faults=True``), vectorised, spread over the operating states (a third of them
inside a discharge or a recharge):
- ``voltage_sag``: a sudden drop of 0.08 V/cell lasting 1-5 min;
- ``hot_spot``: the temperature rises by 12 degC within 30 s, holds for 5-10 min, falls back
  within 30 s; the float voltage follows with -3 mV/degC/cell.
Every reading of a fault is labelled (``IsAnomaly = 1``, ``AnomalyType``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CELLS_PER_BLOCK = 6
INTERVAL_S = 5.0
HOURS = 30.0
#: Faults are injected only after this many hours: the record's first part is the battery's own clean
#: history to train on, the rest is scored.
CLEAN_HOURS = 12.0
SAG_V = 0.08
HOT_SPOT_C = 12.0


def charge_discharge_record(
    seed: int = 0,
    faults: bool = True,
    hours: float = HOURS,
    interval_s: float = INTERVAL_S,
    sags: int = 6,
    hot_spots: int = 3,
    clean_hours: float = CLEAN_HOURS,
) -> pd.DataFrame:
    from bms_datagen.simulator import simulate_fleet
    from bms_schema.normalize import normalize

    raw = simulate_fleet(
        devices=1,
        cells_per_device=CELLS_PER_BLOCK,
        days=hours / 24.0,
        interval_minutes=interval_s / 60.0,
        seed=seed,
        failure_rate=0.0,
        anomaly_rate=0.0,
        dropout_rate=0.0,
        missing_rate=0.0,
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
        discharge_every_days=0.12,
        chemistry="vrla",
    )
    cells = normalize(raw)
    cells = cells[0] if isinstance(cells, tuple) else cells
    block = (
        cells.groupby("Timestamp", sort=True)
        .agg(
            CellVoltage=("CellVoltage", "mean"),
            CellTemperature=("CellTemperature", "mean"),
            InstantaneousCurrent=("InstantaneousCurrent", "median"),
            AmbientTemperature=("AmbientTemperature", "median"),
        )
        .reset_index()
    )
    n = len(block)
    rng = np.random.default_rng(seed + 1000)
    label = np.zeros(n, dtype=bool)
    kind = np.full(n, "", dtype=object)
    if faults:
        current = block["InstantaneousCurrent"].to_numpy()
        busy = np.flatnonzero(np.abs(current) > 3 * np.median(np.abs(current)))
        per = int(60 / interval_s)
        v = block["CellVoltage"].to_numpy().copy()
        t = block["CellTemperature"].to_numpy().copy()
        total = sags + hot_spots
        first = int(clean_hours * 3600 / interval_s)
        starts = rng.integers(first, n - 30 * per, total)
        in_busy = rng.uniform(size=total) < 1 / 3
        busy = busy[busy >= first]
        if len(busy):
            starts[in_busy] = np.clip(rng.choice(busy, int(in_busy.sum())), first, n - 30 * per)
        starts = np.sort(starts)
        # keep events apart (at least 30 min): spread the sorted starts where they crowd
        gap = 30 * per
        starts = np.maximum(starts, starts[0] + gap * np.arange(total))
        starts = np.minimum(starts, n - 25 * per)
        types = rng.permutation(np.r_[np.zeros(sags, dtype=int), np.ones(hot_spots, dtype=int)])
        for start, typ in zip(starts, types):  # a handful of events, not readings
            if typ == 0:
                length = int(rng.integers(1 * per, 5 * per + 1))
                rows = np.arange(start, min(start + length, n))
                v[rows] -= SAG_V
                kind[rows] = "voltage_sag"
            else:
                ramp = max(int(30 / interval_s), 1)
                hold = int(rng.integers(5 * per, 10 * per + 1))
                shape = np.r_[np.linspace(1 / ramp, 1, ramp), np.ones(hold), np.linspace(1, 1 / ramp, ramp)]
                rows = np.arange(start, min(start + len(shape), n))
                bump = HOT_SPOT_C * shape[: len(rows)]
                t[rows] += bump
                v[rows] -= 0.003 * bump
                kind[rows] = "hot_spot"
            label[rows] = True
        block["CellVoltage"], block["CellTemperature"] = np.round(v, 4), np.round(t, 2)
    block.insert(0, "DeviceID", f"UPS{seed}")
    block.insert(1, "CellNumber", 1)
    block["IsAnomaly"] = label.astype(np.int8)
    block["AnomalyType"] = pd.array(np.where(kind == "", None, kind), dtype="string")
    return block
