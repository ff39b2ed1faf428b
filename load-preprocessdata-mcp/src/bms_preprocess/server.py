"""MCP layer of load-preprocessdata-mcp: argument models and thin tool functions over the logic.

Heavy libraries (pandas, miceforest, matplotlib) are imported inside the tool functions,
so ``initialize`` + ``tools/list`` stay fast.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from pydantic import Field

from .tool_data import PreprocessData

log = logging.getLogger("bms.preprocess")

server = ToolServer(
    "load-preprocessdata-mcp",
    packages=["pandas", "numpy", "pyarrow", "scikit-learn", "miceforest", "lightgbm", "skops", "matplotlib", "mcp"],
    instructions="Clean, engineer features, MICE-impute and scale battery (BMS) telemetry.",
)
server.add_health_check(models=["bms_scaler"])

OutputFormat = Literal["csv", "parquet", "dataset"]

SCHEDULER_FIELD = Field(
    default=None,
    max_length=500,
    description="Dask scheduler address (tcp://host:port): run on that cluster device by device; the input "
    "must be a dataset folder partitioned by device and the output is a dataset folder "
    "(default: $BMS_DASK_SCHEDULER; unset = one process)",
)


class _FileArgs(ToolArgs):
    data_path: str = Field(
        description="CSV or Parquet file or partitioned dataset folder (raw BMS packets, a minimal table, or an earlier "
        "step's output) inside the workspace or BMS_ALLOWED_DIRS"
    )
    output_format: OutputFormat = Field(
        default="csv",
        description="format of the output table: csv, parquet, or dataset (a folder of Parquet files, one "
        "partition per device: device=<DeviceID>/part-*.parquet)",
    )
    scheduler: str | None = SCHEDULER_FIELD
    chunksize: int | None = Field(
        default=None,
        le=50_000_000,
        description="stream the input in chunks of about this many rows "
        "(bounded memory, same result as one pass); "
        "default: read the whole file (files over 256 MB "
        "are streamed in chunks of 200000 rows)",
    )


class _MiceArgs(_FileArgs):
    sample_rows: int = Field(
        default=20_000, ge=50, le=5_000_000, description="rows the MICE kernel is fitted on (bounded sample)"
    )
    iterations: int = Field(default=2, ge=1, le=50, description="MICE iterations")
    random_state: int = Field(
        default=0, ge=0, le=2**32 - 1, description="seed: the same seed gives the same imputed values"
    )


class PreprocessArgs(_MiceArgs):
    impute: Literal["mice", "interpolate", "none"] = Field(default="mice", description="how to fill gaps")
    window: int = Field(default=12, ge=1, le=10_000, description="readings in the trailing rolling windows")


class CleanArgs(_FileArgs):
    pass


class FeatureArgs(_FileArgs):
    window: int = Field(default=12, ge=1, le=10_000, description="readings in the trailing rolling windows")
    impute: Literal["interpolate", "none"] = Field(
        default="interpolate", description="fill gaps by per-cell time interpolation first, or leave them (NaN)"
    )


class ImputeArgs(_MiceArgs):
    pass


class ImputeScaleArgs(_MiceArgs):
    impute: Literal["mice", "interpolate"] = Field(default="mice", description="how to fill gaps before scaling")


def _execute(
    args: _FileArgs,
    ctx: ToolContext,
    *,
    stem: str,
    impute: str,
    features: bool,
    scale: bool,
    window: int = 12,
    plots: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Shared body of the five tools: resolve, run the engine, write report/plots, register the scaler."""
    from bms_schema.atomic import atomic_write_json
    from bms_schema.distributed import scheduler_address
    from bms_schema.paths import resolve_input

    from .engine import PreprocessOptions, run_preprocess

    path = resolve_input(args.data_path)
    address = scheduler_address(args.scheduler)
    run = ctx.run
    run.add_input(path)
    options = PreprocessOptions(
        impute=impute,
        features=features,
        scale=scale,
        window=window,
        chunksize=args.chunksize,
        sample_rows=getattr(args, "sample_rows", 20_000),
        iterations=getattr(args, "iterations", 2),
        random_state=getattr(args, "random_state", 0),
    )
    notes: list[str] = []
    ctx.progress(0.02, f"reading {path.name}")
    if address is not None:
        from .distributed import run_preprocess_distributed

        if args.output_format != "dataset":
            notes.append(
                f"the Dask engine writes a dataset folder (one partition per device), not one {args.output_format} file"
            )
        output = run.path(stem)
        with run.timed("preprocess"):
            result = run_preprocess_distributed(path, output, options, address, progress=ctx.progress)
        plots = False  # the figures' profile is not merged across workers
    elif args.output_format == "dataset":
        from bms_schema.dataset import split_by_device

        single = run.path(f".{stem}.parquet")
        with run.timed("preprocess"):
            result = run_preprocess(path, single, options, progress=ctx.progress, work_dir=run.dir)
            output = split_by_device(single, run.path(stem))
        single.unlink(missing_ok=True)
        result.output = output
    else:
        output = run.path(f"{stem}.{'parquet' if args.output_format == 'parquet' else 'csv'}")
        with run.timed("preprocess"):
            result = run_preprocess(path, output, options, progress=ctx.progress, work_dir=run.dir)
    run.add_artifact(output, "table", f"{stem.replace('_', ' ')}: {result.rows} rows, {len(result.columns)} columns")

    report = dict(result.report)
    report["imputation"] = {
        "method": impute,
        "imputed_values": result.imputed_counts,
        "mice_quality": result.mice_quality,
    }
    report["chunks"] = result.chunks
    report_path = run.path("data_quality.json")
    atomic_write_json(report_path, report)
    run.add_artifact(
        report_path,
        "report",
        "data-quality report: rows in/out, duplicates, sentinels and gaps per "
        "cell, out-of-range per column, imputation quality",
    )
    if plots and result.profile is not None:
        ctx.progress(0.995, "drawing figures")
        from .plots import plot_distributions, plot_quality_timeline

        timeline = plot_quality_timeline(result.profile, run.path("quality_timeline.png"))
        run.add_artifact(timeline, "plot", "share of sentinel and missing readings per cell over time")
        dist = plot_distributions(result.profile, run.path("distributions.png"))
        run.add_artifact(dist, "plot", "value distributions before and after imputation")

    data: dict[str, Any] = {
        "output_path": str(output),
        "rows": result.rows,
        "columns": len(result.columns),
        "rows_in": report["rows_in"],
        "duplicates_dropped": report["duplicates_dropped"],
        "sentinel_rows": report["sentinel_rows"],
        "out_of_range_rows": report["out_of_range_rows"],
        "cells": report["cells"],
        "time_gaps": report["time_gaps"],
        "missing_before": report["missing_by_column"],
        "imputed_values": result.imputed_counts,
        "chunks": result.chunks,
        "report_path": str(report_path),
        # what the data could not support, and why (VRLA: no SG; no discharge; one-cell strings)
        "measurements_without_value": report.get("measurements_without_value", []),
        "skipped_features": report.get("skipped_features", {}) if features else {},
        "not_scaled": report.get("not_scaled", {}),
        "peer_fallback": {"strings": report.get("single_cell_strings", []), "why": report.get("peer_fallback")}
        if report.get("single_cell_strings")
        else None,
    }
    if result.mice_quality is not None:
        data["mice_quality"] = result.mice_quality
    from bms_schema.coverage import dropped_rows_warning

    lost = dropped_rows_warning(path, int(report["rows_in"]), int(report.get("conflicting_rows_dropped") or 0))
    if lost:
        notes.append(lost)
    if notes:
        data["warnings"] = notes  # the MCP layer puts it into the message
    data["engine"] = "dask" if address is not None else "single-process"
    if scale and result.scaler is not None:
        from bms_schema.runtime import versions

        from .scaling import SCALER_MODEL, register_scaler

        version, folder = register_scaler(
            result.scaler,
            {
                "training_data": run.manifest.inputs[-1],  # the input's fingerprint, hashed once by add_input
                "rows": result.rows,
                "library_versions": versions("numpy", "pandas"),
                "metrics": {},
                "source_run": run.run_id,
            },
        )
        run.add_model(SCALER_MODEL, version, folder)  # recorded as a model, not an artifact: never deleted by the run
        data["scaler"] = {"name": SCALER_MODEL, "version": version, "columns": len(result.scaler.columns)}
    return result, data


