"""data-generator-mcp tools over a real stdio MCP connection."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pandas as pd

from mcp_stdio import connect, envelope

FOLDER = "data-generator-mcp"


def test_simulate_bms_fleet_over_stdio(workspace: Path) -> None:
    async def scenario() -> None:
        async with connect(FOLDER) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"health_check", "simulate_bms_fleet"} <= names
            args = {"devices": 2, "cells_per_device": 5, "days": 3, "interval_minutes": 30, "seed": 11,
                    "failure_rate": 0.2, "anomaly_rate": 0.02}
            first = envelope(await client.call_tool("simulate_bms_fleet", args))
            second = envelope(await client.call_tool("simulate_bms_fleet", args))
            assert first["status"] == "ok", first["message"]
            data = first["data"]
            path, truth = Path(data["path"]), Path(data["ground_truth_path"])
            assert path.parent.parent.parent == workspace / "runs"
            assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(
                Path(second["data"]["path"]).read_bytes()).digest()
            frame = pd.read_csv(path)
            assert len(frame) == data["rows"] and frame.shape[1] == 76
            assert data["base_rows"] == 2 * 5 * 144
            cells = pd.read_csv(truth)
            assert len(cells) == 10 and (cells.Fate == "failed").sum() == data["failed_cells"]
            kinds = {Path(a["path"]).name for a in first["artifacts"]}
            assert kinds == {"bms_fleet.csv", "bms_fleet_cells_truth.csv"}

            bad = await client.call_tool("simulate_bms_fleet", {"devices": 0})
            assert bad.is_error
            assert "'devices'" in envelope(bad)["message"]
            bad = await client.call_tool("simulate_bms_fleet", {"days": 0.001})
            assert bad.is_error and "gives no reading" in envelope(bad)["message"]

    anyio.run(scenario)
