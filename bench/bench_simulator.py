"""Benchmark the fleet simulator: ~1M rows generated, written to CSV, and normalised by bms_schema;
plus a 180-day hourly history (4 strings x 24 cells) with its ageing ground truth, flooded and VRLA.

Prints one JSON object. Not a test. ``uv run python bench/bench_simulator.py [--rows-target 1000000]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BMS_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--cells-per-device", type=int, default=24)
    parser.add_argument("--days", type=float, default=43.4)
    parser.add_argument("--interval-minutes", type=float, default=15.0)
    args = parser.parse_args()

    from bms_datagen.simulator import simulate_fleet_with_truth, write_simulation
    from bms_schema import load_readings

    simulate_fleet_with_truth(devices=1, cells_per_device=2, days=1)  # warm imports
    t0 = time.perf_counter()
    sim = simulate_fleet_with_truth(
        devices=args.devices,
        cells_per_device=args.cells_per_device,
        days=args.days,
        interval_minutes=args.interval_minutes,
        seed=0,
    )
    t_sim = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.csv"
        t0 = time.perf_counter()
        write_simulation(sim, path)
        t_write = time.perf_counter() - t0
        size = path.stat().st_size
        t0 = time.perf_counter()
        _, report = load_readings(path)
        t_norm = time.perf_counter() - t0
    rows = len(sim.readings)
    # a long history for failure prediction: 180 days hourly with the ageing ground truth
    t0 = time.perf_counter()
    long = simulate_fleet_with_truth(devices=4, cells_per_device=24, days=180, interval_minutes=60, seed=1)
    t_long = time.perf_counter() - t0
    t0 = time.perf_counter()
    vrla = simulate_fleet_with_truth(
        devices=4, cells_per_device=24, days=180, interval_minutes=60, seed=1, chemistry="vrla"
    )
    t_vrla = time.perf_counter() - t0
    from bms_datagen.records import simulate_cycle_record

    t0 = time.perf_counter()
    record = simulate_cycle_record(seed=0)
    t_record = time.perf_counter() - t0
    result = {
        "rows": rows,
        "simulate_seconds": round(t_sim, 3),
        "simulate_rows_per_second": round(rows / t_sim),
        "write_csv_seconds": round(t_write, 3),
        "csv_megabytes": round(size / 1e6, 1),
        "normalise_seconds": round(t_norm, 3),
        "sentinel_share": round(report.sentinel_rows / report.rows_out, 4),
        "failed_cells": sim.summary["failed_cells"],
        "anomaly_share": round(sim.summary["anomaly_rows"] / rows, 4),
        "history_180d_hourly": {
            "rows": len(long.readings),
            "simulate_seconds": round(t_long, 3),
            "failed_cells": long.summary["failed_cells"],
            "censored_cells": long.summary["censored_cells"],
            "eol_criteria": long.summary["eol_criteria"],
            "soh_rows": len(long.soh),
            "vrla_simulate_seconds": round(t_vrla, 3),
            "vrla_eol_criteria": vrla.summary["eol_criteria"],
        },
        "cycle_record_5s": {
            "rows": record.summary["rows"],
            "simulate_seconds": round(t_record, 3),
            "anomaly_rows": record.summary["anomaly_rows"],
            "faults": record.summary["faults"],
        },
    }
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
