"""MCP layer of feature-one-anamoly-detection-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

from bms_schema.mcp_server import ToolServer

server = ToolServer(
    "feature-one-anamoly-detection-mcp",
    packages=['pandas', 'numpy', 'scikit-learn', 'torch', 'skops', 'matplotlib', 'plotly', 'mcp'],
    instructions='Hybrid anomaly detection on BMS readings (Isolation Forest + one-class SVM + VAE).',
)
server.add_health_check(models=['anomaly_hybrid'])


def main() -> None:
    server.run_stdio()
