"""MCP layer of data-generator-mcp: argument models and thin tool functions over the logic.

Heavy libraries (scipy, sdv, matplotlib, plotly) are imported inside the tool functions so the
server answers ``initialize`` + ``tools/list`` quickly.
"""

from __future__ import annotations

from typing import Literal

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from pydantic import Field

from .tool_data import CycleRecordData, SdvEvaluateData, SdvGenerateData, SdvSampleData, SdvVisualizeData, SimulateData

server = ToolServer(
    "data-generator-mcp",
    packages=["pandas", "numpy", "sdv", "matplotlib", "plotly", "mcp"],
    instructions="Simulate realistic lead-acid battery fleets (with ground truth) and generate/evaluate/visualise SDV synthetic data.",
)
server.add_health_check(models=[])


class SimulateFleetArgs(ToolArgs):
    devices: int = Field(default=3, ge=1, le=10_000, description="Number of BMS devices (one battery string each)")
    cells_per_device: int = Field(default=24, ge=1, le=1_000, description="Cells per string (2 V lead-acid cells)")
    days: float = Field(default=30.0, gt=0, le=3650, description="Simulated span in days")
    interval_minutes: float = Field(default=15.0, gt=0, le=1440, description="Minutes between packets")
    seed: int = Field(default=0, ge=0, description="Random seed: the same seed gives a byte-identical file")
    failure_rate: float = Field(default=0.03, ge=0, le=0.9, description="Share of cells that die per 30 days")
    anomaly_rate: float = Field(default=0.01, ge=0, le=0.9, description="Share of readings labelled as anomalies")
    dropout_rate: float = Field(
        default=0.19, ge=0, le=0.9, description="Share of rows with 0xFFFF sensor dropouts (the real sample has 19.5 %)"
    )
    duplicate_rate: float = Field(default=0.005, ge=0, le=0.9, description="Share of packets sent twice")
    out_of_order_rate: float = Field(default=0.01, ge=0, le=0.9, description="Share of packets delivered late")
    missing_rate: float = Field(default=0.002, ge=0, le=0.9, description="Share of rows with one empty measurement")
    start: str = Field(default="2025-01-01T00:00:00Z", description="First packet time (ISO 8601, UTC)")
    discharge_every_days: float = Field(
        default=4.0, ge=0, le=3650, description="Mean days between mains outages (discharge events); 0 = no discharge"
    )
    chemistry: Literal["flooded", "vrla"] = Field(
        default="flooded",
        description="flooded: vented cells with specific gravity (SG) readings, float 2.20-2.27 V/cell; "
        "vrla: sealed VRLA/AGM/gel, no CellSpecificGravity column, float 2.25-2.30 V/cell, "
        "dry-out and thermal-runaway failures",
    )
    file_name: str = Field(
        default="bms_fleet.csv",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.csv$",
        description="Name of the packet CSV written into the run folder",
    )


