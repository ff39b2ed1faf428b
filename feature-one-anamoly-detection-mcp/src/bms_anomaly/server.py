"""MCP layer of feature-one-anamoly-detection-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

from typing import Literal

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from pydantic import Field, field_validator

from .tool_data import DetectData, TrainAnomalyData, Visualize3DData

server = ToolServer(
    "feature-one-anamoly-detection-mcp",
    packages=["pandas", "numpy", "scikit-learn", "torch", "skops", "matplotlib", "plotly", "mcp"],
    instructions="Hybrid anomaly detection on BMS readings (Isolation Forest + one-class SVM + VAE).",
)
server.add_health_check(models=["anomaly_hybrid"])


class TrainArgs(ToolArgs):
    data_path: str = Field(
        description="CSV or Parquet readings (a file or a partitioned dataset folder) in the workspace: raw BMS packets, a minimal table, "
        "or the preprocessing output (cleaned + features)"
    )
    contamination: float | Literal["auto"] | None = Field(
        default=None,
        description="expected share of anomalous readings (0-0.5) setting the threshold, or 'auto' "
        "(Tukey fence Q3 + 3 IQR of the fused training scores, the default)",
    )
    features: list[str] | None = Field(
        default=None,
        description="feature columns to train on (default, or "
        "omitted: the domain features present; an empty "
        "list is refused)",
    )

    @field_validator("features")
    @classmethod
    def _features_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) == 0:
            raise ValueError(
                "features=[] selects no feature at all: omit it to use the default domain features, "
                "or name at least one column"
            )
        return value

    holdout_fraction: float = Field(
        default=0.3,
        ge=0.0,
        lt=0.9,
        description="latest share of the time span kept out of training; the new model "
        "and the champion are both scored on it (F1 against IsAnomaly)",
    )
    seed: int = Field(default=0, ge=0, description="random seed (same data + seed = same model)")
    promote: bool = Field(
        default=False,
        description="make the new version the champion even if it does not beat "
        "the current champion on the held-out readings",
    )
    prior_path: str | None = Field(
        default=None,
        description="readings of another fleet of the same chemistry (e.g. simulate_bms_fleet, one string of 24 "
        "cells, as the pipeline simulates) to train on together with data_path's earlier readings: for a small "
        "fleet (the pipeline does it under 100,000 readings) whose own readings are too few to learn normal "
        "behaviour from; the held-out readings stay data_path's. "
        "Refused for strings of fewer than 3 cells and when one has specific gravity and the other not",
    )


@server.tool(
    TrainArgs, title="Train the hybrid anomaly detector", read_only=False, destructive=True, data_model=TrainAnomalyData
)
def train_anomaly_detector(args: TrainArgs, ctx: ToolContext) -> ToolOutput:
    """Train the hybrid anomaly detector (Isolation Forest + one-class SVM + VAE) and register it.

    Trains on the earlier readings, holds out the latest share of the time span, and registers
    the model as a candidate version of anomaly_hybrid. The candidate and the current champion
    are both scored on the held-out readings (hybrid F1 against IsAnomaly); the candidate becomes
    the champion (what detect_anomalies and the live service use) only when it is better, when
    it is the first model, or with promote=true. Without IsAnomaly labels there is no F1 and a
    later model never replaces the champion automatically. Writes a metrics JSON.
    """
    from bms_schema import read_table, resolve_input
    from bms_schema.atomic import atomic_write_json
    from bms_schema.registry import ModelRegistry

    from .detect import train_detector
    from .metrics import support_note

    path = resolve_input(args.data_path)
    prior_file = resolve_input(args.prior_path) if args.prior_path else None  # refused before any loading
    ctx.run.add_input(path)
    with ctx.run.timed("read"):
        frame = read_table(path)
        prior = None
        if prior_file is not None:
            ctx.run.add_input(prior_file)
            prior = read_table(prior_file)
    with ctx.run.timed("train"):
        outcome = train_detector(
            frame,
            contamination=args.contamination,
            features=args.features,
            holdout_fraction=args.holdout_fraction,
            seed=args.seed,
            promote=args.promote,
            progress=ctx.progress,
            prior=prior,
        )
    version, decision = outcome.model_version, outcome.decision or {}
    assert version is not None
    ctx.run.add_model("anomaly_hybrid", version, ModelRegistry().locate("anomaly_hybrid", version))
    report = {
        "model": {
            "name": "anomaly_hybrid",
            "version": version,
            "threshold": outcome.detector.threshold,
            "features": outcome.detector.features,
            "training": outcome.detector.training_info,
        },
        "decision": decision,
        "summary": outcome.info,
        "ground_truth": outcome.metrics,
    }
    metrics_path = ctx.run.add_artifact(
        atomic_write_json(ctx.run.path("training_metrics.json"), report),
        "report",
        "model, held-out ground-truth metrics and the promotion decision",
    )
    hybrid = (outcome.metrics or {}).get("hybrid", {})
    f1 = hybrid.get("f1")
    note = support_note(hybrid) if f1 is not None else ""
    pooled = outcome.info.get("prior_rows", 0)
    message = (
        f"registered anomaly_hybrid {version} as {decision.get('alias')}: {decision.get('reason')}"
        + (f"; trained on {outcome.info['train_rows']} readings with {pooled} of the prior fleet" if pooled else "")
    ) + (
        f"; hybrid F1 {f1:.3f} on {outcome.info['scope']}" + (f" ({note})" if note else "")
        if f1 is not None
        else "; no IsAnomaly labels: no held-out F1"
    )
    return ToolOutput(
        message=message,
        data={
            "model_version": version,
            "alias": decision.get("alias"),
            "promoted": decision.get("promoted"),
            "decision": decision,
            "metrics_path": str(metrics_path),
            "threshold": outcome.detector.threshold,
            "features": outcome.detector.features,
            "train_rows": outcome.info["train_rows"],
            "prior_rows": pooled,
            "holdout_rows": outcome.info["holdout_rows"],
            "holdout_f1": f1,
            "holdout_f1_meaningful": None if f1 is None else not note,
        },
    )


class DetectArgs(ToolArgs):
    data_path: str = Field(
        description="CSV or Parquet readings (a file or a partitioned dataset folder) in the workspace: raw BMS packets, a minimal table, "
        "or the preprocessing output (cleaned + features)"
    )
    model_version: str = Field(
        default="champion",
        description="registered model version: 'champion' (default), 'challenger', 'latest' or like 'v0003'",
    )
    contamination: float | Literal["auto"] | None = Field(
        default=None,
        description="expected share of anomalous readings (0-0.5) re-deriving the threshold from the model's stored "
        "training scores (no retraining); default: the registered model's own threshold",
    )
    top_cells: int = Field(default=4, ge=1, le=12, description="cells shown in the score-over-time plot")
    output_format: Literal["csv", "parquet"] = Field(default="csv", description="format of the result table")
    scheduler: str | None = Field(
        default=None,
        max_length=500,
        description="Dask scheduler address (tcp://host:port): score a dataset folder device by device on that "
        "cluster, writing the result as a dataset folder (default: $BMS_DASK_SCHEDULER; unset = one process)",
    )


@server.tool(DetectArgs, title="Detect anomalies (hybrid IF + OCSVM + VAE)", read_only=False, data_model=DetectData)
def detect_anomalies(args: DetectArgs, ctx: ToolContext) -> ToolOutput:
    """Flag anomalous battery readings with the registered hybrid of Isolation Forest, a one-class SVM and a VAE.

    Accepts raw or preprocessed readings. Writes the result table (all input columns, each
    detector's calibrated score, AnomalyScore, AnomalyFlag, AnomalyKind = statistical /
    sensor_fault / out_of_range, and a readable AnomalyReason for flagged rows), a per-cell
    summary, the worst episodes, a metrics JSON (precision/recall/F1/PR-AUC against
    IsAnomaly when present) and a score-over-time PNG. Uses the champion anomaly_hybrid model
    (or model_version); it never trains: with no model registered, call train_anomaly_detector first.
    """
    from bms_schema import read_table, write_table
    from bms_schema.atomic import atomic_write_json
    from bms_schema.distributed import scheduler_address
    from bms_schema.paths import resolve_input

    from .detect import detect, worst_cells
    from .metrics import support_note
    from .plots import plot_scores_over_time

    address = scheduler_address(args.scheduler)
    path = resolve_input(args.data_path)
    ctx.run.add_input(path)
    run = ctx.run
    if address is not None:
        from bms_schema.distributed import require_dataset

        from .distributed import detect_distributed, plot_rows
        from .persistence import load_detector

        require_dataset(path)

        table_path = run.path("anomalies")
        with run.timed("detect"):
            outcome = detect_distributed(
                path,
                table_path,
                load_detector(args.model_version),
                address,
                contamination=args.contamination,
                progress=ctx.progress,
            )
        run.add_artifact(table_path, "table", "dataset folder (one partition per device): readings with scores, flags")
    else:
        with ctx.run.timed("read"):
            frame = read_table(path)
        with ctx.run.timed("detect"):
            outcome = detect(
                frame, model_version=args.model_version, contamination=args.contamination, progress=ctx.progress
            )
    ctx.progress(0.85, "writing results")
    with run.timed("write"):
        if address is None:
            table_path = run.path(f"anomalies.{args.output_format}")
            write_table(outcome.table, table_path)
            run.add_artifact(
                table_path, "table", "readings with detector scores, AnomalyScore, AnomalyFlag, kind, reason"
            )
        summary_path = run.add_artifact(
            write_table(outcome.cell_summary, run.path("cell_summary.csv")),
            "table",
            "per-cell anomaly rate, counts by kind, episodes, peak score",
        )
        episodes_path = run.add_artifact(
            write_table(outcome.episodes, run.path("worst_episodes.csv")),
            "table",
            "worst anomaly episodes (runs of flagged readings of one cell)",
        )
        dead_cells = outcome.info.get("dead_cells") or []
        if dead_cells:
            import pandas as pd

            run.add_artifact(
                write_table(pd.DataFrame(dead_cells), run.path("dead_cells.csv")),
                "table",
                "cells recognised as dead: since when, why (their later readings are not anomalies)",
            )
        failing_cells = outcome.info.get("failing_cells") or []
        if failing_cells:
            import pandas as pd

            run.add_artifact(
                write_table(pd.DataFrame(failing_cells), run.path("failing_cells.csv")),
                "table",
                "cells drifting from their string peers for a day: failure precursor likely (since when, why)",
            )
        threshold = outcome.info["threshold"]
        report = {
            "model": {
                "name": "anomaly_hybrid",
                "version": outcome.model_version,
                "trained_now": outcome.trained,
                "threshold": threshold,
                "features": outcome.detector.features,
                "training": outcome.detector.training_info,
            },
            "summary": {k: v for k, v in outcome.info.items() if k != "features"},
            "ground_truth": outcome.metrics,
        }
        metrics_path = run.add_artifact(
            atomic_write_json(run.path("metrics.json"), report),
            "report",
            "model, thresholds, counts and ground-truth metrics",
        )
        cells = worst_cells(outcome.cell_summary, args.top_cells)
        plotted = outcome.table if address is None else plot_rows(table_path, cells)
        plot_path = run.add_artifact(
            plot_scores_over_time(plotted, cells, threshold, run.path("scores_over_time.png")),
            "plot",
            f"fused score over time for the {len(cells)} worst cells",
        )
    data = {
        "result_path": str(table_path),
        "cell_summary_path": str(summary_path),
        "episodes_path": str(episodes_path),
        "metrics_path": str(metrics_path),
        "plot_path": str(plot_path),
        "model_version": outcome.model_version,
        "trained": outcome.trained,
        **{k: outcome.info[k] for k in ("rows", "flagged", "kinds", "threshold")},
        "worst_cells": cells,
    }
    if outcome.metrics:
        m = outcome.metrics
        data["ground_truth"] = {
            "scope": m["scope"],
            "hybrid": m["hybrid"],
            "detectors": {k: {"f1": v["f1"], "pr_auc": v.get("pr_auc")} for k, v in m["detectors"].items()},
            "seed_rule_top5pct": {"f1": m["seed_rule_top5pct"]["f1"], "pr_auc": m["seed_rule_top5pct"].get("pr_auc")},
            "hybrid_f1_gain_over_best_single": m["hybrid_f1_gain_over_best_single"],
        }
    kinds = outcome.info["kinds"]
    message = (
        f"scored with registered anomaly_hybrid {outcome.model_version or ''}: {kinds.get('statistical', 0)} statistical "
        f"anomalies, {kinds.get('sensor_fault', 0)} sensor faults (0xFFFF dropouts) and "
        f"{kinds.get('out_of_range', 0)} out-of-range readings among {outcome.info['rows']} readings"
    ).replace("  ", " ")
    if dead_cells:
        message += (
            f"; {len(dead_cells)} cell(s) recognised as dead, their later readings not counted as anomalies: "
            + ", ".join(f"{d['CellID']} since {d['dead_since'][:16]}" for d in dead_cells[:6])
        )
    failing_cells = outcome.info.get("failing_cells") or []
    if failing_cells:
        message += f"; {len(failing_cells)} cell(s) drifting from their peers, failure precursor likely: " + ", ".join(
            f"{d['CellID']} since {d['failing_since'][:16]}" for d in failing_cells[:6]
        )
    if outcome.metrics:
        note = support_note(outcome.metrics["hybrid"])
        message += f"; hybrid F1 {outcome.metrics['hybrid']['f1']:.3f} on {outcome.metrics['scope']}" + (
            f" ({note})" if note else ""
        )
    return ToolOutput(message=message, data=data)


class Visualize3DArgs(ToolArgs):
    result_csv: str = Field(
        description="result table written by detect_anomalies (CSV or Parquet file, or a dataset folder)"
    )
    x: str = Field(default="CellVoltage", description="column on the x axis")
    y: str = Field(default="InstantaneousCurrent", description="column on the y axis")
    z: str = Field(default="CellTemperature", description="column on the z axis")
    max_points: int = Field(
        default=5_000,
        ge=100,
        le=200_000,
        description="plot at most this many readings (a uniform random sample of the table, "
        "so anomalies are shown in their true proportion)",
    )
    embed_plotly: bool = Field(
        default=False,
        description="embed plotly.js in the HTML (+3.5 MB per file) instead of "
        "a plotly.min.js copied beside it; both work offline",
    )


@server.tool(Visualize3DArgs, title="3D scatter of anomalies", read_only=False, data_model=Visualize3DData)
def visualize_anomalies_3d(args: Visualize3DArgs, ctx: ToolContext) -> ToolOutput:
    """Interactive 3D scatter (HTML, plotly) and a PNG of a detect_anomalies result, coloured by anomaly kind.

    Default axes: cell voltage, current, cell temperature. Large tables are sampled uniformly at
    random so the HTML stays small and anomalies keep their true share. Works offline: plotly.js
    comes from the installed plotly package, never a CDN.
    """
    from bms_schema import read_table, resolve_input

    from .plots import check_axes, check_result_table, plot_3d, plottable_rows, sample_for_plot

    path = resolve_input(args.result_csv)
    ctx.run.add_input(path)
    frame = read_table(path)
    check_result_table(frame, path.name)
    axes = (args.x, args.y, args.z)
    check_axes(frame, axes)
    plottable, dropped = plottable_rows(frame, axes)
    sample = sample_for_plot(plottable, args.max_points)
    html = ctx.run.path("anomalies_3d.html")
    png = ctx.run.path("anomalies_3d.png")
    counts = plot_3d(sample, axes, html, png, embed_plotly=args.embed_plotly, total_rows=len(frame))
    if not args.embed_plotly:
        from bms_schema.offline import PLOTLY_JS

        ctx.run.add_artifact(html.parent / PLOTLY_JS, "data", "plotly.js used by the HTML (offline copy)")
    ctx.run.add_artifact(html, "html", f"interactive 3D scatter {args.x} / {args.y} / {args.z}")
    ctx.run.add_artifact(png, "plot", f"3D scatter {args.x} / {args.y} / {args.z}")
    skipped = (
        (
            f"; {len(frame) - len(plottable)} rows not plotted: infinite or out-of-range values "
            f"({', '.join(f'{c}: {n}' for c, n in dropped.items())})"
        )
        if dropped
        else ""
    )
    return ToolOutput(
        message=(
            f"3D plot of {len(sample)} of {len(frame)} readings "
            f"({', '.join(f'{k}: {v}' for k, v in counts.items())}){skipped}"
        ),
        data={
            "html_path": str(html),
            "png_path": str(png),
            "points": len(sample),
            "rows": len(frame),
            "by_kind": counts,
            "axes": list(axes),
            "html_bytes": html.stat().st_size,
        },
    )


def main() -> None:
    server.main()
