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
            args = {
                "devices": 2,
                "cells_per_device": 5,
                "days": 3,
                "interval_minutes": 30,
                "seed": 11,
                "failure_rate": 0.2,
                "anomaly_rate": 0.02,
            }
            first = envelope(await client.call_tool("simulate_bms_fleet", args))
            second = envelope(await client.call_tool("simulate_bms_fleet", args))
            assert first["status"] == "ok", first["message"]
            data = first["data"]
            path, truth = Path(data["path"]), Path(data["ground_truth_path"])
            assert path.parent.parent.parent == workspace / "runs"
            assert (
                hashlib.sha256(path.read_bytes()).digest()
                == hashlib.sha256(Path(second["data"]["path"]).read_bytes()).digest()
            )
            frame = pd.read_csv(path)
            assert len(frame) == data["rows"] and frame.shape[1] == 76
            assert data["base_rows"] == 2 * 5 * 144
            cells = pd.read_csv(truth)
            assert len(cells) == 10 and (cells.Fate == "failed").sum() == data["failed_cells"]
            kinds = {Path(a["path"]).name for a in first["artifacts"]}
            assert kinds == {"bms_fleet.csv", "bms_fleet_cells_truth.csv", "bms_fleet_soh.csv"}
            soh = pd.read_csv(data["soh_path"])
            assert len(soh) == 10 * 4 and soh.StateOfHealth.between(0, 100).all()  # daily over 3 days + the last
            vrla = envelope(
                await client.call_tool(
                    "simulate_bms_fleet",
                    {"devices": 1, "cells_per_device": 6, "days": 1, "chemistry": "vrla", "discharge_every_days": 0},
                )
            )
            assert vrla["status"] == "ok", vrla["message"]
            assert "CellSpecificGravity" not in pd.read_csv(vrla["data"]["path"]).columns
            assert vrla["data"]["discharge_events"] == 0 and vrla["data"]["chemistry"] == "vrla"
            rec = envelope(
                await client.call_tool("simulate_cycle_record", {"cells": 1, "faults": ["voltage_sag", "hot_spot"]})
            )
            assert rec["status"] == "ok", rec["message"]
            readings = pd.read_csv(rec["data"]["path"])
            assert len(readings) == 16_000 and set(readings.AnomalyType) == {"none", "voltage_sag", "hot_spot"}
            assert readings.IsAnomaly.sum() == rec["data"]["anomaly_rows"] == 36 + 240
            assert len(pd.read_csv(rec["data"]["faults_path"])) == 2
            bad = await client.call_tool("simulate_cycle_record", {"faults": ["meltdown"]})
            assert bad.is_error and "'faults.0'" in envelope(bad)["message"]

            bad = await client.call_tool("simulate_bms_fleet", {"devices": 0})
            assert bad.is_error
            assert "'devices'" in envelope(bad)["message"]
            bad = await client.call_tool("simulate_bms_fleet", {"days": 0.001})
            assert bad.is_error and "gives no reading" in envelope(bad)["message"]

    anyio.run(scenario)


def _child_pids() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)}


def _torch_loaded_in_servers(before: set[int]) -> bool:
    """Whether a process started by this test (a child not in ``before``: not a server of an earlier test's
    fixture still running in this xdist worker) has torch's library mapped."""
    import psutil

    children = [c for c in psutil.Process().children(recursive=True) if c.pid not in before]
    assert children, "the test's server process was not found"
    return any("libtorch" in m.path for child in children for m in child.memory_maps())