@server.tool(SimulateFleetArgs, title="Simulate a BMS fleet", read_only=False, idempotent=True, data_model=SimulateData)
def simulate_bms_fleet(args: SimulateFleetArgs, ctx: ToolContext) -> ToolOutput:
    """Simulate lead-acid battery strings on float service and write raw 73-column BMS packets (CSV) with
    ground-truth labels (IsDead, IsAnomaly, AnomalyType) plus a per-cell ground-truth table (fate, failure
    mode, death time) into the run folder. Physics: float voltage 2.20-2.27 V, SG 1.200-1.240, OCV = SG + 0.84
    (chemistry="vrla": float 2.25-2.30 V, no SG column, dry-out and thermal-runaway failures),
    daily ambient cycle, I^2R heating, mains-outage discharges (discharge_every_days=0: none) and recharges;
    Arrhenius-accelerated ageing (resistance growth, capacity fade, float drift) with failures by sulfation or
    dry-out (weeks of trend to the IEEE end-of-life thresholds) or internal short (days of warning); real
    telemetry mess (0xFFFF dropouts, empty fields, duplicate and late packets). Also writes the survival ground
    truth: per-cell end-of-life time and mode (censored if alive at the end) and state of health over time.
    Same seed -> byte-identical file."""
    from .fleet_config import FleetConfig
    from .simulator import simulate_fleet_with_truth, write_simulation

    params = args.model_dump(exclude={"run_id", "file_name"})
    config = FleetConfig(**params)
    ctx.progress(0.05, f"simulating {config.rows:,} readings")
    with ctx.run.timed("simulate"):
        sim = simulate_fleet_with_truth(config)
    ctx.progress(0.6, "writing CSV")
    readings_path = ctx.run.path(args.file_name)
    truth_path = ctx.run.path(args.file_name[: -len(".csv")] + "_cells_truth.csv")
    soh_path = ctx.run.path(args.file_name[: -len(".csv")] + "_soh.csv")
    with ctx.run.timed("write"):
        write_simulation(sim, readings_path, truth_path, soh_path)
    ctx.run.add_artifact(
        readings_path, "table", "simulated raw BMS packets (73 columns + IsDead, IsAnomaly, AnomalyType)"
    )
    ctx.run.add_artifact(
        truth_path,
        "table",
        "per-cell ground truth: fate, failure mode and end-of-life time "
        "(censored if alive at the end), capacity and resistance at start and end",
    )
    ctx.run.add_artifact(soh_path, "table", "ground-truth state of health of every cell over time (daily)")
    summary = sim.summary
    message = (
        f"simulated {summary['rows']:,} rows: {summary['devices']} devices x "
        f"{config.cells_per_device} cells x {summary['readings_per_cell']} readings; "
        f"{summary['failed_cells']} cells fail, {summary['anomaly_rows']} anomaly rows, "
        f"{summary['dropout_rows']} dropout rows"
    )
    return ToolOutput(
        message=message,
        data={"path": str(readings_path), "ground_truth_path": str(truth_path), "soh_path": str(soh_path), **summary},
    )


FaultName = Literal["voltage_sag", "hot_spot", "sensor_spike", "stuck_sensor", "loose_connection"]


class CycleRecordArgs(ToolArgs):
    seed: int = Field(default=0, ge=0, description="Random seed: the same seed gives the same record")
    interval_seconds: float = Field(default=5.0, ge=0.1, le=3600, description="Seconds between readings")
    chemistry: Literal["vrla", "flooded"] = Field(default="vrla", description="vrla (no SG column) or flooded")
    cells: int = Field(
        default=6, ge=1, le=24, description="6: a 12 V monobloc with cell-level sensing; 1: one 2 V cell"
    )
    steps: int = Field(default=16_000, ge=10, le=2_000_000, description="Readings per cell (16,000 x 5 s = 22.2 h)")
    faults: list[FaultName] | None = Field(
        default=None,
        description="Fault types to inject, one each at its default place; default: a 0.08 V/cell sag in "
        "float, discharge, rest and bulk charge and a +12 degC hot spot in discharge and float; "
        "[] for none",
    )
    file_name: str = Field(
        default="cycle_record.csv",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.csv$",
        description="Name of the readings CSV written into the run folder",
    )


@server.tool(
    CycleRecordArgs,
    title="Simulate a charge/discharge record with faults",
    read_only=False,
    idempotent=True,
    data_model=CycleRecordData,
)
def simulate_cycle_record(args: CycleRecordArgs, ctx: ToolContext) -> ToolOutput:
    """Simulate one monobloc (or cell) at seconds resolution through float, a discharge, rest, a bulk and
    absorption recharge and float again, with labelled injected faults (IsAnomaly, AnomalyType) and the true
    operating state per reading (Phase, TrueState): the benchmark record for state-aware anomaly detection.
    Writes the readings (minimal table) and the fault table into the run folder."""
    from .records import simulate_cycle_record as simulate
    from .records import write_record

    with ctx.run.timed("simulate"):
        record = simulate(
            seed=args.seed,
            interval_seconds=args.interval_seconds,
            chemistry=args.chemistry,
            cells=args.cells,
            steps=args.steps,
            faults=args.faults,
        )
    readings_path = ctx.run.path(args.file_name)
    faults_path = ctx.run.path(args.file_name[: -len(".csv")] + "_faults.csv")
    with ctx.run.timed("write"):
        write_record(record, readings_path, faults_path)
    ctx.run.add_artifact(readings_path, "table", "charge/discharge record with labelled injected faults")
    ctx.run.add_artifact(faults_path, "table", "the injected faults: type, cell, phase, start, end, magnitude")
    summary = record.summary
    message = (
        f"simulated {summary['rows']:,} readings ({summary['cells']} cells x {summary['readings_per_cell']} "
        f"at {summary['interval_seconds']:g} s, {summary['hours']:.1f} h); {summary['anomaly_rows']} fault "
        f"readings from {len(record.faults)} injected faults"
    )
    return ToolOutput(message=message, data={"path": str(readings_path), "faults_path": str(faults_path), **summary})


