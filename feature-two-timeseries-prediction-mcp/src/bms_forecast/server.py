"""MCP layer of feature-two-timeseries-prediction-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

import re
from typing import Literal

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from pydantic import Field

# Only light modules here: xgboost, pandas-heavy logic and matplotlib load inside the tools.
from .config import DEFAULT_COVERAGE, DEFAULT_MAX_STEPS, DEFAULT_STEPS, MAX_STEPS_LIMIT, MODEL_NAME, TrainConfig
from .tool_data import PredictForecastData, TrainForecastData

server = ToolServer(
    "feature-two-timeseries-prediction-mcp",
    packages=["pandas", "numpy", "xgboost", "matplotlib", "mcp"],
    instructions="Per-cell multi-parameter forecasts of BMS readings (global XGBoost models).",
)
server.add_health_check(models=[MODEL_NAME])


def _safe_name(cell_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", cell_id)


class TrainArgs(ToolArgs):
    data_path: str = Field(
        description="CSV or Parquet readings file or partitioned dataset folder (raw packets or minimal table) in the workspace"
    )
    max_steps: int = Field(
        default=DEFAULT_MAX_STEPS, description=f"Longest horizon (readings) the model serves, 1..{MAX_STEPS_LIMIT}"
    )
    holdout_fraction: float = Field(
        default=0.15,
        description="Share of each cell's history for calibration, and again for the test backtest (0.05..0.3)",
    )
    strategy: Literal["auto", "direct", "recursive"] = Field(
        default="auto",
        description="'auto' trains both and uses, per parameter, recursive for the first steps and direct after, switching where the calibration backtest says",
    )
    max_train_pairs: int = Field(
        default=TrainConfig.max_train_pairs,
        description="Training examples sampled per parameter (speed vs accuracy), at least 1000",
    )
    promote: bool = Field(
        default=False,
        description="Make the new version the champion even if it does not beat the current one on the held-out data",
    )


@server.tool(TrainArgs, title="Train the forecaster", read_only=False, data_model=TrainForecastData, destructive=True)
def train_forecaster(args: TrainArgs, ctx: ToolContext) -> ToolOutput:
    """Train one global XGBoost model per parameter (CellVoltage, CellTemperature, CellSpecificGravity,
    InstantaneousCurrent, AmbientTemperature - those present) on every cell's history, backtest it
    with rolling origins against last-value and daily seasonal naive forecasts, calibrate 80% conformal
    intervals, and register it as a candidate version of the 'forecaster' model. The candidate and the
    current champion are scored on the same held-out window (mean MASE over parameters); the candidate
    becomes champion (what predict tools and the live service use) only if it is better, or with
    promote=true. Writes the full backtest JSON."""
    from bms_schema import resolve_input
    from bms_schema.atomic import atomic_write_json
    from bms_schema.runs import fingerprint

    from .service import load_history, train_and_register

    path = resolve_input(args.data_path)
    ctx.run.add_input(path)
    config = TrainConfig(
        max_steps=args.max_steps,
        holdout_fraction=args.holdout_fraction,
        strategy=args.strategy,
        max_train_pairs=args.max_train_pairs,
    ).validate()
    with ctx.run.timed("load"):
        frame = load_history(path)
    ctx.progress(0.05, f"loaded {len(frame)} readings")
    with ctx.run.timed("train"):
        forecaster, report, version, folder = train_and_register(
            frame,
            config,
            progress=lambda f, m: ctx.progress(0.05 + 0.9 * f, m),
            extra={"source": fingerprint(path)},
            promote=args.promote,
        )
    decision = forecaster.metadata.get("decision", {})
    ctx.run.add_model(MODEL_NAME, version, folder)
    backtest = ctx.run.add_artifact(
        atomic_write_json(ctx.run.path("forecast_backtest.json"), report),
        "metrics",
        "rolling-origin backtest per parameter and horizon, strategy choice, coverage",
    )
    targets = {
        t: {
            "strategy": m["strategy"],
            "coverage": m["coverage"],
            "mae_mean": m["summary"]["model"]["mae_mean"],
            "naive_last_mae_mean": m["summary"]["naive_last"]["mae_mean"],
            "naive_seasonal_mae_mean": m["summary"]["naive_seasonal"]["mae_mean"],
        }
        for t, m in report["metrics"].items()
    }
    return ToolOutput(
        message=f"registered {MODEL_NAME}/{version} as {decision.get('alias')}: {len(targets)} parameters from "
        f"{report['training_data']['cells']} cells; {decision.get('reason')}",
        data={
            "model": MODEL_NAME,
            "version": version,
            "model_dir": str(folder),
            "targets": targets,
            "alias": decision.get("alias"),
            "promoted": decision.get("promoted"),
            "decision": decision,
            "skipped_targets": report["skipped_targets"],
            "backtest_path": str(backtest),
            "timings": report["timings"],
        },
    )


class PredictArgs(ToolArgs):
    data_path: str = Field(
        description="CSV or Parquet readings file or dataset folder holding the cell's history (and its string's)"
    )
    cell_id: str = Field(
        description="Canonical cell id '<DeviceID>-<CellNumber>', or a bare cell number when only one device has it"
    )
    steps: int = Field(
        default=DEFAULT_STEPS,
        description=f"Future readings to forecast: 1..max_steps of the model ({DEFAULT_MAX_STEPS} by default, never above {MAX_STEPS_LIMIT})",
    )
    coverage: float = Field(
        default=DEFAULT_COVERAGE, description="Central interval coverage, 0.5..0.98 (0.8 = 80% interval)"
    )
    model_version: str = Field(
        default="champion",
        description="Registered forecaster version: 'champion' (default), 'challenger', 'latest' or like 'v0003'",
    )
    output_format: Literal["csv", "parquet"] = Field(default="csv", description="File format of the forecast table")


@server.tool(PredictArgs, title="Forecast a cell's readings", read_only=False, data_model=PredictForecastData)
def predict_cell_timeseries(args: PredictArgs, ctx: ToolContext) -> ToolOutput:
    """Forecast the next `steps` readings of one cell for every parameter present (CellVoltage,
    CellTemperature, CellSpecificGravity, InstantaneousCurrent, AmbientTemperature) with the registered
    forecaster (the champion unless model_version says otherwise; it never trains: with no forecaster
    registered, call train_forecaster first). Writes the long table `Timestamp, Target, Step, Forecast, Lower, Upper`, a metrics JSON
    (backtest quality vs naive forecasts) and a PNG of history, forecast and interval per parameter."""
    from bms_schema import resolve_input, write_table
    from bms_schema.atomic import atomic_write_json

    from .plotting import plot_forecast
    from .service import check_steps, forecast_cell, forecast_summary, load_history

    steps = check_steps(args.steps)
    path = resolve_input(args.data_path)
    ctx.run.add_input(path)
    with ctx.run.timed("load"):
        frame = load_history(path)
    ctx.progress(0.1, f"loaded {len(frame)} readings")
    with ctx.run.timed("forecast"):
        result = forecast_cell(
            frame,
            args.cell_id,
            steps,
            args.coverage,
            args.model_version,
            progress=lambda f, m: ctx.progress(0.1 + 0.7 * f, m),
        )
    name = _safe_name(result.cell_id)
    table_path = ctx.run.add_artifact(
        write_table(result.table, ctx.run.path(f"forecast_{name}.{args.output_format}")),
        "table",
        f"{steps}-step forecast of cell {result.cell_id} (long form)",
    )
    summary = forecast_summary(result, steps, args.coverage)
    metrics_path = ctx.run.add_artifact(
        atomic_write_json(ctx.run.path(f"forecast_{name}_metrics.json"), summary),
        "metrics",
        "forecast summary and the model's backtest quality vs naive",
    )
    ctx.progress(0.9, "plotting")
    with ctx.run.timed("plot"):
        plot_path = ctx.run.add_artifact(
            plot_forecast(
                result.history, result.table, result.cell_id, ctx.run.path(f"forecast_{name}.png"), args.coverage
            ),
            "plot",
            "history, forecast and interval per parameter",
        )
    from bms_schema.registry import ModelRegistry

    ctx.run.add_model(
        MODEL_NAME, str(result.forecaster.version), ModelRegistry().locate(MODEL_NAME, str(result.forecaster.version))
    )
    targets = list(dict.fromkeys(result.table["Target"]))
    return ToolOutput(
        message=f"forecast {steps} steps of cell {result.cell_id} for {len(targets)} parameters with "
        f"{MODEL_NAME}/{result.forecaster.version}",
        data={
            "cell_id": result.cell_id,
            "steps": steps,
            "targets": targets,
            "rows": int(len(result.table)),
            "model_version": result.forecaster.version,
            "trained_now": result.trained,
            "forecast_path": str(table_path),
            "metrics_path": str(metrics_path),
            "plot_path": str(plot_path),
            "first_step": {
                t: float(
                    result.table.loc[(result.table["Target"] == t) & (result.table["Step"] == 1), "Forecast"].iloc[0]
                )
                for t in targets
            },
        },
    )


def main() -> None:
    # run_stdio() -> bms_schema.runtime.limit_threads() sets OMP_WAIT_POLICY=PASSIVE before xgboost loads.
    server.main()
