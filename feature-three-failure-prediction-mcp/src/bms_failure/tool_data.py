"""Typed ``data`` of feature-three-failure-prediction-mcp's tools."""

from __future__ import annotations

from typing import Any

from bms_schema.mcp_server import ToolData
from pydantic import Field


class PredictFailureData(ToolData):
    horizon_days: float
    cells: int
    dead_cells: int
    failing_cell_ids: list[str] = Field(description="alarmed living cells (death within 30 days likely)")
    alarms: list[dict[str, Any]] = Field(
        default_factory=list,
        description="alarmed cells: trigger, lead time "
        "(expected remaining life, days), recommended IEEE 450/1188 action",
    )
    unknown_cell_ids: list[str] = Field(default_factory=list, description="cells not scored: inputs missing")
    top_at_risk: list[dict[str, Any]] = Field(
        description="the riskiest living cells: probability, remaining life "
        "p10/p50/p90, state of health, trend to threshold, reasons"
    )
    table_path: str = Field(
        description="per-cell table: FailureProbability (at horizon_days), StateOfHealth, "
        "RemainingLifeDays/P10/P90, FailureProbability7d/14d/30d, RiskBand, Alarm, "
        "AlarmTrigger, RecommendedAction, TrendDaysToThreshold, TrendRule, TopReasons"
    )
    metrics_path: str


class TrainFailureData(ToolData):
    model: dict[str, Any] = Field(description="name, version, alias (champion/challenger), alarm threshold")
    registration: dict[str, Any] = Field(
        default_factory=dict, description="the promotion decision with both models' figures on the same held-out cells"
    )
    validation: dict[str, Any] = Field(
        default_factory=dict,
        description="out-of-fold ROC-AUC at 7/14/30 days vs "
        "the best IEEE rule, remaining-life error and coverage, monthly alarm share",
    )
    horizon_days: float
    metrics_path: str
