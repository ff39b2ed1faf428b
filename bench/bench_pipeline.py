"""Benchmark: the default pipeline (simulated ~0.5M readings) end to end over MCP, in a fresh workspace.

Prints one JSON object: total wall time, time per stage (wall and inside the tool), the share of
time spent outside the tools (process start, protocol, driver work), readings processed, exit code.
Goal: total <= 180 s on 2 cores.

    uv run python bench/bench_pipeline.py [--devices 4 --cells-per-device 24 --days 60] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    from bms_agent.cli_pipeline import run_pipeline
    from bms_agent.report import timing_summary
    from bms_agent.state import PipelineOptions

    defaults = PipelineOptions()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=defaults.devices)
    p.add_argument("--cells-per-device", type=int, default=defaults.cells_per_device)
    p.add_argument("--days", type=int, default=defaults.days)
    p.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = p.parse_args()

    workspace = Path(tempfile.mkdtemp(prefix="bms-bench-pipeline-"))
    os.environ["BMS_WORKSPACE"] = str(workspace)
    options = PipelineOptions(devices=args.devices, cells_per_device=args.cells_per_device, days=args.days)
    start = time.perf_counter()
    result = run_pipeline(options, workspace, quiet=True)
    total = time.perf_counter() - start
    state = result.state
    timing = timing_summary(state)
    preprocess = state.stages.get("preprocess")
    rows = None
    if preprocess and preprocess.calls:
        data = preprocess.calls[0].envelope.get("data") or {}
        rows = data.get("rows_in") or data.get("rows")
    figures = {
        "readings_expected": options.expected_readings,
        "readings_in": rows,
        "exit_code": result.exit_code,
        "failed_stage": result.failed_stage,
        "error": (result.error or "").splitlines()[0] if result.error else None,
        "total_seconds": round(total, 2),
        "pipeline_seconds": round(result.seconds, 2),
        "report_seconds": result.extra.get("report_seconds"),
        "goal_seconds": 180,
        "within_goal": total <= 180,
        "stages": {
            name: {
                "status": rec.status,
                "wall_seconds": round(rec.seconds, 2),
                "tool_seconds": round(rec.tool_seconds, 2),
                "calls": len(rec.calls),
            }
            for name, rec in state.stages.items()
        },
        "server_start_seconds": state.server_start_seconds,
        **{k: v for k, v in timing.items() if k != "wall_seconds"},
        "cpu_count": os.cpu_count(),
        "run_dir": str(state.run_dir) if args.keep else None,
    }
    print(json.dumps(figures, indent=1))
    if not args.keep:
        shutil.rmtree(workspace, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
