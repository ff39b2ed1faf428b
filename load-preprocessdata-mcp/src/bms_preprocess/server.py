"""MCP layer of load-preprocessdata-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

from bms_schema.mcp_server import ToolServer

server = ToolServer(
    "load-preprocessdata-mcp",
    packages=['pandas', 'numpy', 'pyarrow', 'scikit-learn', 'miceforest', 'lightgbm', 'skops', 'matplotlib', 'mcp'],
    instructions='Clean, engineer features, MICE-impute and scale battery (BMS) telemetry.',
)
server.add_health_check(models=['bms_scaler'])


def main() -> None:
    server.run_stdio()