SynthesizerName = Literal["auto", "gaussian_copula", "ctgan", "tvae", "par", "hma"]
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SdvGenerateArgs(ToolArgs):
    folder_name: str = Field(
        description="Folder (in the workspace) with one CSV per table and optionally an SDV metadata.json"
    )
    synthesizer: SynthesizerName = Field(
        default="auto",
        description="auto: GaussianCopula for one table, HMA for several; ctgan/tvae on request; "
        "par for per-cell sequences (cell id = sequence key, timestamp = sequence index)",
    )
    num_rows: int | None = Field(
        default=None,
        ge=1,
        le=5_000_000,
        description="Rows to generate (one table; for PAR: about this many rows). Default: as many as the real table",
    )
    scale: float = Field(
        default=1.0, gt=0, le=100, description="Size relative to the real data when num_rows is not given"
    )
    seed: int = Field(default=0, ge=0, description="Random seed: the same seed reproduces the same synthetic data")
    epochs: int = Field(default=100, ge=1, le=5000, description="Training epochs for ctgan, tvae and par")
    sequence_key: str | None = Field(
        default=None, description="PAR: column identifying a sequence (default: CellID, or DeviceID-CellNumber)"
    )
    sequence_index: str | None = Field(
        default=None, description="PAR: timestamp column ordering each sequence (default: Timestamp/PacketDateTime)"
    )
    model_name: str | None = Field(
        default=None,
        pattern=MODEL_NAME,
        description="Registry name of the fitted synthesizer (default: sdv-<folder name>)",
    )


@server.tool(SdvGenerateArgs, title="Generate synthetic data with SDV", read_only=False, data_model=SdvGenerateData)
def sdv_generate(args: SdvGenerateArgs, ctx: ToolContext) -> ToolOutput:
    """Fit an SDV 2.0 synthesizer on the CSV tables of a folder and write synthetic CSVs into the run folder.
    Without metadata.json, metadata is detected and fixed for battery data (ids, booleans such as IsDead,
    timestamps as datetimes, 0xFFFF sentinels as missing) and saved next to the synthetic tables. The fitted
    synthesizer is registered as a versioned model so sdv_sample can draw more rows later."""
    from bms_schema import resolve_input

    from .sdv_pipeline import generate

    folder = resolve_input(args.folder_name, kind="folder")
    for csv in sorted(p for p in folder.glob("*.csv") if p.is_file()):
        ctx.run.add_input(csv)
    with ctx.run.timed("generate"):
        result = generate(
            folder,
            ctx.run.dir,
            synthesizer=args.synthesizer,
            num_rows=args.num_rows,
            scale=args.scale,
            seed=args.seed,
            epochs=args.epochs,
            sequence_key=args.sequence_key,
            sequence_index=args.sequence_index,
            model_name=args.model_name,
            run_id=ctx.run.run_id,
            progress=ctx.progress,
        )
    from .sdv_data import sdtypes

    for name, path in result.paths.items():
        kind = "metadata" if name == "metadata" else "table"
        ctx.run.add_artifact(
            path, kind, "SDV metadata of the tables" if name == "metadata" else f"synthetic table '{name}'"
        )
    model_name = result.model_name
    if result.model_version:
        from bms_schema.registry import ModelRegistry

        ctx.run.add_model(model_name, result.model_version, ModelRegistry().locate(model_name, result.model_version))
    tables = {
        n: {"real_rows": result.real_rows[n], "synthetic_rows": int(len(f)), "path": str(result.paths[n])}
        for n, f in result.tables.items()
    }
    message = (
        f"{result.synthesizer} generated "
        + ", ".join(f"{t['synthetic_rows']} rows of '{n}'" for n, t in tables.items())
        + f"; registered as {model_name}/{result.model_version}"
    )
    return ToolOutput(
        message=message,
        data={
            "synthesizer": result.synthesizer,
            "tables": tables,
            "synthetic_folder": str(ctx.run.dir / "synthetic"),
            "metadata_path": str(result.paths["metadata"]),
            "metadata_detected": result.detected,
            "detected_types": sdtypes(result.metadata),
            "battery_fixes": result.fixes,
            "rebuilt_columns": {
                n: {
                    "derived": list(p.derived),
                    "constant": list(p.constants),
                    "per_device": p.device_columns,
                    "sentinels": p.sentinels,
                }
                for n, p in result.preps.items()
            },
            "model": {"name": model_name, "version": result.model_version},
        },
    )


