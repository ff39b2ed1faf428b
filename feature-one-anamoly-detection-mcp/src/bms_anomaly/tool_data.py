"""Typed ``data`` of feature-one-anamoly-detection-mcp's tools."""

from __future__ import annotations

from typing import Any

from bms_schema.mcp_server import ToolData
from pydantic import Field


class DetectData(ToolData):
    result_path: str = Field(description="readings with detector scores, AnomalyScore, AnomalyFlag, kind, reason")
    cell_summary_path: str
    episodes_path: str
    metrics_path: str
    plot_path: str
    model_version: str | None = Field(description="anomaly_hybrid version used or trained (null: not registered)")
    trained: bool
    rows: int
    flagged: int
    kinds: dict[str, int] = Field(description="flagged readings by kind: statistical, sensor_fault, out_of_range")
    threshold: float
    worst_cells: list[str]
    ground_truth: dict[str, Any] | None = Field(default=None, description="metrics against IsAnomaly, when present")


class Visualize3DData(ToolData):
    html_path: str = Field(description="interactive 3D scatter; plotly.js from a copy beside it (offline)")
    png_path: str
    points: int = Field(description="readings plotted (a uniform random sample when the table is larger)")
    rows: int
    by_kind: dict[str, int]
    axes: list[str]
    html_bytes: int


class TrainAnomalyData(ToolData):
    model_version: str = Field(description="the anomaly_hybrid version registered")
    alias: str | None = Field(default=None, description="champion or challenger after the promotion decision")
    promoted: bool | None = None
    metrics_path: str
    threshold: float
    features: list[str]
    train_rows: int
    prior_rows: int = Field(default=0, description="readings of the prior fleet (prior_path) trained on with them")
    holdout_rows: int
    holdout_f1: float | None = Field(default=None, description="hybrid F1 on the held-out span (null: no labels)")
    holdout_f1_meaningful: bool | None = Field(
        default=None,
        description="false when the held-out span holds fewer than 100 labelled anomalous readings (its F1 is noise)",
    )
