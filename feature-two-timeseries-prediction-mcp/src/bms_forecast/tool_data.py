"""Typed ``data`` of feature-two-timeseries-prediction-mcp's tools."""

from __future__ import annotations

from typing import Any

from bms_schema.mcp_server import ToolData
from pydantic import Field


class TrainForecastData(ToolData):
    model: str
    version: str
    model_dir: str
    targets: dict[str, dict[str, Any]] = Field(description="per measurement: strategy and backtest metrics")
    backtest_path: str
    alias: str | None = Field(default=None, description="champion or challenger after the promotion decision")
    promoted: bool | None = None
    decision: dict[str, Any] = Field(
        default_factory=dict,
        description="the promotion decision: both models' held-out MASE, the champion compared with, the reason",
    )


class PredictForecastData(ToolData):
    cell_id: str
    steps: int
    targets: list[str]
    rows: int
    model_version: str
    trained_now: bool
    forecast_path: str = Field(description="Target, Step, Timestamp, Forecast and interval per row")
    metrics_path: str
    plot_path: str
    first_step: dict[str, float] = Field(description="the first forecast value of each target")
