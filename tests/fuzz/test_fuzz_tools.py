"""Every class of bad input to every tool of every server, over MCP stdio.

For each call: an error (or, for ``ok_allowed`` classes, a warning) whose message names the
problem - never "internal error", a traceback or "Error executing tool"; a failed call's step
folder holds nothing but its log and manifest. After each server's calls: ``health_check`` is
healthy and nothing is registered under ``models/``. Bounded and seeded: the same ~100 calls
every run, five server starts.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import anyio
import pytest
from bms_schema import ModelRegistry
from fuzz_cases import NO_TRACE, SERVERS, cases, make_files
from mcp_stdio import connect, envelope

ALL = cases()


def test_every_class_reaches_every_kind_of_tool() -> None:
    classes = Counter(c.cls for c in ALL)
    assert len(ALL) >= 90 and len(classes) >= 15, classes
    for cls in ("nul_path", "corrupt_parquet", "binary_csv", "traversal"):
        assert {c.server for c in ALL if c.cls == cls} >= set(SERVERS) - {"data-generator-mcp"}, cls
    assert {c.tool for c in ALL if c.cls == "nul_path"} >= {
        "preprocess_battery_data_tool",
        "clean_and_filter_data",
        "engineer_battery_features",
        "impute_battery_data_mice",
        "impute_and_scale_battery_data",
        "detect_anomalies",
        "visualize_anomalies_3d",
        "train_forecaster",
        "predict_cell_timeseries",
        "predict_cell_failure",
        "train_failure_model",
        "sdv_generate",
        "sdv_evaluate",
        "sdv_visualize",
    }


@pytest.mark.parametrize("server", SERVERS)
def test_bad_inputs_over_stdio(workspace: Path, sample_csv: Path, server: str) -> None:
    make_files(workspace, sample_csv)
    mine = [c for c in ALL if c.server == server]
    problems: list[str] = []

    async def scenario() -> None:
        async with connect(server) as client:
            for case in mine:
                result = await client.call_tool(case.tool, case.args)
                env = envelope(result)
                message = str(env.get("message", ""))
                if NO_TRACE.search(message):
                    problems.append(f"{case.label}: internal error / traceback: {message[:300]}")
                    continue
                if env["status"] != "error" and not case.ok_allowed:
                    problems.append(f"{case.label}: accepted: {message[:300]}")
                    continue
                if env["status"] == "error" and not result.is_error:
                    problems.append(f"{case.label}: error envelope not marked as an MCP error")
                if not re.search(case.expect, message, re.S):
                    problems.append(
                        f"{case.label}: message does not name the problem ({case.expect!r}): {message[:300]}"
                    )
                if env["status"] == "error" and env.get("log_path"):
                    left = sorted(p.name for p in Path(env["log_path"]).parent.iterdir())
                    if left != ["manifest.json", "tool.log"]:
                        problems.append(f"{case.label}: files left in the failed step: {left}")
                if env["status"] == "error" and env.get("artifacts"):
                    problems.append(f"{case.label}: artifacts listed on an error: {env['artifacts']}")
            health = envelope(await client.call_tool("health_check", {}))
            if health["status"] != "ok" or health["data"]["status"] != "healthy":
                problems.append(f"health_check after the bad calls: {health['message']}")

    anyio.run(scenario)
    registry = ModelRegistry()
    registered = {name: registry.versions(name) for name in registry.names() if registry.versions(name)}
    assert not registered, f"bad calls registered models: {registered}"
    assert not problems, f"{len(problems)} of {len(mine)} calls to {server} went wrong:\n" + "\n".join(problems)
