"""MCP layer of feature-three-failure-prediction-mcp: argument models and thin tool functions over the logic.

Heavy libraries (pandas, xgboost, scikit-learn, matplotlib) are imported inside the tool
functions so the server answers ``initialize`` and ``tools/list`` fast.
"""

from __future__ import annotations

from typing import Any, Literal

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from pydantic import Field

from .config import MODEL_NAME  # config imports nothing heavy
from .tool_data import PredictFailureData, TrainFailureData

server = ToolServer(
    "feature-three-failure-prediction-mcp",
    packages=["pandas", "numpy", "scikit-learn", "xgboost", "matplotlib", "mcp"],
    instructions="Which battery cells will fail, when (remaining life p10/p50/p90) and what to do (XGBoost survival model).",
)


def _health_extra() -> dict[str, Any]:
    """Which horizons the registered versions predict (reads metadata only; nothing heavy)."""
    from bms_schema import ModelError, ModelRegistry

    registry = ModelRegistry()
    horizons: dict[str, str] = {}
    for version in registry.versions(MODEL_NAME):
        try:
            meta = registry.metadata(MODEL_NAME, version)
        except ModelError:
            continue
        horizons[f"{float(meta.get('horizon_days', 0)):g}"] = version  # newest version per horizon wins
    return {"failure_horizons_days": horizons}


server.add_health_check(models=[MODEL_NAME], extra=_health_extra)


class PredictArgs(ToolArgs):
    data_path: str = Field(
        description="CSV or Parquet readings, a file or a partitioned dataset folder (raw BMS packets or a minimal/canonical table) "
        "in the workspace; no labels needed"
    )
    horizon_days: float = Field(
        default=7.0,
        description="FailureProbability is the chance of death within this "
        "many days (> 0); 7, 14 and 30 days are always reported too",
    )
    model_version: str = Field(
        default="champion",
        description="Registered failure_classifier version: 'champion' "
        "(default), 'challenger', 'latest' or e.g. 'v0003'",
    )
    anomaly_path: str | None = Field(
        default=None,
        description="Optional anomaly result table (CellID, Timestamp, AnomalyFlag) to add anomaly-rate features",
    )
    top_n: int = Field(default=10, ge=1, le=200, description="How many at-risk cells to list in the result")
    output_format: Literal["csv", "parquet"] = Field(default="csv", description="Format of the per-cell table")


