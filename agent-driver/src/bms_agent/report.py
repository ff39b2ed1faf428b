"""The run report: ``report.md`` and a self-contained ``report.html`` (plots embedded as base64).

Built only from the state (the tools' envelopes) and the files the tools wrote. The same list of
blocks renders to both formats.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bms_schema.atomic import atomic_write_text

from .artifacts import images
from .outputs import cells_at_risk, first_data, forecasts, models_registered, read_json_artifact, scalar_items
from .state import PipelineState
from .summary import FleetSummary, _reason, fleet_summary

SECTION_STAGES = {
    "Data": ("simulate", "preprocess"),
    "Synthetic data": ("synthetic", "synthetic_eval"),
    "Anomalies": ("anomaly",),
    "Failure risk": ("failure",),
    "Forecasts": ("forecast",),
}


@dataclass
class Block:
    kind: str  # heading | text | table | list | image
    text: str = ""
    rows: list[list[Any]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    path: str = ""


def timing_summary(state: PipelineState, wall_seconds: float | None = None) -> dict[str, float]:
    """Where the time went.

    ``tool_seconds``: inside the tools (as they report it); ``protocol_seconds``: per call, the
    client's wall time minus the tool's own (JSON-RPC, serialisation, queueing); server start
    (the slowest of the concurrent starts); the driver's own work (sampling). Time outside the
    tools = start + protocol + driver, as a share of the wall time (stages may overlap, so the
    tool seconds can add up to more than the wall time).
    """
    tools = sum(rec.tool_seconds for rec in state.stages.values())
    calls = sum(c.seconds for rec in state.stages.values() for c in rec.calls)
    driver = sum(rec.driver_seconds for rec in state.stages.values())
    start = max(state.server_start_seconds.values(), default=0.0)
    protocol = max(calls - tools, 0.0)
    stages = sum(rec.seconds for rec in state.stages.values())
    wall = wall_seconds if wall_seconds is not None else (state.wall_seconds or stages)
    outside = start + protocol + driver
    return {
        "wall_seconds": round(wall, 3),
        "tool_seconds": round(tools, 3),
        "protocol_seconds": round(protocol, 3),
        "driver_seconds": round(driver, 3),
        "server_start_seconds": round(start, 3),
        "outside_tools_seconds": round(outside, 3),
        "outside_tools_share": round(min(outside / wall, 1.0), 4) if wall > 0 else 0.0,
    }


#: Human words for the keys the tools return (last part of a dotted key; earlier parts become a prefix).
LABELS = {
    "dcr_median": "distance to the closest real row, median",
    "dcr_p05": "distance to the closest real row, 5th percentile",
    "dcr_zero_share": "share of synthetic rows identical to a real row",
    "holdout_dcr_median": "held-out real rows' distance to the training rows, median (baseline)",
    "holdout_dcr_p05": "held-out real rows' distance to the training rows, 5th percentile (baseline)",
    "holdout_copied_share": "held-out real rows found in the training rows (baseline)",
    "dcr_ratio": "distance ratio synthetic / held-out (above 1: further from the real rows than real data is)",
    "copied_rows": "synthetic rows copied from the real data",
    "copied_share": "share of synthetic rows copied",
    "copies_real_rows": "copies real rows",
    "synthetic_rows": "synthetic rows",
    "real_rows": "real rows",
    "overall_score": "SDV quality score (0-1)",
    "diagnostic_score": "SDV diagnostic score (0-1)",
    "real": "real rows",
    "synthetic": "synthetic rows",
    "rows_in": "rows read",
    "rows": "rows",
    "duplicates_dropped": "duplicate packets dropped",
    "sentinel_rows": "rows with 0xFFFF dropouts",
    "out_of_range_rows": "rows with impossible values",
    "time_gaps": "gaps in the time series",
    "columns": "columns",
    "cells": "cells",
    "devices": "devices",
    "f1": "F1",
    "pr_auc": "PR-AUC",
    "roc_auc": "ROC-AUC",
    "mae": "MAE",
    "rmse": "RMSE",
    "mase": "MASE",
    "brier": "Brier score",
    "precision": "precision",
    "recall": "recall",
    "threshold": "threshold",
    "coverage": "interval coverage",
    "conflicting_rows_dropped": "conflicting rows dropped",
    "input_format": "input format",
    "readings_per_cell": "readings per cell",
    "failed_cells": "cells that fail",
    "expected_failed_cells": "cells expected to fail",
    "dead_rows": "readings of dead cells",
    "anomaly_rows": "anomalous readings (ground truth)",
    "anomaly_events": "anomaly events (ground truth)",
    "base_rows": "rows before duplicates",
    "chemistry": "chemistry",
    "flagged": "flagged readings",
    "horizon_days": "horizon (days)",
    "seconds": "seconds",
}
PREFIXES = {
    "privacy": "privacy",
    "properties": "quality",
    "diagnostic_properties": "diagnostic",
    "missing_before": "missing before imputation",
    "imputed_values": "values imputed",
    "sentinel_by_column": "0xFFFF dropouts",
    "out_of_range_by_column": "impossible values",
    "missing_by_column": "missing",
    "failure_modes": "failure mode",
    "anomaly_types": "anomaly type",
    "detected_types": "detected type",
    "rows_compared": "rows compared",
    "tables": "table",
    "kinds": "readings by kind",
    "ground_truth": "vs ground truth",
    "hybrid": "hybrid detector",
    "mice_quality": "MICE imputation check",
}
COLUMN_WORDS = {
    "CellVoltage": "cell voltage",
    "CellTemperature": "cell temperature",
    "CellSpecificGravity": "specific gravity",
    "InstantaneousCurrent": "current",
    "AmbientTemperature": "ambient temperature",
    "StringVoltage": "string voltage",
}


def human_label(key: str) -> str:
    """``privacy.readings.dcr_p05`` -> ``privacy (readings): distance to the closest real row, 5th percentile``."""
    parts = key.split(".")
    last = parts[-1]
    words = LABELS.get(last) or COLUMN_WORDS.get(last) or last.replace("_", " ")
    context = [PREFIXES.get(p) or COLUMN_WORDS.get(p) or p.replace("_", " ") for p in parts[:-1]]
    if not context:
        return words
    head, rest = context[0], context[1:]
    return f"{head} ({', '.join(rest)}): {words}" if rest else f"{head}: {words}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_blocks(
    state: PipelineState, workspace: Path, wall_seconds: float | None = None, failed: str | None = None
) -> list[Block]:
    """The answer first (summary, one screen), then per-cell detail, then the technical appendix."""
    opts = state.options
    blocks = [Block("heading", "BMS-Flux battery report")]
    status = "finished" if failed is None else f"stopped at stage '{failed}'"
    source = opts.data or (
        f"simulated fleet: {opts.devices} devices x {opts.cells_per_device} cells x {opts.days} "
        f"days at {opts.interval_minutes} min, seed {opts.seed}"
    )
    blocks.append(
        Block(
            "text",
            f"Run `{state.run_id}` - {status}. Data: {source}. "
            f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.",
        )
    )
    if failed is not None:
        blocks.append(Block("text", "**Error:** " + (state.stages[failed].error or "").replace("\n", " ")))
    summary = fleet_summary(state)
    blocks += _summary_section(summary)
    blocks += _cells_section(summary)

    blocks.append(Block("heading", "Technical appendix"))
    blocks.append(
        Block(
            "text",
            "Stage timings, the tools' figures, synthetic data (SDV), validation against ground "
            "truth and the models registered in this run.",
        )
    )
    rows = []
    for name, rec in state.stages.items():
        rows.append([name, rec.status, len(rec.calls), f"{rec.seconds:.1f}", f"{rec.tool_seconds:.1f}", rec.line()])
    blocks.append(Block("table", header=["stage", "status", "calls", "wall s", "tool s", "note"], rows=rows))
    timing = timing_summary(state, wall_seconds)
    blocks.append(
        Block(
            "text",
            (
                f"Total {timing['wall_seconds']:.1f} s; inside the tools {timing['tool_seconds']:.1f} s; outside the tools "
                f"{timing['outside_tools_seconds']:.1f} s ({timing['outside_tools_share']:.0%}: server start "
                f"{timing['server_start_seconds']:.1f} s, protocol {timing['protocol_seconds']:.1f} s, driver work "
                f"{timing['driver_seconds']:.1f} s)."
            ),
        )
    )

    blocks += _data_section(state)
    blocks += _anomaly_section(state)
    blocks += _risk_section(state)
    blocks += _forecast_section(state)
    blocks += _synthetic_section(state)
    blocks += _model_section(state, workspace)
    return blocks


def _pct(p: float | None) -> str:
    if p is None or p != p:  # None or NaN
        return "unknown"
    return f"{p:.0%}" if p >= 0.01 else f"{p:.2%}" if p >= 0.0001 else "<0.01%"


def _summary_section(s: FleetSummary) -> list[Block]:
    blocks = [Block("heading", "Summary")]
    horizon = f" within {s.horizon_days:g} days" if s.horizon_days else ""
    if not s.failure_known:
        blocks.append(Block("text", "**Dead cells and failure risk:** unknown (the failure prediction did not run)."))
    else:
        dead = ", ".join(c["cell_id"] for c in s.dead) if s.dead else "none"
        blocks.append(Block("text", f"**Dead cells ({len(s.dead)} of {s.cells}):** {dead}."))
        if s.at_risk:
            blocks.append(Block("text", f"**At risk of failing{horizon} (alarmed, {len(s.at_risk)}):**"))
            blocks.append(
                Block(
                    "table",
                    header=["cell", "risk", "band", "remaining life", "why"],
                    rows=[
                        [
                            c["cell_id"],
                            _pct(c["probability"]),
                            c["band"],
                            c.get("remaining_life") or "unknown",
                            _reason(c["reasons"]) or "not given",
                        ]
                        for c in s.at_risk
                    ],
                )
            )
        else:
            watch = "; ".join(
                f"{c['cell_id']} {_pct(c['probability'])}"
                + (f", remaining life {c['remaining_life']}" if c.get("remaining_life") else "")
                + (f" (main reason: {_reason(c['reasons']).split('; ')[0]})" if c["reasons"] else "")
                for c in s.watch
            )
            blocks.append(
                Block(
                    "text",
                    f"**At risk of failing{horizon}:** none alarmed (the failure alarm: high risk within the alarm horizon, threshold calibrated on held-out cells)."
                    + (f" Highest risks among living cells: {watch}." if watch else ""),
                )
            )
    if not s.anomaly_known:
        blocks.append(Block("text", "**Abnormal behaviour:** unknown (anomaly detection did not run)."))
    elif s.abnormal:
        items = [
            f"{a['cell_id']}: {a['statistical']} anomalous readings"
            + (f" ({a['share']:.1%} of {a['readings']:,})" if a["share"] is not None else "")
            + (f", e.g. {a['reason']}" if a["reason"] else "")
            for a in s.abnormal
        ]
        blocks.append(
            Block("text", f"**Living cells behaving abnormally ({len(s.abnormal)}):** " + "; ".join(items) + ".")
        )
    else:
        blocks.append(Block("text", "**Living cells behaving abnormally:** none stand out from the fleet."))
    if s.quality:
        blocks.append(Block("text", "**Data quality:**"))
        blocks.append(Block("list", rows=[[line] for line in s.quality]))
    if s.actions:
        blocks.append(Block("text", "**What to do:**"))
        blocks.append(Block("list", rows=[[a] for a in s.actions]))
    return blocks


def _cells_section(s: FleetSummary) -> list[Block]:
    if not s.per_cell:
        return []
    order = {"dead": 0, "at risk": 1, "abnormal": 2, "ok": 3}
    cells = sorted(s.per_cell, key=lambda c: (order.get(c["state"], 4), -(c.get("probability") or 0)))
    rows = []
    for c in cells:
        rows.append(
            [
                c["cell_id"],
                c["state"],
                _pct(c.get("probability")) if c.get("probability") is not None else "",
                c.get("band", ""),
                c.get("remaining_life") or "",
                "" if c.get("statistical") is None else c["statistical"],
                "" if c.get("sensor_fault") is None else c["sensor_fault"],
                _reason(c.get("reasons", "")),
            ]
        )
    return [
        Block("heading", "Per-cell detail"),
        Block(
            "table",
            header=[
                "cell",
                "state",
                "failure risk",
                "band",
                "remaining life",
                "anomalous readings",
                "sensor dropouts",
                "model's reasons",
            ],
            rows=rows,
        ),
    ]


def _kv_table(data: dict[str, Any], limit: int = 30) -> Block | None:
    items = [(k, v) for k, v in scalar_items(data, limit=limit) if k != "seconds"]
    if not items:
        return None
    return Block("table", header=["figure", "value"], rows=[[human_label(k), _fmt(v)] for k, v in items])


def _stage_plots(state: PipelineState, *stages: str, limit: int = 6) -> list[Block]:
    envs = [env for stage in stages for env in state.envelopes(stage)]
    return [Block("image", text=Path(a["path"]).name, path=a["path"]) for a in images(envs)[:limit]]


def _data_section(state: PipelineState) -> list[Block]:
    blocks = [Block("heading", "Data")]
    for stage, title in (("simulate", "Simulated fleet"), ("preprocess", "Data quality (preprocessing)")):
        data = first_data(state, stage)
        if not data:
            continue
        blocks.append(Block("text", f"**{title}** - {state.envelopes(stage)[0].get('message', '')}"))
        table = _kv_table(data, limit=20)
        if table:
            blocks.append(table)
    quality = read_json_artifact(state.envelopes("preprocess"), "quality")
    if quality:
        table = _kv_table(quality, limit=12)
        if table:
            blocks.append(Block("text", "Data-quality report (from the preprocessing tool's JSON):"))
            blocks.append(table)
    blocks += _stage_plots(state, "preprocess", limit=3)
    return blocks if len(blocks) > 1 else []


def _synthetic_section(state: PipelineState) -> list[Block]:
    blocks = [Block("heading", "Synthetic data")]
    for stage in ("synthetic", "synthetic_eval"):
        data = first_data(state, stage)
        if data:
            blocks.append(Block("text", state.envelopes(stage)[0].get("message", "")))
            table = _kv_table(data, limit=20)
            if table:
                blocks.append(table)
    blocks += _stage_plots(state, "synthetic", "synthetic_eval", limit=2)
    return blocks if len(blocks) > 1 else []


def _anomaly_section(state: PipelineState) -> list[Block]:
    data = first_data(state, "anomaly")
    if not data:
        return []
    blocks = [Block("heading", "Anomalies"), Block("text", state.envelopes("anomaly")[0].get("message", ""))]
    table = _kv_table(data, limit=30)
    if table:
        blocks.append(table)
    return blocks + _stage_plots(state, "anomaly", limit=2)


def _risk_section(state: PipelineState) -> list[Block]:
    if not state.ok("failure"):
        return []
    last = state.envelopes("failure")[-1]  # the prediction (a training call may come first)
    blocks = [Block("heading", "Failure prediction"), Block("text", last.get("message", ""))]
    cells = cells_at_risk(state)
    living = [c for c in cells if not c["already_dead"]][:10]
    dead = [c["cell_id"] for c in cells if c["already_dead"]]
    if living:
        blocks.append(
            Block(
                "table",
                header=["cell", "P(fail)", "band", "reasons"],
                rows=[[c["cell_id"], f"{c['probability']:.3f}", c["band"], _reason(c["reasons"])] for c in living],
            )
        )
    if dead:
        blocks.append(Block("text", f"Already dead ({len(dead)}): {', '.join(dead)}."))
    table = _kv_table({k: v for k, v in dict(last.get("data") or {}).items() if not isinstance(v, list)}, limit=20)
    if table:
        blocks.append(table)
    return blocks + _stage_plots(state, "failure", limit=2)


def _forecast_section(state: PipelineState) -> list[Block]:
    items = forecasts(state)
    if not items:
        return []
    blocks = [Block("heading", "Forecasts")]
    rows = []
    for item in items:
        for t in item["targets"]:
            interval = f"[{t['lower']:.4g}, {t['upper']:.4g}]" if t["lower"] is not None else ""
            rows.append([item["cell_id"], t["target"], t["steps"], f"{t['first']:.4g}", f"{t['last']:.4g}", interval])
    if rows:
        blocks.append(Block("table", header=["cell", "target", "steps", "first", "last", "last interval"], rows=rows))
    else:
        blocks += [Block("text", f"{i['cell_id']}: {i['message']}") for i in items]
    return blocks + _stage_plots(state, "forecast", limit=3)


def _model_section(state: PipelineState, workspace: Path) -> list[Block]:
    models = models_registered(state, workspace)
    if not models:
        return []
    rows = []
    for m in models:
        metrics = ", ".join(
            f"{human_label(k)} {_fmt(v)}" for k, v in headline_metrics(m["metrics"] or m.get("facts", {}))
        )
        rows.append([m["name"], m["version"], "yes" if m["latest"] else "", m["step"], metrics])
    return [
        Block("heading", "Models registered in this run"),
        Block("table", header=["model", "version", "latest", "step", "metrics"], rows=rows),
    ]


HEADLINE = (
    "f1",
    "pr_auc",
    "roc_auc",
    "brier",
    "mae",
    "mae_mean",
    "rmse",
    "mase",
    "coverage",
    "overall_score",
    "precision",
    "recall",
    "threshold",
    "alarm_threshold",
)


def headline_metrics(metrics: dict[str, Any], limit: int = 6) -> list[tuple[str, Any]]:
    """The metrics a reader looks for first (F1, AUC, MAE, coverage, ...), else the first few values."""
    items = [(k, v) for k, v in scalar_items(metrics, limit=400) if not isinstance(v, str)]
    picked = [(k, v) for k, v in items if k.split(".")[-1].lower() in HEADLINE]
    return (picked or items)[:limit]


# -- rendering ------------------------------------------------------------------------------------
def render_markdown(blocks: list[Block], base: Path) -> str:
    out: list[str] = []
    first = True
    for b in blocks:
        if b.kind == "heading":
            out.append(("# " if first else "## ") + b.text)
            first = False
        elif b.kind == "text":
            out.append(b.text)
        elif b.kind == "table":
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in b.rows]
        elif b.kind == "list":
            out += [f"- {row[0]}" for row in b.rows]
        elif b.kind == "image":
            out.append(f"![{b.text}]({os.path.relpath(b.path, base)})")
        out.append("")
    return "\n".join(out)


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;"
    "font-size:14px;text-align:left}th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"
    "code{background:#f4f4f4;padding:1px 4px}"
)


def _inline(text: str) -> str:
    import re

    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def render_html(blocks: list[Block]) -> str:
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>BMS-Flux report</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    first = True
    for b in blocks:
        if b.kind == "heading":
            tag = "h1" if first else "h2"
            first = False
            out.append(f"<{tag}>{html.escape(b.text)}</{tag}>")
        elif b.kind == "text":
            out.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(str(row[0]))}</li>" for row in b.rows) + "</ul>")
        elif b.kind == "image":
            path = Path(b.path)
            if path.exists():
                suffix = path.suffix.lower().lstrip(".")
                mime = {"svg": "image/svg+xml", "jpg": "image/jpeg"}.get(suffix, f"image/{suffix}")
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(
                    f"<figure><img alt='{html.escape(b.text)}' src='data:{mime};base64,{data}'>"
                    f"<figcaption>{html.escape(b.text)}</figcaption></figure>"
                )
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    state: PipelineState, workspace: Path, wall_seconds: float | None = None, failed: str | None = None
) -> tuple[Path, Path]:
    blocks = build_blocks(state, workspace, wall_seconds, failed)
    md_path, html_path = state.run_dir / "report.md", state.run_dir / "report.html"
    atomic_write_text(md_path, render_markdown(blocks, state.run_dir))
    atomic_write_text(html_path, render_html(blocks))
    return md_path, html_path
