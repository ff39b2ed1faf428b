"""Every server starts as a subprocess, answers tools/list fast, and health_check over stdio."""

from __future__ import annotations

import time

import anyio
import pytest
from mcp_stdio import SERVERS, connect, envelope


@pytest.mark.parametrize("folder", sorted(SERVERS.values()))
def test_server_lists_tools_and_is_healthy(folder: str, workspace) -> None:
    async def scenario() -> None:
        start = time.perf_counter()
        async with connect(folder) as client:
            tools = await client.list_tools()
            startup = time.perf_counter() - start
            names = {t.name for t in tools.tools}
            assert "health_check" in names
            for tool in tools.tools:
                assert tool.annotations is not None and tool.annotations.title
                assert tool.input_schema["type"] == "object"
            t0 = time.perf_counter()
            result = await client.call_tool("health_check", {})
            health_seconds = time.perf_counter() - t0
            env = envelope(result)
            assert not result.is_error
            assert env["status"] == "ok"
            assert env["data"]["workspace"]["writable"] is True
            assert env["data"]["workspace"]["path"] == str(workspace)
            assert env["data"]["threads"] == 1
            assert startup < 2.0, f"{folder} took {startup:.2f}s to answer initialize + tools/list"
            assert health_seconds < 1.0

            bad = await client.call_tool("health_check", {"nonsense": 1})
            assert bad.is_error
            assert "unknown argument" in envelope(bad)["message"]

    anyio.run(scenario)