class TrainArgs(ToolArgs):
    data_path: str = Field(
        description="CSV or Parquet readings (file or dataset folder) with IsDead labels (1 from the moment a cell is "
        "dead), e.g. a simulated fleet"
    )
    horizon_days: float = Field(
        default=7.0, description="Default horizon of FailureProbability (> 0); the survival model answers any horizon"
    )
    anomaly_path: str | None = Field(
        default=None, description="Optional anomaly result table for anomaly-rate features"
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the cell split and the booster")
    promote: bool = Field(
        default=False,
        description="Make the new version champion even if it does not beat the current champion on the held-out cells",
    )
    prior_path: str | None = Field(
        default=None,
        description="Optional labelled fleet (CSV/Parquet with IsDead, e.g. a simulated fleet from the data "
        "generator) pooled into training as a prior when the fleet itself holds few deaths; calibration, "
        "the alarm threshold and every metric stay on data_path's cells",
    )
    prior_weight: float = Field(
        default=1.0, gt=0, le=100, description="Weight of each prior sample relative to one of data_path's"
    )


def _inputs(args: Any, ctx: ToolContext) -> tuple[Any, Any, dict[str, Any]]:
    from bms_schema import resolve_input

    from .api import load_anomalies, load_readings_frame

    path = resolve_input(args.data_path)
    ctx.run.add_input(path)
    anomalies = None
    if args.anomaly_path:
        anomaly_path = resolve_input(args.anomaly_path)
        ctx.run.add_input(anomaly_path)
        anomalies = load_anomalies(anomaly_path)
    with ctx.run.timed("load"):
        frame, report = load_readings_frame(path)
    from bms_schema.coverage import dropped_rows_warning

    ctx.warn(
        dropped_rows_warning(path, int(report.get("rows_in") or 0), int(report.get("conflicting_rows_dropped") or 0))
    )
    report["path"] = str(path)
    report["fingerprint"] = ctx.run.manifest.inputs[0] if ctx.run.manifest.inputs else None
    return frame, anomalies, report


def _training_data(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("path", "fingerprint", "input_format", "rows_out", "cells", "devices", "time_range")
    return {k: report.get(k) for k in keys}


def _progress(ctx: ToolContext) -> Any:
    return lambda fraction, message: ctx.progress(fraction, message)


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Out-of-fold figures per horizon: model vs the best IEEE rule, remaining life, alarms."""
    out: dict[str, Any] = {}
    for key, entry in (metrics.get("horizons") or {}).items():
        out[f"roc_auc_{key}"] = entry.get("model_roc_auc")
        out[f"best_rule_roc_auc_{key}"] = entry.get("best_rule_roc_auc")
        out[f"best_rule_{key}"] = entry.get("best_rule")
        out[f"top_2k_recall_{key}"] = entry.get("model_top_2k_recall")
    life = metrics.get("remaining_life") or {}
    out["rul_median_relative_error"] = life.get("median_relative_error")
    out["rul_p10_p90_coverage"] = life.get("p10_p90_coverage")
    alarms = metrics.get("alarms") or {}
    out["surviving_cells_alarmed_per_month"] = alarms.get("surviving_cells_alarmed_per_month")
    out["alarm_lead_time_hours_median"] = (alarms.get("lead_time") or {}).get("lead_time_hours_median")
    return out


@server.tool(PredictArgs, title="Predict which cells will fail", read_only=False, data_model=PredictFailureData)
def predict_cell_failure(args: PredictArgs, ctx: ToolContext) -> ToolOutput:
    """Per cell, as of the last reading: probability of death within horizon_days (and 7/14/30 days), remaining
    useful life p10/p50/p90 in days, state of health, alarm with its trigger, lead time and recommended action
    (equalize, re-test, replace in IEEE 450/1188 wording), and the physics trend-to-threshold estimate beside it.

    Uses the registered failure_classifier (champion by default); it never trains - train one with
    train_failure_model. No labels needed. Cells without recent voltage/temperature readings are 'unknown'.
    Writes the per-cell table sorted by risk, a metrics JSON and PNGs (risk ranking, what drives risk).
    """
    from bms_schema import write_table
    from bms_schema.atomic import atomic_write_json

    from . import plots
    from .api import alarms, band_counts, dead_cells, mean_contributions, predict_failure, top_at_risk

    frame, anomalies, report = _inputs(args, ctx)
    ctx.progress(0.05, f"loaded {len(frame)} readings of {report.get('cells')} cells")
    with ctx.run.timed("predict"):
        outcome = predict_failure(
            frame, args.horizon_days, model_version=args.model_version, anomalies=anomalies, progress=_progress(ctx)
        )
    model, table = outcome.model, outcome.table
    ctx.run.add_model(MODEL_NAME, str(model.version), str(model.directory))

    table_path = write_table(table, ctx.run.path(f"failure_predictions.{args.output_format}"))
    ctx.run.add_artifact(
        table_path,
        "table",
        "per-cell failure probability, remaining life, health, alarm, trend-to-threshold and reasons",
    )
    with ctx.run.timed("plots"):
        ranking = plots.risk_ranking(table, model.alarm_threshold, ctx.run.path("risk_ranking.png"))
        ctx.run.add_artifact(ranking, "plot", "cells ranked by failure probability")
        drivers = mean_contributions(model, table, outcome.grid.last_rows())
        driver_png = plots.risk_drivers(drivers, model.config, ctx.run.path("risk_drivers.png"))
        ctx.run.add_artifact(driver_png, "plot", "what shortens remaining life (XGBoost contributions)")

    training_metrics = model.metadata.get("metrics", {})
    top = top_at_risk(table, args.top_n)
    alarmed = alarms(table)
    failing = table.loc[table["RiskBand"] == "high", "CellID"].astype(str).tolist()
    unknown = table.loc[table["RiskBand"] == "unknown", "CellID"].astype(str).tolist()
    dead = dead_cells(table)
    metrics = {
        "horizon_days": args.horizon_days,
        "as_of": table["AsOf"].iloc[0] if len(table) else None,
        "model": {
            "name": MODEL_NAME,
            "version": model.version,
            "alarm_threshold": model.alarm_threshold,
            "alarm_horizon_days": model.alarm_horizon_days,
            "max_horizon_days": model.max_horizon_days,
            "distribution": model.distribution.to_dict(),
        },
        "input": report,
        "risk_bands": band_counts(table),
        "alarms": alarmed,
        "failing_cell_ids": failing,
        "unknown_cell_ids": unknown,
        "dead_cell_ids": dead,
        "top_at_risk": top,
        "training_validation": training_metrics,
        "evaluation_on_input": outcome.input_evaluation,
        "notes": outcome.notes,
    }
    metrics_path = atomic_write_json(ctx.run.path("failure_metrics.json"), metrics)
    ctx.run.add_artifact(metrics_path, "report", "failure prediction metrics (validation vs IEEE rules, alarms, bands)")
    message = (
        f"{len(failing)} of {len(table)} cells alarmed (death within {model.alarm_horizon_days:g} days likely), "
        f"{len(dead)} already dead, {len(unknown)} unknown (missing inputs); FailureProbability at "
        f"{args.horizon_days:g} days (model {model.version})"
        + (f"; {'; '.join(n for n in outcome.notes if 'unknown' in n)}" if unknown else "")
    )
    return ToolOutput(
        message=message,
        data={
            "horizon_days": args.horizon_days,
            "as_of": metrics["as_of"],
            "cells": int(len(table)),
            "failing_cell_ids": failing[: args.top_n],
            "alarms": alarmed[: args.top_n],
            "top_at_risk": top,
            "dead_cells": len(dead),
            "dead_cell_ids": dead[:50],
            "unknown_cell_ids": unknown[:50],
            "risk_bands": metrics["risk_bands"],
            "model": metrics["model"],
            "validation": _headline(training_metrics),
            "table_path": str(table_path),
            "metrics_path": str(metrics_path),
        },
    )


@server.tool(TrainArgs, title="Train the failure model", read_only=False, data_model=TrainFailureData, destructive=True)
def train_failure_model(args: TrainArgs, ctx: ToolContext) -> ToolOutput:
    """Train, validate (split by cell and by time, no leakage) and register a failure_classifier candidate: one
    survival model (discrete-time hazard, XGBoost) giving death probability at any horizon and remaining life p10/p50/p90.

    Needs IsDead labels with some deaths (e.g. a simulated fleet); cells alive at the end are censored. The new
    version becomes champion only if it beats the champion on its held-out cells (or promote=true). Reports
    ROC-AUC at 7/14/30 days next to the IEEE 450 voltage/SG rules and the IEEE 1188 ohmic rule, remaining-life
    error and p10-p90 coverage, and the monthly alarm share of surviving cells.
    """
    from bms_schema import resolve_input
    from bms_schema.atomic import atomic_write_json

    from . import plots
    from .api import train_and_register

    prior_path = resolve_input(args.prior_path) if args.prior_path else None  # refused before any loading
    frame, anomalies, report = _inputs(args, ctx)
    prior = None
    extra = _training_data(report)
    if prior_path is not None:
        from .api import load_readings_frame

        ctx.run.add_input(prior_path)
        with ctx.run.timed("load_prior"):
            prior, _ = load_readings_frame(prior_path)
        extra["prior"] = {"path": str(prior_path), "weight": args.prior_weight}
    with ctx.run.timed("train"):
        outcome = train_and_register(
            frame,
            args.horizon_days,
            anomalies,
            seed=args.seed,
            promote=args.promote,
            extra_metadata=extra,
            progress=_progress(ctx),
            prior=prior,
            prior_weight=args.prior_weight,
        )
    result, registered = outcome.result, outcome.registered
    model = result.model
    ctx.run.add_model(MODEL_NAME, str(model.version), str(model.directory))
    metrics = {
        "model": {"name": MODEL_NAME, "version": model.version},
        "registration": registered.summary(),
        "input": report,
        **result.metrics,
    }
    metrics_path = atomic_write_json(ctx.run.path("failure_training_metrics.json"), metrics)
    ctx.run.add_artifact(metrics_path, "report", "validation metrics of the failure model vs the IEEE rules")
    curve = plots.model_vs_rule(result.evaluation, ctx.run.path("model_vs_rule.png"))
    if curve is not None:
        ctx.run.add_artifact(curve, "plot", "ROC of the model vs the IEEE rules (held-out cells, 14 days)")
    import pandas as pd

    importance = pd.DataFrame({"feature": list(result.importance), "mean_abs_all": list(result.importance.values())})
    drivers = plots.risk_drivers(importance, model.config, ctx.run.path("feature_importance.png"))
    ctx.run.add_artifact(drivers, "plot", "mean |XGBoost contribution| per feature on the test samples")
    headline = _headline(result.metrics)
    return ToolOutput(
        message=(
            f"registered {MODEL_NAME} {model.version} as {registered.alias} ({registered.decision.get('reason')}); "
            f"held-out ROC-AUC at 14 days {_fmt(headline.get('roc_auc_14d'))} vs best IEEE rule "
            f"{_fmt(headline.get('best_rule_roc_auc_14d'))}, at 30 days {_fmt(headline.get('roc_auc_30d'))} vs "
            f"{_fmt(headline.get('best_rule_roc_auc_30d'))}"
        ),
        data={
            "model": {
                "name": MODEL_NAME,
                "version": model.version,
                "alias": registered.alias,
                "alarm_threshold": model.alarm_threshold,
            },
            "registration": registered.summary(),
            "horizon_days": args.horizon_days,
            "validation": headline,
            "split_time": result.metrics.get("split_time"),
            "cells": result.metrics["cells"],
            "metrics_path": str(metrics_path),
        },
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    server.main()
