"""Typed ``data`` of feature-three-failure-prediction-mcp's tools."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bms_schema.mcp_server import ToolData


class PredictFailureData(ToolData):
    horizon_days: float
    cells: int
    dead_cells: int
    failing_cell_ids: list[str] = Field(description="living cells at high risk within the horizon")
    top_at_risk: list[dict[str, Any]] = Field(description="the riskiest living cells with their reasons")
    table_path: str = Field(description="per-cell table: FailureProbability, RiskBand, AlreadyDead, TopReasons")
    metrics_path: str


class TrainFailureData(ToolData):
    model: dict[str, Any] = Field(description="name, version, alarm threshold of the registered model")
    horizon_days: float
    metrics_path: str
