"""MCP layer of data-generator-mcp: argument models and thin tool functions over the logic.

Heavy libraries (scipy, sdv, matplotlib, plotly) are imported inside the tool functions so the
server answers ``initialize`` + ``tools/list`` quickly.
"""

from __future__ import annotations

from pydantic import Field

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer

server = ToolServer(
    "data-generator-mcp",
    packages=['pandas', 'numpy', 'sdv', 'matplotlib', 'plotly', 'mcp'],
    instructions='Simulate realistic lead-acid battery fleets (with ground truth) and generate/evaluate/visualise SDV synthetic data.',
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
    dropout_rate: float = Field(default=0.19, ge=0, le=0.9,
                                description="Share of rows with 0xFFFF sensor dropouts (the real sample has 19.5 %)")
    duplicate_rate: float = Field(default=0.005, ge=0, le=0.9, description="Share of packets sent twice")
    out_of_order_rate: float = Field(default=0.01, ge=0, le=0.9, description="Share of packets delivered late")
    missing_rate: float = Field(default=0.002, ge=0, le=0.9, description="Share of rows with one empty measurement")
    start: str = Field(default="2025-01-01T00:00:00Z", description="First packet time (ISO 8601, UTC)")
    discharge_every_days: float = Field(default=4.0, gt=0, le=3650,
                                        description="Mean days between mains outages (discharge events)")
    file_name: str = Field(default="bms_fleet.csv", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.csv$",
                           description="Name of the packet CSV written into the run folder")


@server.tool(SimulateFleetArgs, title="Simulate a BMS fleet", read_only=False, idempotent=True)
def simulate_bms_fleet(args: SimulateFleetArgs, ctx: ToolContext) -> ToolOutput:
    """Simulate lead-acid battery strings on float service and write raw 73-column BMS packets (CSV) with
    ground-truth labels (IsDead, IsAnomaly, AnomalyType) plus a per-cell ground-truth table (fate, failure
    mode, death time) into the run folder. Physics: float voltage 2.20-2.27 V, SG 1.200-1.240, OCV = SG + 0.84,
    daily ambient cycle, I^2R heating, mains-outage discharges and recharges; failures by sulfation, dry-out or
    internal short with days of precursor drift; real telemetry mess (0xFFFF dropouts, empty fields,
    duplicate and late packets). Same seed -> byte-identical file."""
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
    with ctx.run.timed("write"):
        write_simulation(sim, readings_path, truth_path)
    ctx.run.add_artifact(readings_path, "table", "simulated raw BMS packets (73 columns + IsDead, IsAnomaly, AnomalyType)")
    ctx.run.add_artifact(truth_path, "table", "per-cell ground truth: fate, failure mode, precursor start, death time")
    summary = sim.summary
    message = (f"simulated {summary['rows']:,} rows: {summary['devices']} devices x "
               f"{config.cells_per_device} cells x {summary['readings_per_cell']} readings; "
               f"{summary['failed_cells']} cells fail, {summary['anomaly_rows']} anomaly rows, "
               f"{summary['dropout_rows']} dropout rows")
    return ToolOutput(message=message, data={"path": str(readings_path), "ground_truth_path": str(truth_path),
                                             **summary})


def main() -> None:
    server.run_stdio()