@server.tool(PreprocessArgs, title="Preprocess BMS data (full chain)", read_only=False, data_model=PreprocessData)
def preprocess_battery_data_tool(args: PreprocessArgs, ctx: ToolContext) -> ToolOutput:
    """Full preprocessing of a BMS file in one call: normalise, drop duplicate packets, sort by cell and time,
    turn 0xFFFF sentinels and impossible values into flagged gaps, impute (MICE by default, with <col>_Imputed
    flags), add engineered features (rates, rolling stats, string deviations, SoC, resistance proxy, ...), and
    scale (raw columns kept, <col>_scaled added; the scaler is registered as model bms_scaler). Writes the table,
    data_quality.json and PNG figures into the run folder. Use chunksize for big files."""
    result, data = _execute(
        args, ctx, stem="preprocessed", impute=args.impute, features=True, scale=True, window=args.window
    )
    return ToolOutput(
        message=f"preprocessed {data['rows_in']} rows into {result.rows} rows x {len(result.columns)} "
        f"columns ({sum(result.imputed_counts.values())} values imputed)",
        data=data,
    )


@server.tool(CleanArgs, title="Clean and filter BMS data", read_only=False, data_model=PreprocessData)
def clean_and_filter_data(args: CleanArgs, ctx: ToolContext) -> ToolOutput:
    """Clean a BMS file: normalise to the canonical table, drop exact duplicate packets, sort by cell then time,
    turn 0xFFFF sentinels and physically impossible values into missing values with quality flags. Writes the
    cleaned table, a data-quality report (rows in/out, duplicates, sentinel rate per cell, out-of-range per column,
    time gaps per cell) and PNG figures. No imputation."""
    result, data = _execute(args, ctx, stem="cleaned", impute="none", features=False, scale=False)
    return ToolOutput(
        message=f"cleaned {data['rows_in']} rows -> {result.rows} rows ({data['duplicates_dropped']} "
        f"duplicates dropped, {data['sentinel_rows']} sentinel rows flagged)",
        data=data,
    )


