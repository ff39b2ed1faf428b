"""MCP layer of feature-three-failure-prediction-mcp: argument models and thin tool functions over the logic.

Heavy libraries (pandas, xgboost, scikit-learn, matplotlib) are imported inside the tool
functions so the server answers ``initialize`` and ``tools/list`` fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer

from .config import MODEL_NAME  # config imports nothing heavy

server = ToolServer(
    "feature-three-failure-prediction-mcp",
    packages=['pandas', 'numpy', 'scikit-learn', 'xgboost', 'matplotlib', 'mcp'],
    instructions='Which battery cells are likely to fail soon (XGBoost classifier).',
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
    data_path: str = Field(description="CSV or Parquet readings (raw BMS packets or a minimal/canonical table) "
                                        "in the workspace (IsDead labels optional: with them the model is also scored)")
    horizon_days: float = Field(default=7.0, description="Predict death within this many days (> 0)")
    model_version: str = Field(default="champion", description="Registered failure_classifier version: 'champion' "
                                                               "(default), 'challenger', 'latest' or like 'v0003'")
    anomaly_path: str | None = Field(default=None, description="Optional anomaly result table (CellID, Timestamp, "
                                                                "AnomalyFlag) to add anomaly-rate features")
    top_n: int = Field(default=10, ge=1, le=200, description="How many at-risk cells to list in the result")
    output_format: Literal["csv", "parquet"] = Field(default="csv", description="Format of the per-cell table")


class TrainArgs(ToolArgs):
    data_path: str = Field(description="CSV or Parquet readings with IsDead labels (1 from the moment a cell is dead)")
    horizon_days: float = Field(default=7.0, description="Label: does the cell die within this many days (> 0)")
    anomaly_path: str | None = Field(default=None, description="Optional anomaly result table for anomaly-rate features")
    seed: int = Field(default=0, description="Seed of the cell split and the booster")
    target_precision: float = Field(default=0.5, gt=0.0, lt=1.0,
                                    description="The alarm threshold is the lowest probability reaching this precision "
                                                "on the calibration cells")
    promote: bool = Field(default=False, description="Make the new version the champion even if its held-out PR-AUC "
                                                     "does not beat the current champion's on the same samples")


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
    report["path"] = str(path)
    report["fingerprint"] = ctx.run.manifest.inputs[0] if ctx.run.manifest.inputs else None
    return frame, anomalies, report


def _training_data(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("path", "fingerprint", "input_format", "rows_out", "cells", "devices", "time_range")
    return {k: report.get(k) for k in keys}


def _progress(ctx: ToolContext) -> Any:
    return lambda fraction, message: ctx.progress(fraction, message)


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    model, rule = metrics.get("model", {}), metrics.get("baseline_rule", {})
    return {
        "roc_auc": model.get("roc_auc"), "pr_auc": model.get("pr_auc"), "brier": model.get("brier"),
        "recall_at_precision_0.8": model.get("recall_at_precision_0.8"),
        "lead_time_hours_median": model.get("lead_time", {}).get("lead_time_hours_median"),
        "rule_roc_auc": rule.get("roc_auc"), "rule_pr_auc": rule.get("pr_auc"),
        "rule_recall": rule.get("at_rule", {}).get("recall"), "rule_precision": rule.get("at_rule", {}).get("precision"),
        "test_samples": model.get("samples"), "test_positives": model.get("positives"),
    }


@server.tool(PredictArgs, title="Predict which cells will fail", read_only=False)
def predict_cell_failure(args: PredictArgs, ctx: ToolContext) -> ToolOutput:
    """For every cell, the calibrated probability that it is dead within horizon_days, as of the last reading.

    Uses the champion failure_classifier (or model_version); it never trains: with no model registered,
    call train_failure_model first (needs IsDead labels with some deaths). Writes the per-cell
    table (DeviceID, CellNumber, CellID, FailureProbability, RiskBand, AlreadyDead, TopReasons) sorted by
    risk, a metrics JSON and PNGs (risk ranking, what drives risk). Cells already dead are reported dead.
    """
    from bms_schema import write_table
    from bms_schema.atomic import atomic_write_json

    from . import plots
    from .api import band_counts, dead_cells, mean_contributions, predict_failure, top_at_risk

    frame, anomalies, report = _inputs(args, ctx)
    ctx.progress(0.05, f"loaded {len(frame)} readings of {report.get('cells')} cells")
    with ctx.run.timed("predict"):
        outcome = predict_failure(frame, args.horizon_days, model_version=args.model_version,
                                  anomalies=anomalies, progress=_progress(ctx))
    model, table = outcome.model, outcome.table
    ctx.run.add_model(MODEL_NAME, str(model.version), str(model.directory))

    table_path = write_table(table, ctx.run.path(f"failure_predictions.{args.output_format}"))
    ctx.run.add_artifact(table_path, "table", "per-cell failure probability, risk band, dead flag and top reasons")
    with ctx.run.timed("plots"):
        ranking = plots.risk_ranking(table, model.alarm_threshold, ctx.run.path("risk_ranking.png"))
        ctx.run.add_artifact(ranking, "plot", "cells ranked by failure probability")
        drivers = mean_contributions(model, table, outcome.grid.last_rows())
        driver_png = plots.risk_drivers(drivers, model.config, ctx.run.path("risk_drivers.png"))
        ctx.run.add_artifact(driver_png, "plot", "what drives failure risk (XGBoost contributions)")
        if outcome.trained is not None:
            curve = plots.model_vs_rule(outcome.trained.evaluation, ctx.run.path("model_vs_rule.png"))
            if curve is not None:
                ctx.run.add_artifact(curve, "plot", "precision-recall of the model vs the IEEE 450 style rule")

    training_metrics = outcome.trained.metrics if outcome.trained else model.metadata.get("metrics", {})
    top = top_at_risk(table, args.top_n)
    failing = table.loc[table["RiskBand"] == "high", "CellID"].astype(str).tolist()
    dead = dead_cells(table)
    metrics = {
        "horizon_days": args.horizon_days,
        "as_of": table["AsOf"].iloc[0] if len(table) else None,
        "model": {"name": MODEL_NAME, "version": model.version, "trained_now": outcome.trained is not None,
                  "alarm_threshold": model.alarm_threshold, "calibration": model.calibrator.method},
        "input": report,
        "risk_bands": band_counts(table),
        "failing_cell_ids": failing,
        "dead_cell_ids": dead,
        "top_at_risk": top,
        "training_validation": training_metrics,
        "evaluation_on_input": outcome.input_evaluation,
        "notes": outcome.notes,
    }
    metrics_path = atomic_write_json(ctx.run.path("failure_metrics.json"), metrics)
    ctx.run.add_artifact(metrics_path, "report", "failure prediction metrics (validation, baseline rule, bands)")
    unknown = int((table["RiskBand"] == "unknown").sum())
    message = (f"{len(failing)} of {len(table)} cells at high risk of dying within {args.horizon_days:g} days, "
               f"{len(dead)} already dead (model {model.version}"
               f"{', trained now' if outcome.trained else ''})"
               + (f"; {'; '.join(n for n in outcome.notes if 'unknown' in n)}" if unknown else ""))
    return ToolOutput(message=message, data={
        "horizon_days": args.horizon_days,
        "as_of": metrics["as_of"],
        "cells": int(len(table)),
        "failing_cell_ids": failing[: args.top_n],
        "top_at_risk": top,
        "dead_cells": len(dead),
        "dead_cell_ids": dead[:50],
        "risk_bands": metrics["risk_bands"],
        "model": metrics["model"],
        "validation": _headline(training_metrics),
        "table_path": str(table_path),
        "metrics_path": str(metrics_path),
    })


@server.tool(TrainArgs, title="Train the failure model", read_only=False, destructive=True)
def train_failure_model(args: TrainArgs, ctx: ToolContext) -> ToolOutput:
    """Train, validate (split by cell and by time, no leakage), calibrate and register failure_classifier.

    Needs IsDead labels with some deaths. Reports ROC-AUC, PR-AUC, recall at fixed precision, Brier score
    and lead time on held-out cells in a later period, next to an IEEE 450 style rule (float voltage < 2.13 V
    or SG more than 0.025 below the string mean). Registers a candidate: it becomes the champion (what
    predict_cell_failure and the live service use) only when its held-out PR-AUC beats the champion's on the
    same samples, when it is the first model, or with promote=true.
    """
    from bms_schema.atomic import atomic_write_json

    from . import plots
    from .api import train_and_register

    frame, anomalies, report = _inputs(args, ctx)
    with ctx.run.timed("train"):
        result = train_and_register(frame, args.horizon_days, anomalies, seed=args.seed,
                                    target_precision=args.target_precision,
                                    extra_metadata=_training_data(report), progress=_progress(ctx),
                                    promote=args.promote)
    model = result.model
    decision = model.decision or {}
    ctx.run.add_model(MODEL_NAME, str(model.version), str(model.directory))
    metrics = {"model": {"name": MODEL_NAME, "version": model.version}, "input": report, **result.metrics}
    metrics_path = atomic_write_json(ctx.run.path("failure_training_metrics.json"), metrics)
    ctx.run.add_artifact(metrics_path, "report", "validation metrics of the failure model vs the baseline rule")
    curve = plots.model_vs_rule(result.evaluation, ctx.run.path("model_vs_rule.png"))
    if curve is not None:
        ctx.run.add_artifact(curve, "plot", "precision-recall of the model vs the IEEE 450 style rule")
    import pandas as pd

    importance = pd.DataFrame({"feature": list(result.importance), "mean_abs_all": list(result.importance.values())})
    drivers = plots.risk_drivers(importance, model.config, ctx.run.path("feature_importance.png"))
    ctx.run.add_artifact(drivers, "plot", "mean |XGBoost contribution| per feature on the test samples")
    headline = _headline(result.metrics)
    return ToolOutput(
        message=(f"registered {MODEL_NAME} {model.version} ({args.horizon_days:g}-day horizon) as "
                 f"{decision.get('alias')}: test ROC-AUC "
                 f"{_fmt(headline['roc_auc'])}, PR-AUC {_fmt(headline['pr_auc'])} vs rule "
                 f"{_fmt(headline['rule_roc_auc'])}/{_fmt(headline['rule_pr_auc'])}; {decision.get('reason')}"),
        data={"model": {"name": MODEL_NAME, "version": model.version, "alarm_threshold": model.alarm_threshold},
              "alias": decision.get("alias"), "promoted": decision.get("promoted"), "decision": decision,
              "horizon_days": args.horizon_days, "validation": headline,
              "split_time": result.metrics["split_time"], "cells": result.metrics["cells"],
              "metrics_path": str(metrics_path)},
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    server.main()
