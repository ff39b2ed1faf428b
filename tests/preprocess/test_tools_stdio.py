"""The five tools over MCP stdio: outputs, artifacts, registered scaler, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pandas as pd
from mcp_stdio import connect, envelope

FOLDER = "load-preprocessdata-mcp"
CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]
TOOLS = {
    "health_check",
    "preprocess_battery_data_tool",
    "clean_and_filter_data",
    "engineer_battery_features",
    "impute_battery_data_mice",
    "impute_and_scale_battery_data",
}


def test_tools_over_stdio(workspace, sample_csv):
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def scenario() -> None:
        async with connect(FOLDER) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert TOOLS <= names

            result = await client.call_tool(
                "preprocess_battery_data_tool",
                {"data_path": str(sample_csv), "chunksize": 200},
                progress_callback=on_progress,
            )
            env = envelope(result)
            assert not result.is_error, env["message"]
            data = env["data"]
            assert data["rows"] == 750 and data["rows_in"] == 750 and data["sentinel_rows"] == 146
            assert data["imputed_values"]["CellVoltage"] == 146 and data["chunks"] > 1
            assert data["scaler"] == {"name": "bms_scaler", "version": "v0001", "columns": 21}
            table = pd.read_csv(data["output_path"])
            assert len(table) == 750 and table[CORE].isna().sum().sum() == 0
            kinds = {Path(a["path"]).name: a["kind"] for a in env["artifacts"]}
            assert kinds == {
                "preprocessed.csv": "table",
                "data_quality.json": "report",
                "quality_timeline.png": "plot",
                "distributions.png": "plot",
            }
            report = json.loads(Path(data["report_path"]).read_text())
            assert report["cells"] == 15 and report["imputation"]["mice_quality"]["CellVoltage"]["masked_values"] == 60
            for artifact in env["artifacts"]:
                assert Path(artifact["path"]).stat().st_size > 0
            assert (workspace / "models" / "bms_scaler" / "latest").exists()

            clean = envelope(
                await client.call_tool(
                    "clean_and_filter_data",
                    {"data_path": str(sample_csv), "output_format": "parquet", "run_id": env["run_id"]},
                )
            )
            assert clean["status"] == "ok" and clean["run_id"] == env["run_id"]
            cleaned = pd.read_parquet(clean["data"]["output_path"])
            assert cleaned["CellVoltage"].isna().sum() == 146 and "CellVoltage_Imputed" not in cleaned

            # modular steps chain on the previous step's output (canonical parquet)
            imputed = envelope(
                await client.call_tool("impute_battery_data_mice", {"data_path": clean["data"]["output_path"]})
            )
            assert imputed["status"] == "ok", imputed["message"]
            assert imputed["data"]["imputed_values"]["CellVoltage"] == 146
            feats = envelope(
                await client.call_tool(
                    "engineer_battery_features", {"data_path": imputed["data"]["output_path"], "window": 6}
                )
            )
            assert feats["status"] == "ok", feats["message"]
            ft = pd.read_csv(feats["data"]["output_path"])
            assert ft["VoltageRollStd"].notna().all() and ft["CellVoltage"].notna().all()
            scaled = envelope(
                await client.call_tool(
                    "impute_and_scale_battery_data",
                    {"data_path": feats["data"]["output_path"], "impute": "interpolate"},
                )
            )
            assert scaled["status"] == "ok", scaled["message"]
            assert scaled["data"]["scaler"]["version"] == "v0002"
            st = pd.read_csv(scaled["data"]["output_path"])
            assert np.isclose(st["VoltageRollMean_scaled"].mean(), 0, atol=1e-9)
            assert list(st.columns).count("CellVoltage_scaled") == 1

            health = envelope(await client.call_tool("health_check", {}))
            assert health["data"]["models"]["bms_scaler"] == "v0002"
        assert progress and max(progress) <= 1.0

    anyio.run(scenario)


def _bad_inputs(workspace: Path, raw: pd.DataFrame) -> dict[str, tuple[dict, str]]:
    data = workspace / "data"
    (data / "empty.csv").write_text("")
    (data / "notes.csv").write_text('{"cells": [1, 2, 3]}\n')
    raw.drop(columns="CellVoltage").to_csv(data / "no_voltage.csv", index=False)
    text = raw.astype({"CellTemperature": object})
    text.loc[5, "CellTemperature"] = "hot"
    text.to_csv(data / "text_temp.csv", index=False)
    raw.assign(CellTemperature=np.nan).to_csv(data / "no_temp.csv", index=False)
    raw.iloc[:1].to_csv(data / "single.csv", index=False)
    (workspace.parent / "outside.csv").write_text("a,b\n1,2\n")
    return {
        "missing file": ({"data_path": "data/nothing.csv"}, "file not found: "),
        "outside workspace": ({"data_path": "../outside.csv"}, "outside the workspace and allowed directories"),
        "empty file": ({"data_path": "data/empty.csv"}, "file is empty: empty.csv has 0 bytes"),
        "not a table": ({"data_path": "data/notes.csv"}, "notes.csv is not a table"),
        "missing column": ({"data_path": "data/no_voltage.csv"}, "required column 'CellVoltage' is missing"),
        "text column": (
            {"data_path": "data/text_temp.csv"},
            "column 'CellTemperature' holds text where numbers belong",
        ),
        "all missing": ({"data_path": "data/no_temp.csv"}, "column 'CellTemperature' has no usable value"),
        "single row": ({"data_path": "data/single.csv"}, "only 1 row after cleaning"),
        "chunksize 0": (
            {"data_path": "data/single.csv", "chunksize": 0},
            "chunksize must be a positive number of rows, got 0",
        ),
        "chunksize negative": (
            {"data_path": "data/single.csv", "chunksize": -3},
            "chunksize must be a positive number of rows, got -3",
        ),
    }


def test_bad_inputs_over_stdio(workspace, raw_sample):
    cases = _bad_inputs(workspace, raw_sample)

    async def scenario() -> None:
        async with connect(FOLDER) as client:
            for name, (args, expected) in cases.items():
                for tool in ("clean_and_filter_data", "preprocess_battery_data_tool"):
                    for extra in ({}, {"chunksize": 300}):
                        call = {**extra, **args}
                        result = await client.call_tool(tool, call)
                        env = envelope(result)
                        assert result.is_error and env["status"] == "error", (name, tool, call)
                        assert expected in env["message"], (name, tool, env["message"])
                        assert env["artifacts"] == []
            # no partial output anywhere: every step folder holds only its manifest and log
            for step in (workspace / "runs").glob("*/*"):
                if step.is_dir():
                    assert {p.name for p in step.iterdir()} <= {"manifest.json", "tool.log"}, step
            health = await client.call_tool("health_check", {})
            assert not health.is_error  # the server keeps serving

    anyio.run(scenario)
