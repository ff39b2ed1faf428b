"""``bms-pipeline`` / ``run_full_pipeline.py``: the whole BMS-Flux pipeline over MCP, in one command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from .stages import STAGE_NAMES
from .state import PipelineOptions

DEFAULTS = PipelineOptions()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bms-pipeline",
        description="Run the full BMS-Flux pipeline: every server as its own MCP stdio subprocess, one run folder, "
        "a report (report.md + report.html) at the end. Without --data a default fleet is simulated "
        f"({DEFAULTS.devices} devices x {DEFAULTS.cells_per_device} cells x {DEFAULTS.days} days at "
        f"{DEFAULTS.interval_minutes} min = {DEFAULTS.expected_readings:,} readings).",
    )
    p.add_argument(
        "--data", help="your own CSV/Parquet readings (raw packet format or minimal table) instead of simulating"
    )
    p.add_argument("--devices", type=int, default=DEFAULTS.devices, help="simulated devices (strings)")
    p.add_argument("--cells-per-device", type=int, default=DEFAULTS.cells_per_device, help="cells per simulated string")
    p.add_argument("--days", type=int, default=DEFAULTS.days, help="simulated days")
    p.add_argument("--interval-minutes", type=int, default=DEFAULTS.interval_minutes, help="minutes between readings")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed for simulation, sampling and synthesis")
    p.add_argument("--failure-rate", type=float, help="simulator: share of cells dying per 30 days (default: its own)")
    p.add_argument("--anomaly-rate", type=float, help="simulator: share of readings with a labelled anomaly")
    p.add_argument(
        "--chemistry",
        choices=("flooded", "vrla"),
        default=DEFAULTS.chemistry,
        help="simulator: flooded cells (with specific gravity) or sealed VRLA (no SG column)",
    )
    p.add_argument(
        "--discharge-every-days",
        type=float,
        help="simulator: mean days between mains outages; 0 = no discharge in the span",
    )
    p.add_argument(
        "--no-labels",
        action="store_true",
        help="drop the simulator's IsDead/IsAnomaly/AnomalyType columns, as in a real fleet's data",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="STAGE",
        choices=STAGE_NAMES,
        help=f"skip a stage (repeatable): {', '.join(STAGE_NAMES)}",
    )
    p.add_argument("--workspace", help="BMS workspace (default: $BMS_WORKSPACE or ~/.bms-flux/workspace)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a run: stages that finished in it are not repeated")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULTS.timeout,
        help="seconds one tool call may take before its server counts as hung (default %(default)s)",
    )
    p.add_argument(
        "--start-timeout",
        type=float,
        default=DEFAULTS.start_timeout,
        help="seconds a server may take to start and answer initialize (default %(default)s)",
    )
    p.add_argument(
        "--forecast-cells",
        type=int,
        default=DEFAULTS.forecast_cells,
        help="forecast this many of the riskiest living cells (default %(default)s)",
    )
    p.add_argument("--horizon-days", type=int, default=DEFAULTS.horizon_days, help="failure horizon in days")
    p.add_argument(
        "--forecast-train-pairs",
        type=int,
        default=DEFAULTS.forecast_train_pairs,
        help="training examples per parameter for the forecaster (default %(default)s)",
    )
    p.add_argument(
        "--anomaly-prior-rows",
        type=int,
        default=DEFAULTS.anomaly_prior_rows,
        help="a fleet of fewer than 100,000 readings trains its anomaly detector together with a simulated "
        "fleet of this many readings (its chemistry and interval; default %(default)s, 0: its own readings only)",
    )
    p.add_argument(
        "--sdv-rows",
        type=int,
        default=DEFAULTS.sdv_rows,
        help="readings sampled for SDV generate/evaluate (default %(default)s)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=DEFAULTS.parallel,
        help="independent stages on different servers run at once, this many (default %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars (summary and errors only)")
    return p


def options_from(args: argparse.Namespace) -> PipelineOptions:
    for name in (
        "devices",
        "cells_per_device",
        "days",
        "interval_minutes",
        "forecast_cells",
        "horizon_days",
        "sdv_rows",
        "parallel",
        "forecast_train_pairs",
        "timeout",
        "start_timeout",
    ):
        if getattr(args, name) <= 0:
            raise SystemExit(f"bms-pipeline: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.anomaly_prior_rows < 0:
        raise SystemExit(f"bms-pipeline: --anomaly-prior-rows must be 0 or more, got {args.anomaly_prior_rows}")
    return PipelineOptions(
        data=args.data,
        devices=args.devices,
        cells_per_device=args.cells_per_device,
        days=args.days,
        interval_minutes=args.interval_minutes,
        seed=args.seed,
        skip=args.skip,
        timeout=args.timeout,
        start_timeout=args.start_timeout,
        sdv_rows=args.sdv_rows,
        horizon_days=args.horizon_days,
        forecast_cells=args.forecast_cells,
        forecast_train_pairs=args.forecast_train_pairs,
        anomaly_prior_rows=args.anomaly_prior_rows,
        failure_rate=args.failure_rate,
        anomaly_rate=args.anomaly_rate,
        parallel=args.parallel,
        chemistry=args.chemistry,
        discharge_every_days=args.discharge_every_days,
        no_labels=args.no_labels,
    )


def summary_table(result: Any) -> Any:
    from rich.table import Table

    from .report import timing_summary

    state = result.state
    table = Table(title=f"BMS-Flux pipeline {state.run_id}", show_lines=False)
    for col in ("stage", "status", "calls", "wall s", "tool s", "result"):
        table.add_column(col, overflow="fold")
    colours = {"ok": "green", "error": "red", "skipped": "yellow"}
    for name, rec in state.stages.items():
        note = rec.line()
        table.add_row(
            name,
            f"[{colours.get(rec.status, 'white')}]{rec.status}",
            str(len(rec.calls)),
            f"{rec.seconds:.1f}",
            f"{rec.tool_seconds:.1f}",
            note,
        )
    t = timing_summary(state)
    table.caption = (
        f"total {t['wall_seconds']:.1f} s, outside the tools {t['outside_tools_share']:.0%} "
        f"(server start {t['server_start_seconds']:.1f} s, protocol {t['protocol_seconds']:.1f} s, "
        f"driver {t['driver_seconds']:.1f} s)"
    )
    return table


def plain_summary(result: Any) -> str:
    """The summary as plain text for a pipe or a log file: aligned columns, nothing cut or wrapped."""
    from .report import timing_summary

    state = result.state
    rows = [("stage", "status", "calls", "wall s", "tool s", "result")]
    rows += [
        (name, rec.status, str(len(rec.calls)), f"{rec.seconds:.1f}", f"{rec.tool_seconds:.1f}", rec.line())
        for name, rec in state.stages.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"BMS-Flux pipeline {state.run_id}"]
    for row in rows:
        cells = [row[i].ljust(widths[i]) if i in (0, 1) else row[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells) + "  " + row[5])
    t = timing_summary(state)
    lines.append(
        f"total {t['wall_seconds']:.1f} s, outside the tools {t['outside_tools_share']:.0%} "
        f"(server start {t['server_start_seconds']:.1f} s, protocol {t['protocol_seconds']:.1f} s, "
        f"driver {t['driver_seconds']:.1f} s)"
    )
    return "\n".join(lines)


def run_pipeline(
    options: PipelineOptions,
    workspace: Path,
    resume: str | None = None,
    console: Any = None,
    specs: dict[str, Any] | None = None,
    quiet: bool = False,
):
    """Prepare, run and report one pipeline (used by the CLI, tests and the benchmark)."""
    import anyio

    from .pipeline import PipelineRunner, prepare_state
    from .report import write_report
    from .ui import RichReporter, SilentReporter

    os.environ["BMS_WORKSPACE"] = str(workspace)
    state = prepare_state(options, workspace, resume)
    if quiet or console is None:
        runner = PipelineRunner(state, workspace, specs=specs, reporter=SilentReporter())
        result = anyio.run(runner.run)
    else:
        with RichReporter(console) as reporter:
            runner = PipelineRunner(state, workspace, specs=specs, reporter=reporter)
            result = anyio.run(runner.run)
    t0 = time.perf_counter()
    result.report_md, result.report_html = write_report(state, workspace, failed=result.failed_stage)
    result.extra["report_seconds"] = round(time.perf_counter() - t0, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    from bms_schema import BMSError
    from rich.console import Console
    from rich.markup import escape

    from .pipeline import PipelineError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=True)
    out = Console()
    if args.workspace:
        workspace = Path(args.workspace).expanduser().resolve()
    else:
        from bms_schema.paths import workspace as default_workspace

        workspace = default_workspace()
    workspace.mkdir(parents=True, exist_ok=True)
    options = options_from(args)
    try:
        result = run_pipeline(options, workspace, resume=args.resume, console=console, quiet=args.quiet)
    except (PipelineError, BMSError) as exc:
        console.print(f"[red]bms-pipeline: {escape(str(exc))}", soft_wrap=True, highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: finished stages are kept; continue with --resume")
        return 130
    if out.is_terminal:
        out.print(summary_table(result))
        out.print(f"report: {result.report_md}\n        {result.report_html}")
    else:  # a pipe or a log file: plain text, never cut at 80 columns
        sys.stdout.write(plain_summary(result) + f"\nreport: {result.report_md}\n        {result.report_html}\n")
        sys.stdout.flush()
    if not result.ok:
        console.print(f"[red]{escape(result.error or '')}", soft_wrap=True, highlight=False)
        console.print(
            f"finished stages are kept in {result.state.run_dir}; after fixing the problem continue with:\n"
            f"  bms-pipeline --resume {result.state.run_id}" + (f" --workspace {workspace}" if args.workspace else "")
        )
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