def test_sdv_tools_over_stdio(workspace: Path) -> None:
    from bms_datagen.simulator import simulate_fleet, to_minimal_table
    from bms_schema.reader import write_table

    folder = workspace / "data" / "fleet"
    folder.mkdir(parents=True)
    write_table(
        to_minimal_table(simulate_fleet(devices=1, cells_per_device=4, days=1, interval_minutes=30, seed=2)),
        folder / "readings.csv",
    )

    before = _child_pids()

    async def scenario() -> None:
        async with connect(FOLDER) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"sdv_generate", "sdv_sample", "sdv_evaluate", "sdv_visualize"} <= names

            early = await client.call_tool("sdv_evaluate", {"folder_name": "data/fleet"})
            assert early.is_error
            assert "no synthetic data has been generated from" in envelope(early)["message"]

            gen = envelope(
                await client.call_tool("sdv_generate", {"folder_name": "data/fleet", "seed": 4, "num_rows": 120})
            )
            assert gen["status"] == "ok", gen["message"]
            data = gen["data"]
            assert data["synthesizer"] == "gaussian_copula" and data["metadata_detected"] is True
            assert data["detected_types"]["readings"]["IsDead"] == "boolean"
            assert data["tables"]["readings"]["synthetic_rows"] == 120
            assert data["model"] == {"name": "sdv-fleet", "version": "v0001"}
            assert Path(data["synthetic_folder"]).parent.parent.parent == workspace / "runs"

            more = envelope(
                await client.call_tool("sdv_sample", {"model_name": "sdv-fleet", "num_rows": 120, "seed": 4})
            )
            assert more["status"] == "ok", more["message"]
            assert (
                Path(more["data"]["paths"]["readings"]).read_bytes()
                == Path(data["tables"]["readings"]["path"]).read_bytes()
            )

            ev = envelope(await client.call_tool("sdv_evaluate", {"folder_name": "data/fleet"}))
            assert ev["status"] == "ok", ev["message"]
            assert 0.5 < ev["data"]["overall_score"] <= 1.0
            assert set(ev["data"]["properties"]) == {"Column Shapes", "Column Pair Trends"}
            assert ev["data"]["privacy"]["readings"]["copied_share"] < 0.05
            assert Path(ev["data"]["report_path"]).name == "evaluation.json"

            run_id = ev["run_id"]
            plots = []
            for column in ("CellVoltage", "AnomalyType"):
                vis = envelope(
                    await client.call_tool(
                        "sdv_visualize",
                        {
                            "folder_name": "data/fleet",
                            "table_name": "readings",
                            "column_name": column,
                            "run_id": run_id,
                        },
                    )
                )
                assert vis["status"] == "ok", vis["message"]
                plots.append(vis["data"])
            run_dir = workspace / "runs" / run_id
            assert sorted(p.name for p in run_dir.rglob("plotly.min.js")) == ["plotly.min.js"]
            for plot in plots:
                png, html = Path(plot["png_path"]), Path(plot["html_path"])
                assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                text = html.read_text()
                assert 'src="../plotly.min.js"' in text and len(text) < 200_000
            assert plots[0]["kind"] == "numerical" and plots[1]["kind"] == "categorical"
            # generating, evaluating and plotting with GaussianCopula never loads torch (bms_datagen.sdv_import)
            assert not _torch_loaded_in_servers(before)

            for args, expected in [
                ({"folder_name": "data/fleet", "table_name": "nope", "column_name": "x"}, "table 'nope' not found"),
                (
                    {"folder_name": "data/fleet", "table_name": "readings", "column_name": "Nope"},
                    "column 'Nope' not found in table 'readings'",
                ),
                ({"folder_name": "/etc", "table_name": "readings", "column_name": "x"}, "outside the workspace"),
            ]:
                bad = await client.call_tool("sdv_visualize", args)
                assert bad.is_error and expected in envelope(bad)["message"], envelope(bad)["message"]
            bad = await client.call_tool("sdv_generate", {"folder_name": "data/missing"})
            assert bad.is_error and "folder not found" in envelope(bad)["message"]
            bad = await client.call_tool("sdv_generate", {"folder_name": "data/fleet", "synthesizer": "gan"})
            assert bad.is_error and "'synthesizer'" in envelope(bad)["message"]
            bad = await client.call_tool("sdv_sample", {"model_name": "sdv-unknown"})
            assert bad.is_error and "no model 'sdv-unknown'" in envelope(bad)["message"]

    anyio.run(scenario)
