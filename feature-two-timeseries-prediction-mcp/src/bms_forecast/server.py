"""MCP layer of feature-two-timeseries-prediction-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

from bms_schema.mcp_server import ToolServer

server = ToolServer(
    "feature-two-timeseries-prediction-mcp",
    packages=['pandas', 'numpy', 'xgboost', 'matplotlib', 'mcp'],
    instructions='Per-cell multi-parameter forecasts of BMS readings (global XGBoost models).',
)
server.add_health_check(models=['forecaster'])


def main() -> None:
    server.run_stdio()
