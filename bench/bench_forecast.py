"""Forecaster benchmark: train the global models on ~1M simulated readings, then per-cell latency. Prints JSON.

* ``train_s``: ``fit_forecaster`` on the cleaned canonical table (panel, both strategies per target,
  calibration, rolling-origin backtest) with ``BMS_THREADS`` compute threads (default 2 here) and
  ``OMP_WAIT_POLICY=PASSIVE`` (default here, as in the server);
  ``train_cpu_s`` is the process CPU time over the same span (wall time is noisy on a shared machine;
  ``load_average`` says how busy it was). Goal: ``train_s <= 60`` on 2 cores.
* ``forecast_ms``: ``load_forecaster("latest").forecast(history, cell, 25)`` per cell (model already
  loaded; the history is the cell's string), median and max over ``--cells`` cells; ``load_ms`` is the
  first load from the registry (checksums + boosters). Goal: under 1 s per cell.
* ``backtest``: per target, the strategy kept, MAE of the model and of the naive forecasts (mean over
  horizons and at h=1/h=25) and the 80 % interval coverage on the test window.

Usage: uv run python bench/bench_forecast.py [--devices 15] [--cells-per-device 24] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("BMS_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server sets it: idle OpenMP threads sleep
os.environ.setdefault("BMS_LOG_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=15)
    parser.add_argument("--cells-per-device", type=int, default=24)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--cells", type=int, default=20, help="cells timed for forecast latency")
    args = parser.parse_args()
    os.environ["BMS_WORKSPACE"] = tempfile.mkdtemp(prefix="bench-forecast-")

    from bms_schema.runtime import limit_threads

    limit_threads()
    import numpy as np
    from bms_datagen.simulator import simulate_fleet
    from bms_forecast.persistence import load_forecaster, save_forecaster
    from bms_forecast.training import fit_forecaster
    from bms_schema.clean import clean_readings

    out: dict = {"threads": int(os.environ["BMS_THREADS"]), "load_average_start": os.getloadavg()[0]}
    t = time.perf_counter()
    raw = simulate_fleet(devices=args.devices, cells_per_device=args.cells_per_device, days=args.days, seed=0)
    out["simulate_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    frame, _ = clean_readings(raw)
    out["clean_s"] = round(time.perf_counter() - t, 2)
    out["rows"] = int(len(frame))
    del raw

    cpu, t = time.process_time(), time.perf_counter()
    forecaster, report = fit_forecaster(frame)
    out["train_s"] = round(time.perf_counter() - t, 2)
    out["train_cpu_s"] = round(time.process_time() - cpu, 2)
    out["train_timings_s"] = report["timings"]
    out["load_average_end"] = os.getloadavg()[0]
    version, _ = save_forecaster(forecaster, report)

    t = time.perf_counter()
    loaded = load_forecaster(version)
    out["load_ms"] = round((time.perf_counter() - t) * 1000, 1)
    cells = frame["CellID"].drop_duplicates().sample(args.cells, random_state=0).tolist()
    latencies = []
    for cell in cells:
        history = frame.loc[frame["DeviceID"] == frame.loc[frame["CellID"] == cell, "DeviceID"].iloc[0]]
        t = time.perf_counter()
        table = loaded.forecast(history, cell, 25)
        latencies.append((time.perf_counter() - t) * 1000)
        assert len(table) == 25 * len(loaded.targets)
    out["forecast_ms"] = {
        "median": round(float(np.median(latencies)), 1),
        "max": round(float(np.max(latencies)), 1),
        "history_rows_per_call": int(len(history)),
    }

    backtest = {}
    for target, m in report["metrics"].items():
        s = m["summary"]
        backtest[target] = {
            "strategy": m["strategy"],
            "calibration_mae": {k: v["calibration_mae_mean"] for k, v in m["strategy_selection"].items()},
            "coverage_80": m["coverage"],
            "mae_mean": {k: s[k]["mae_mean"] for k in ("model", "naive_last", "naive_seasonal")},
            "mae_h1": {k: s[k].get("mae_h1") for k in ("model", "naive_last", "naive_seasonal")},
            "mae_h25": {k: s[k].get("mae_h25") for k in ("model", "naive_last", "naive_seasonal")},
            "mase_mean": {k: s[k]["mase_mean"] for k in ("model", "naive_last", "naive_seasonal")},
            "beats_naive_last_at": _ranges(m["beats_naive_last_at"]),
            "beats_naive_seasonal_at": _ranges(m["beats_naive_seasonal_at"]),
        }
    out["backtest"] = backtest
    print(json.dumps(out, indent=1))


def _ranges(horizons: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3,7"."""
    parts, start, prev = [], None, None
    for h in horizons + [None]:
        if start is None:
            start = prev = h
        elif h is not None and h == prev + 1:
            prev = h
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = h
    return ",".join(p for p in parts if p != "None")


if __name__ == "__main__":
    main()
