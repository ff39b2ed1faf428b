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

SECTION_STAGES = {
    "Data": ("simulate", "preprocess"),
    "Synthetic data": ("synthetic", "synthetic_eval"),
    "Anomalies": ("anomaly",),
    "Failure risk": ("failure",),
    "Forecasts": ("forecast",),
}


@dataclass
class Block:
    kind: str  # heading | text | table | image
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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_blocks(state: PipelineState, workspace: Path, wall_seconds: float | None = None,
                 failed: str | None = None) -> list[Block]:
    opts = state.options
    blocks = [Block("heading", "BMS-Flux pipeline report")]
    status = "finished" if failed is None else f"stopped at stage '{failed}'"
    source = opts.data or (f"simulated fleet: {opts.devices} devices x {opts.cells_per_device} cells x {opts.days} "
                           f"days at {opts.interval_minutes} min, seed {opts.seed}")
    blocks.append(Block("text", f"Run `{state.run_id}` - {status}. Data: {source}. "
                                f"Report written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}."))
    if failed is not None:
        blocks.append(Block("text", "**Error:** " + (state.stages[failed].error or "").replace("\n", " ")))

    blocks.append(Block("heading", "Stages"))
    rows = []
    for name, rec in state.stages.items():
        rows.append([name, rec.status, len(rec.calls), f"{rec.seconds:.1f}", f"{rec.tool_seconds:.1f}",
                     rec.line()[:160]])
    blocks.append(Block("table", header=["stage", "status", "calls", "wall s", "tool s", "note"], rows=rows))
    timing = timing_summary(state, wall_seconds)
    blocks.append(Block("text", (
        f"Total {timing['wall_seconds']:.1f} s; inside the tools {timing['tool_seconds']:.1f} s; outside the tools "
        f"{timing['outside_tools_seconds']:.1f} s ({timing['outside_tools_share']:.0%}: server start "
        f"{timing['server_start_seconds']:.1f} s, protocol {timing['protocol_seconds']:.1f} s, driver work "
        f"{timing['driver_seconds']:.1f} s).")))

    blocks += _data_section(state)
    blocks += _synthetic_section(state)
    blocks += _anomaly_section(state)
    blocks += _risk_section(state)
    blocks += _forecast_section(state)
    blocks += _model_section(state, workspace)
    return blocks


def _kv_table(data: dict[str, Any], limit: int = 30) -> Block | None:
    items = [(k, v) for k, v in scalar_items(data, limit=limit) if k != "seconds"]
    if not items:
        return None
    return Block("table", header=["figure", "value"], rows=[[k, _fmt(v)] for k, v in items])


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
    blocks = [Block("heading", "Cells at risk"), Block("text", last.get("message", ""))]
    cells = cells_at_risk(state)
    living = [c for c in cells if not c["already_dead"]][:10]
    dead = [c["cell_id"] for c in cells if c["already_dead"]]
    if living:
        blocks.append(Block("table", header=["cell", "P(fail)", "band", "reasons"],
                            rows=[[c["cell_id"], f"{c['probability']:.3f}", c["band"], c["reasons"][:160]]
                                  for c in living]))
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
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in headline_metrics(m["metrics"] or m.get("facts", {})))
        rows.append([m["name"], m["version"], "yes" if m["latest"] else "", m["step"], metrics[:160]])
    return [Block("heading", "Models registered in this run"),
            Block("table", header=["model", "version", "latest", "step", "metrics"], rows=rows)]


HEADLINE = ("f1", "pr_auc", "roc_auc", "brier", "mae", "mae_mean", "rmse", "mase", "coverage", "overall_score",
            "precision", "recall", "threshold", "alarm_threshold")


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
        elif b.kind == "image":
            out.append(f"![{b.text}]({os.path.relpath(b.path, base)})")
        out.append("")
    return "\n".join(out)


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;"
       "font-size:14px;text-align:left}th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"
       "code{background:#f4f4f4;padding:1px 4px}")


def _inline(text: str) -> str:
    import re

    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def render_html(blocks: list[Block]) -> str:
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>BMS-Flux report</title>",
           f"<style>{CSS}</style></head><body>"]
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
        elif b.kind == "image":
            path = Path(b.path)
            if path.exists():
                suffix = path.suffix.lower().lstrip(".")
                mime = {"svg": "image/svg+xml", "jpg": "image/jpeg"}.get(suffix, f"image/{suffix}")
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(f"<figure><img alt='{html.escape(b.text)}' src='data:{mime};base64,{data}'>"
                           f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(state: PipelineState, workspace: Path, wall_seconds: float | None = None,
                 failed: str | None = None) -> tuple[Path, Path]:
    blocks = build_blocks(state, workspace, wall_seconds, failed)
    md_path, html_path = state.run_dir / "report.md", state.run_dir / "report.html"
    atomic_write_text(md_path, render_markdown(blocks, state.run_dir))
    atomic_write_text(html_path, render_html(blocks))
    return md_path, html_path
