"""Every server starts as a subprocess, answers tools/list fast, and health_check over stdio."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import anyio
import pytest
from mcp_stdio import SERVERS, connect, envelope

#: Libraries no server may import before a tool needs them (each costs 0.5-4 s of start-up).
HEAVY = ("torch", "sklearn", "xgboost", "lightgbm", "miceforest", "sdv", "matplotlib", "scipy", "dask", "plotly")
PACKAGES = ("bms_preprocess", "bms_datagen", "bms_anomaly", "bms_forecast", "bms_failure")
#: A hang guard, not a speed goal: "fast" is checked machine-independently by the import test below.
STARTUP_LIMIT_S = 15.0


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
            assert startup < STARTUP_LIMIT_S, f"{folder} took {startup:.2f}s to answer initialize + tools/list"
            assert health_seconds < STARTUP_LIMIT_S

            bad = await client.call_tool("health_check", {"nonsense": 1})
            assert bad.is_error
            assert "unknown argument" in envelope(bad)["message"]

    anyio.run(scenario)


@pytest.mark.parametrize("package", PACKAGES)
def test_server_builds_its_tool_list_without_heavy_imports(package: str) -> None:
    """What makes start-up fast on any machine: building the server (its tools, schemas and
    health check, all that ``tools/list`` needs) imports none of the heavy libraries."""
    code = (
        "import json, sys\n"
        f"import {package}.server as m\n"
        "m.server.build()\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{package}.server imports {loaded} at start-up; import them inside the tool that needs them"
