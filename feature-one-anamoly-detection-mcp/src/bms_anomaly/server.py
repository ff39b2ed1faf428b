"""MCP layer of feature-one-anamoly-detection-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer

server = ToolServer(
    "feature-one-anamoly-detection-mcp",
    packages=['pandas', 'numpy', 'scikit-learn', 'torch', 'skops', 'matplotlib', 'plotly', 'mcp'],
    instructions='Hybrid anomaly detection on BMS readings (Isolation Forest + one-class SVM + VAE).',
)
server.add_health_check(models=['anomaly_hybrid'])


class DetectArgs(ToolArgs):
    data_path: str = Field(description="CSV or Parquet readings in the workspace: raw BMS packets, a minimal table, "
                                       "or the preprocessing output (cleaned + features)")
    use_registered_model: bool = Field(
        default=False,
        description="true: score with the registered anomaly_hybrid model (no training); "
                    "false: train a new model on this data (registered when register_model is true)")
    model_version: str = Field(default="latest", description="registered model version to use ('latest' or 'v0003')")
    contamination: float | Literal["auto"] | None = Field(
        default=None,
        description="expected share of anomalous readings (0-0.5) setting the threshold, or 'auto' "
                    "(Tukey fence Q3 + 3 IQR of the fused training scores); default: 'auto' when training, "
                    "the registered model's own threshold when scoring with it")
    features: list[str] | None = Field(default=None, description="feature columns to train on (default: the "
                                                                 "domain features present)")
    register_model: bool = Field(default=True, description="register a newly trained model as anomaly_hybrid")
    holdout_fraction: float = Field(default=0.3, ge=0.0, lt=0.9,
                                    description="latest share of the time span kept out of training to measure "
                                                "ground-truth metrics on unseen readings (0 = train on everything)")
    seed: int = Field(default=0, ge=0, description="random seed (same data + seed = same model)")
    top_cells: int = Field(default=4, ge=1, le=12, description="cells shown in the score-over-time plot")
    output_format: Literal["csv", "parquet"] = Field(default="csv", description="format of the result table")


@server.tool(DetectArgs, title="Detect anomalies (hybrid IF + OCSVM + VAE)", read_only=False)
def detect_anomalies(args: DetectArgs, ctx: ToolContext) -> ToolOutput:
    """Flag anomalous battery readings with a hybrid of Isolation Forest, a one-class SVM and a VAE.

    Accepts raw or preprocessed readings. Writes the result table (all input columns, each
    detector's calibrated score, AnomalyScore, AnomalyFlag, AnomalyKind = statistical /
    sensor_fault / out_of_range, and a readable AnomalyReason for flagged rows), a per-cell
    summary, the worst episodes, a metrics JSON (precision/recall/F1/PR-AUC against
    IsAnomaly when present) and a score-over-time PNG. Trains and registers anomaly_hybrid,
    or scores with the registered model when use_registered_model is true.
    """
    from bms_schema import read_table, resolve_input, write_table
    from bms_schema.atomic import atomic_write_json

    from .detect import detect, worst_cells
    from .plots import plot_scores_over_time

    path = resolve_input(args.data_path)
    ctx.run.add_input(path)
    with ctx.run.timed("read"):
        frame = read_table(path)
    with ctx.run.timed("detect"):
        outcome = detect(
            frame, use_registered_model=args.use_registered_model, model_version=args.model_version,
            contamination=args.contamination, features=args.features, holdout_fraction=args.holdout_fraction,
            seed=args.seed, register=args.register_model, progress=ctx.progress,
        )
    ctx.progress(0.85, "writing results")
    run = ctx.run
    with run.timed("write"):
        table_path = run.path(f"anomalies.{args.output_format}")
        write_table(outcome.table, table_path)
        run.add_artifact(table_path, "table", "readings with detector scores, AnomalyScore, AnomalyFlag, kind, reason")
        summary_path = run.add_artifact(write_table(outcome.cell_summary, run.path("cell_summary.csv")), "table",
                                        "per-cell anomaly rate, counts by kind, episodes, peak score")
        episodes_path = run.add_artifact(write_table(outcome.episodes, run.path("worst_episodes.csv")), "table",
                                         "worst anomaly episodes (runs of flagged readings of one cell)")
        threshold = outcome.info["threshold"]
        report = {
            "model": {"name": "anomaly_hybrid", "version": outcome.model_version, "trained_now": outcome.trained,
                      "threshold": threshold, "features": outcome.detector.features,
                      "training": outcome.detector.training_info},
            "summary": {k: v for k, v in outcome.info.items() if k != "features"},
            "ground_truth": outcome.metrics,
        }
        metrics_path = run.add_artifact(atomic_write_json(run.path("metrics.json"), report), "report",
                                        "model, thresholds, counts and ground-truth metrics")
        cells = worst_cells(outcome.cell_summary, args.top_cells)
        plot_path = run.add_artifact(
            plot_scores_over_time(outcome.table, cells, threshold, run.path("scores_over_time.png")), "plot",
            f"fused score over time for the {len(cells)} worst cells")
    if outcome.model_version and outcome.trained:
        from bms_schema.registry import ModelRegistry

        run.add_model("anomaly_hybrid", outcome.model_version, ModelRegistry().locate("anomaly_hybrid", outcome.model_version))
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
    how = "trained and registered" if outcome.trained and outcome.model_version else (
        "trained" if outcome.trained else "scored with registered")
    kinds = outcome.info["kinds"]
    message = (f"{how} anomaly_hybrid {outcome.model_version or ''}: {kinds.get('statistical', 0)} statistical "
               f"anomalies, {kinds.get('sensor_fault', 0)} sensor faults (0xFFFF dropouts) and "
               f"{kinds.get('out_of_range', 0)} out-of-range readings among {outcome.info['rows']} readings"
               ).replace("  ", " ")
    if outcome.metrics:
        message += f"; hybrid F1 {outcome.metrics['hybrid']['f1']:.3f} on {outcome.metrics['scope']}"
    return ToolOutput(message=message, data=data)


class Visualize3DArgs(ToolArgs):
    result_csv: str = Field(description="result table written by detect_anomalies (CSV or Parquet)")
    x: str = Field(default="CellVoltage", description="column on the x axis")
    y: str = Field(default="InstantaneousCurrent", description="column on the y axis")
    z: str = Field(default="CellTemperature", description="column on the z axis")
    max_points: int = Field(default=5_000, ge=100, le=200_000,
                            description="plot at most this many readings (a uniform random sample of the table, "
                                        "so anomalies are shown in their true proportion)")
    embed_plotly: bool = Field(default=False, description="embed plotly.js in the HTML (+3.5 MB per file) instead of "
                                                          "a plotly.min.js copied beside it; both work offline")


@server.tool(Visualize3DArgs, title="3D scatter of anomalies", read_only=False)
def visualize_anomalies_3d(args: Visualize3DArgs, ctx: ToolContext) -> ToolOutput:
    """Interactive 3D scatter (HTML, plotly) and a PNG of a detect_anomalies result, coloured by anomaly kind.

    Default axes: cell voltage, current, cell temperature. Large tables are sampled uniformly at
    random so the HTML stays small and anomalies keep their true share. Works offline: plotly.js
    comes from the installed plotly package, never a CDN.
    """
    from bms_schema import read_table, resolve_input

    from .plots import check_axes, plot_3d, sample_for_plot

    path = resolve_input(args.result_csv)
    ctx.run.add_input(path)
    frame = read_table(path)
    axes = (args.x, args.y, args.z)
    check_axes(frame, axes)
    sample = sample_for_plot(frame, args.max_points)
    html = ctx.run.path("anomalies_3d.html")
    png = ctx.run.path("anomalies_3d.png")
    counts = plot_3d(sample, axes, html, png, embed_plotly=args.embed_plotly, total_rows=len(frame))
    if not args.embed_plotly:
        from bms_schema.offline import PLOTLY_JS

        ctx.run.add_artifact(html.parent / PLOTLY_JS, "data", "plotly.js used by the HTML (offline copy)")
    ctx.run.add_artifact(html, "html", f"interactive 3D scatter {args.x} / {args.y} / {args.z}")
    ctx.run.add_artifact(png, "plot", f"3D scatter {args.x} / {args.y} / {args.z}")
    return ToolOutput(
        message=f"3D plot of {len(sample)} of {len(frame)} readings ({', '.join(f'{k}: {v}' for k, v in counts.items())})",
        data={"html_path": str(html), "png_path": str(png), "points": len(sample), "rows": len(frame),
              "by_kind": counts, "axes": list(axes), "html_bytes": html.stat().st_size},
    )


def main() -> None:
    server.main()
