"""Start a BMS-Flux server as a real subprocess and talk MCP over stdio."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bms_agent.servers import ROOT, ServerSpec
from bms_agent.servers import SERVER_FOLDERS as SERVERS

__all__ = ["ROOT", "SERVERS", "ServerSpec", "connect", "envelope", "server_params"]


def server_params(folder: str, env: dict[str, str] | None = None) -> Any:
    """How the pipeline starts ``folder``'s server (this interpreter, the same environment passed on)."""
    path = ROOT / folder
    return ServerSpec(name=folder, command=sys.executable, args=(str(path / "server.py"),), cwd=path).params(env)


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