class SdvSampleArgs(ToolArgs):
    model_name: str = Field(pattern=MODEL_NAME, description="Registered SDV model (from sdv_generate)")
    version: str = Field(default="latest", description="Model version (v0001, ...) or latest")
    num_rows: int | None = Field(default=None, ge=1, le=5_000_000, description="Rows to sample (one table)")
    scale: float = Field(
        default=1.0, gt=0, le=100, description="Size relative to the training data when num_rows is not given"
    )
    seed: int = Field(default=0, ge=0, description="Sampling seed (the generation seed reproduces the first sample)")


@server.tool(
    SdvSampleArgs, title="Sample more rows from a registered SDV synthesizer", read_only=False, data_model=SdvSampleData
)
def sdv_sample(args: SdvSampleArgs, ctx: ToolContext) -> ToolOutput:
    """Sample more synthetic rows from a registered SDV synthesizer into the run folder. Registered models hold
    only safe files (Parquet training data, JSON metadata and parameters, checksums verified): the synthesizer
    is refitted deterministically from them - nothing is unpickled."""
    from .sdv_pipeline import sample_registered

    with ctx.run.timed("sample"):
        model, synthetic, paths = sample_registered(
            args.model_name,
            ctx.run.dir,
            version=args.version,
            num_rows=args.num_rows,
            scale=args.scale,
            seed=args.seed,
            progress=ctx.progress,
        )
    for name, path in paths.items():
        ctx.run.add_artifact(
            path,
            "metadata" if name == "metadata" else "table",
            "SDV metadata" if name == "metadata" else f"synthetic table '{name}'",
        )
    from bms_schema.registry import ModelRegistry

    ctx.run.add_model(model.name, model.version, ModelRegistry().locate(model.name, model.version))
    rows = {n: int(len(f)) for n, f in synthetic.items()}
    return ToolOutput(
        message="sampled "
        + ", ".join(f"{r} rows of '{n}'" for n, r in rows.items())
        + f" from {model.name}/{model.version}",
        data={
            "model": {"name": model.name, "version": model.version, "synthesizer": model.spec.synthesizer},
            "rows": rows,
            "paths": {n: str(p) for n, p in paths.items()},
            "synthetic_folder": str(ctx.run.dir / "synthetic"),
        },
    )


class SdvEvaluateArgs(ToolArgs):
    folder_name: str = Field(description="The real data folder given to sdv_generate")
    synthetic_folder: str | None = Field(
        default=None, description="Folder of synthetic CSVs (default: the latest sdv_generate output for this folder)"
    )
    max_rows: int = Field(
        default=20_000, ge=100, le=1_000_000, description="Rows per table compared (single table; a seeded subsample)"
    )
    seed: int = Field(default=0, ge=0, description="Seed of the subsample")


