"""Normalising a 1M-row raw packet CSV vs a plain pyarrow read of the same file. Prints JSON.

Usage: uv run python bench/bench_normalize.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from packet_data import build_packet_csv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import pyarrow.csv as pacsv
    from bms_schema import load_readings

    path = build_packet_csv(args.rows, Path(__file__).resolve().parent / "out" / f"packets_{args.rows}.csv")
    arrow, ours = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        pacsv.read_csv(path).to_pandas()
        arrow.append(time.perf_counter() - t)
        t = time.perf_counter()
        frame, report = load_readings(path)
        ours.append(time.perf_counter() - t)
    best_arrow, best_ours = min(arrow), min(ours)
    print(
        json.dumps(
            {
                "benchmark": "normalize_raw_packets",
                "rows": len(frame),
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "pyarrow_read_to_pandas_s": round(best_arrow, 3),
                "normalize_s": round(best_ours, 3),
                "rows_per_s": int(len(frame) / best_ours),
                "ratio_to_pyarrow": round(best_ours / best_arrow, 2),
                "goal_ratio": 2.0,
                "sentinel_rows": report.sentinel_rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
