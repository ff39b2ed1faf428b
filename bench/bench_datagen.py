"""Benchmark SDV synthesis on simulated battery readings.

- GaussianCopula (the default synthesizer) fit + sample of 100k rows of the minimal readings table
  (timestamp, device, cell, five measurements, labels), through the same code as ``sdv_generate``;
- the SDV quality score of that synthetic table (no metadata.json: detected + battery fixes);
- the same on the full 76-column raw packet table (smaller, quality only).

Prints one JSON object. Not a test. ``uv run python bench/bench_datagen.py``
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("BMS_THREADS", "1")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BMS_WORKSPACE"] = tmp
        import sdv.metadata  # noqa: F401 - warm the heavy imports: the figure is fit + sample, not import
        import sdv.single_table  # noqa: F401
        from bms_datagen.sdv_pipeline import evaluate, generate
        from bms_datagen.simulator import simulate_fleet, to_minimal_table, write_fleet_csv
        from bms_schema.paths import workspace
        from bms_schema.reader import write_table

        root = workspace()
        minimal = root / "data" / "minimal"
        minimal.mkdir()
        fleet = simulate_fleet(devices=5, cells_per_device=24, days=8.7, interval_minutes=10, seed=0)
        table = to_minimal_table(fleet).head(100_000)
        write_table(table, minimal / "readings.csv")

        t0 = time.perf_counter()
        generate(minimal, root / "runs" / "bench-min", synthesizer="gaussian_copula", seed=0, register=False)
        t_min = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev_min = evaluate(minimal, synthetic_folder=root / "runs" / "bench-min" / "synthetic")
        t_eval = time.perf_counter() - t0

        raw = root / "data" / "raw"
        raw.mkdir()
        write_fleet_csv(simulate_fleet(devices=2, cells_per_device=8, days=7, seed=1), raw / "readings.csv")
        t0 = time.perf_counter()
        generate(raw, root / "runs" / "bench-raw", synthesizer="gaussian_copula", seed=0, register=False)
        t_raw = time.perf_counter() - t0
        ev_raw = evaluate(raw, synthetic_folder=root / "runs" / "bench-raw" / "synthetic")

    result = {
        "gaussian_copula_minimal_rows": int(len(table)),
        "gaussian_copula_minimal_fit_sample_seconds": round(t_min, 2),
        "minimal_quality_score": ev_min["quality"]["overall_score"],
        "minimal_quality_properties": {p["Property"]: p["Score"] for p in ev_min["quality"]["properties"]},
        "minimal_diagnostic_score": ev_min["diagnostic"]["overall_score"],
        "minimal_privacy_copied_share": ev_min["privacy"]["readings"]["copied_share"],
        "minimal_privacy_dcr_ratio": ev_min["privacy"]["readings"].get("dcr_ratio"),
        "evaluate_seconds_20k_rows": round(t_eval, 2),
        "raw_packet_rows": ev_raw["rows_compared"]["readings"]["real"],
        "raw_packet_fit_sample_seconds": round(t_raw, 2),
        "raw_packet_quality_score": ev_raw["quality"]["overall_score"],
    }
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