@server.tool(
    SdvEvaluateArgs,
    title="Evaluate synthetic data (quality, diagnostic, privacy)",
    read_only=False,
    data_model=SdvEvaluateData,
    idempotent=True,
)
def sdv_evaluate(args: SdvEvaluateArgs, ctx: ToolContext) -> ToolOutput:
    """Compare synthetic tables with the real ones: SDV quality report (overall score, column shapes, column pair
    trends), diagnostic (validity, structure), and a privacy check: share of synthetic rows copying a real row and
    the distance to the closest real record compared with a real holdout. Saves evaluation.json."""
    from bms_schema import resolve_input
    from bms_schema.atomic import atomic_write_json

    from .sdv_pipeline import evaluate

    folder = resolve_input(args.folder_name, kind="folder")
    synthetic = resolve_input(args.synthetic_folder, kind="folder") if args.synthetic_folder else None
    with ctx.run.timed("evaluate"):
        report = evaluate(folder, synthetic, max_rows=args.max_rows, seed=args.seed, progress=ctx.progress)
    path = atomic_write_json(ctx.run.path("evaluation.json"), report)
    ctx.run.add_artifact(path, "report", "SDV quality + diagnostic reports and privacy check")
    quality = report["quality"]["overall_score"]
    copies = {n: p.get("copied_share") for n, p in report["privacy"].items()}
    return ToolOutput(
        message=f"quality score {quality:.3f}, diagnostic {report['diagnostic']['overall_score']:.3f}, "
        f"copied rows share {copies}",
        data={
            "overall_score": quality,
            "properties": {p["Property"]: p["Score"] for p in report["quality"]["properties"]},
            "diagnostic_score": report["diagnostic"]["overall_score"],
            "diagnostic_properties": {p["Property"]: p["Score"] for p in report["diagnostic"]["properties"]},
            "privacy": {n: {k: v for k, v in p.items() if k != "columns"} for n, p in report["privacy"].items()},
            "rows_compared": report["rows_compared"],
            "synthetic_folder": report["synthetic_folder"],
            "report_path": str(path),
        },
    )


class SdvVisualizeArgs(ToolArgs):
    folder_name: str = Field(description="The real data folder given to sdv_generate")
    table_name: str = Field(description="Table (CSV file name without .csv)")
    column_name: str = Field(description="Column to compare")
    synthetic_folder: str | None = Field(
        default=None, description="Folder of synthetic CSVs (default: the latest sdv_generate output for this folder)"
    )


@server.tool(
    SdvVisualizeArgs,
    title="Plot real vs synthetic for one column",
    read_only=False,
    idempotent=True,
    data_model=SdvVisualizeData,
)
def sdv_visualize(args: SdvVisualizeArgs, ctx: ToolContext) -> ToolOutput:
    """Real vs synthetic distribution of one column as a PNG (matplotlib) and an interactive HTML (plotly; plotly.js
    is shared once per run folder, not embedded in every file)."""
    import re

    from bms_schema import InputError, resolve_input

    from .sdv_pipeline import load_pair
    from .sdv_plots import PLOTLY_JS, ensure_plotly_js, plot_column

    folder = resolve_input(args.folder_name, kind="folder")
    synthetic_dir = resolve_input(args.synthetic_folder, kind="folder") if args.synthetic_folder else None
    real, synthetic, metadata, _ = load_pair(folder, synthetic_dir)
    if args.table_name not in real:
        raise InputError(f"table '{args.table_name}' not found: the folder has {', '.join(sorted(real))}")
    frame = real[args.table_name]
    if args.column_name not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise InputError(f"column '{args.column_name}' not found in table '{args.table_name}': columns are {shown}")
    if args.column_name not in synthetic[args.table_name].columns:
        raise InputError(f"column '{args.column_name}' is not in the synthetic table '{args.table_name}'")
    from .sdv_data import analysis_view

    sdtype = metadata.tables[args.table_name].columns.get(args.column_name, {}).get("sdtype")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{args.table_name}__{args.column_name}")
    png, html = ctx.run.path(f"{stem}.png"), ctx.run.path(f"{stem}.html")
    shared = ensure_plotly_js(ctx.run.run_dir)
    src = f"../{PLOTLY_JS}"
    summary = plot_column(
        analysis_view(frame)[args.column_name],
        analysis_view(synthetic[args.table_name])[args.column_name],
        sdtype,
        f"{args.table_name}.{args.column_name}: real vs synthetic",
        png,
        html,
        src,
    )
    ctx.run.add_artifact(png, "plot", f"real vs synthetic {args.table_name}.{args.column_name} (PNG)")
    ctx.run.add_artifact(html, "plot", f"real vs synthetic {args.table_name}.{args.column_name} (interactive HTML)")
    return ToolOutput(
        message=f"plotted {args.table_name}.{args.column_name} ({summary['kind']})",
        data={"png_path": str(png), "html_path": str(html), "plotly_js": str(shared), "sdtype": sdtype, **summary},
    )


def main() -> None:
    server.main()
