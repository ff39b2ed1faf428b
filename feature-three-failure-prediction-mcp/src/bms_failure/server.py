"""MCP layer of feature-three-failure-prediction-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

from bms_schema.mcp_server import ToolServer

server = ToolServer(
    "feature-three-failure-prediction-mcp",
    packages=['pandas', 'numpy', 'scikit-learn', 'xgboost', 'matplotlib', 'mcp'],
    instructions='Which battery cells are likely to fail soon (XGBoost classifier).',
)
server.add_health_check(models=['failure_classifier'])


def main() -> None:
    server.run_stdio()
