"""Start a BMS-Flux server as a real subprocess and talk MCP over stdio."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {
    "preprocess": "load-preprocessdata-mcp",
    "datagen": "data-generator-mcp",
    "anomaly": "feature-one-anamoly-detection-mcp",
    "forecast": "feature-two-timeseries-prediction-mcp",
    "failure": "feature-three-failure-prediction-mcp",
}


def server_params(folder: str, env: dict[str, str] | None = None) -> Any:
    from mcp import StdioServerParameters

    merged = {k: v for k, v in os.environ.items() if k.startswith(("BMS_", "PATH", "HOME", "MPL", "OMP"))}
    merged.update(env or {})
    return StdioServerParameters(command=sys.executable, args=[str(ROOT / folder / "server.py")], env=merged,
                                 cwd=str(ROOT / folder))


@asynccontextmanager
async def connect(folder: str, env: dict[str, str] | None = None) -> AsyncIterator[Any]:
    from mcp import Client

    async with Client(server_params(folder, env), mode="legacy") as client:
        yield client


def envelope(result: Any) -> dict[str, Any]:
    """The tool envelope of a CallToolResult (structured content, else the JSON text)."""
    if result.structured_content:
        return dict(result.structured_content)
    return json.loads(result.content[0].text)