@server.tool(FeatureArgs, title="Engineer battery features", read_only=False, data_model=PreprocessData)
def engineer_battery_features(args: FeatureArgs, ctx: ToolContext) -> ToolOutput:
    """Add engineered features per cell in time order (never across cells): VoltageRate, TemperatureRate (per
    hour), rolling mean/std of voltage, temperature and SG, TempAboveAmbient, SGCorrected25C, VoltageDevString and
    SGDevString (deviation from the string median at the same time), ResistanceProxy (dV/dI at current steps),
    StateOfCharge (% from corrected SG) and HourOfDay. Accepts raw or already cleaned input."""
    from bms_schema.features import FEATURE_COLUMNS

    result, data = _execute(
        args, ctx, stem="features", impute=args.impute, features=True, scale=False, window=args.window
    )
    data["features"] = list(FEATURE_COLUMNS)
    return ToolOutput(message=f"added {len(FEATURE_COLUMNS)} features to {result.rows} rows", data=data)


@server.tool(ImputeArgs, title="Impute BMS data with MICE", read_only=False, data_model=PreprocessData)
def impute_battery_data_mice(args: ImputeArgs, ctx: ToolContext) -> ToolOutput:
    """Fill gaps in the measurements with MICE (miceforest / LightGBM) fitted on a bounded sample and applied to
    every row deterministically (random_state). Labels are never imputed; <col>_Imputed flags mark filled values.
    Reports honest quality: known values are masked and the MICE error is compared with per-cell interpolation."""
    result, data = _execute(args, ctx, stem="imputed", impute="mice", features=False, scale=False)
    return ToolOutput(message=f"imputed {sum(result.imputed_counts.values())} values in {result.rows} rows", data=data)


@server.tool(ImputeScaleArgs, title="Impute and scale BMS data", read_only=False, data_model=PreprocessData)
def impute_and_scale_battery_data(args: ImputeScaleArgs, ctx: ToolContext) -> ToolOutput:
    """Impute gaps (MICE by default) and standard-scale the measurements (and any feature columns present): raw
    columns keep their names and units, <col>_scaled columns are added, and the fitted scaler is registered as a new
    version of model bms_scaler so live inference applies the same transform."""
    result, data = _execute(args, ctx, stem="imputed_scaled", impute=args.impute, features=False, scale=True)
    return ToolOutput(
        message=f"imputed {sum(result.imputed_counts.values())} values and scaled "
        f"{data['scaler']['columns']} columns (bms_scaler {data['scaler']['version']})",
        data=data,
    )


def main() -> None:
    server.main()
