"""MCP layer of data-generator-mcp: argument models and thin tool functions over the logic."""

from __future__ import annotations

from bms_schema.mcp_server import ToolServer

server = ToolServer(
    "data-generator-mcp",
    packages=['pandas', 'numpy', 'sdv', 'matplotlib', 'plotly', 'mcp'],
    instructions='Simulate realistic lead-acid battery fleets (with ground truth) and generate/evaluate/visualise SDV synthetic data.',
)
server.add_health_check(models=[])


def main() -> None:
    server.run_stdio()
