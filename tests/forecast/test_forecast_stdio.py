"""The forecast tools over real MCP stdio: train, predict (files and shapes), and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pandas as pd
from bms_schema import write_table
from forecast.synthetic import synthetic_readings
from mcp_stdio import connect, envelope

FOLDER = "feature-two-timeseries-prediction-mcp"
COLUMNS = ["Timestamp", "Target", "Step", "Forecast", "Lower", "Upper"]


def test_train_and_predict_over_stdio(workspace: Path) -> None:
    data = workspace / "data"
    frame = synthetic_readings(devices=2, cells=4, days=8, seed=3)
    write_table(frame, data / "strings.csv")
    write_table(frame.drop(columns="Timestamp"), data / "no_time.csv")
    short = frame.loc[frame["CellNumber"] == 1].groupby("DeviceID").head(8)
    write_table(short, data / "short.csv")

    async def scenario() -> None:
        async with connect(FOLDER) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"train_forecaster", "predict_cell_timeseries", "health_check"} <= names

            result = await client.call_tool(
                "train_forecaster", {"data_path": "data/strings.csv", "max_steps": 25, "max_train_pairs": 5000}
            )
            env = envelope(result)
            assert not result.is_error, env["message"]
            assert env["data"]["version"] == "v0001"
            assert set(env["data"]["targets"]) == {
                "CellVoltage",
                "CellTemperature",
                "CellSpecificGravity",
                "InstantaneousCurrent",
                "AmbientTemperature",
            }
            backtest = json.loads(Path(env["data"]["backtest_path"]).read_text())
            assert len(backtest["metrics"]["CellVoltage"]["by_horizon"]["model"]["mae"]) == 25
            assert list((workspace / "models" / "forecaster" / "v0001").glob("CellVoltage.*.ubj"))

            result = await client.call_tool(
                "predict_cell_timeseries", {"data_path": "data/strings.csv", "cell_id": "D2-3", "steps": 25}
            )
            env = envelope(result)
            assert not result.is_error, env["message"]
            assert env["data"]["model_version"] == "v0001" and env["data"]["trained_now"] is False
            table = pd.read_csv(env["data"]["forecast_path"])
            assert list(table.columns) == COLUMNS and len(table) == 5 * 25
            assert table.groupby("Target")["Step"].apply(list).map(lambda s: s == list(range(1, 26))).all()
            metrics = json.loads(Path(env["data"]["metrics_path"]).read_text())
            assert metrics["cell_id"] == "D2-3" and metrics["steps"] == 25
            assert metrics["targets"]["CellVoltage"]["backtest"]["model"]["mae_mean"] > 0
            assert Path(env["data"]["plot_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert {a["kind"] for a in env["artifacts"]} == {"table", "metrics", "plot"}

            bad = {
                "steps must be at least 1": {"cell_id": "D1-1", "steps": 0},
                "steps=26 is above the maximum of 25 this forecaster was trained for": {"cell_id": "D1-1", "steps": 26},
                "steps=500 is above the documented maximum of 96": {"cell_id": "D1-1", "steps": 500},
                "unknown cell 'D7-1': valid ids are D1-1, D1-2, D1-3, D1-4, D2-1": {"cell_id": "D7-1"},
                "cell number 2 exists on 2 devices (D1-2, D2-2)": {"cell_id": "2"},
            }
            for expected, args in bad.items():
                result = await client.call_tool("predict_cell_timeseries", {"data_path": "data/strings.csv", **args})
                assert result.is_error and expected in envelope(result)["message"], envelope(result)["message"]

            others = {
                "outside the workspace": {"data_path": "/etc/hostname", "cell_id": "D1-1"},
                "'Timestamp' is missing": {"data_path": "data/no_time.csv", "cell_id": "D1-1"},
                "has only 8 readings: the forecaster needs at least 12": {
                    "data_path": "data/short.csv",
                    "cell_id": "D1-1",
                },
            }
            for expected, args in others.items():
                result = await client.call_tool("predict_cell_timeseries", args)
                assert result.is_error and expected in envelope(result)["message"], envelope(result)["message"]
                assert envelope(result)["artifacts"] == []

            health = envelope(await client.call_tool("health_check", {}))
            assert health["data"]["models"] == {"forecaster": "v0001"} and health["data"]["models_present"]

    anyio.run(scenario)


def test_predict_without_a_model_names_the_training_tool_and_writes_nothing(workspace: Path) -> None:
    frame = synthetic_readings(devices=1, cells=3, days=6, seed=5)
    write_table(frame, workspace / "data" / "one.parquet")

    async def scenario() -> None:
        async with connect(FOLDER) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["train_forecaster"].annotations.destructive_hint is True
            assert tools["predict_cell_timeseries"].annotations.destructive_hint is False
            assert "train_if_missing" not in tools["predict_cell_timeseries"].input_schema["properties"]
            result = await client.call_tool(
                "predict_cell_timeseries",
                {"data_path": "data/one.parquet", "cell_id": "2", "steps": 6, "output_format": "parquet"},
            )
            env = envelope(result)
            assert result.is_error
            assert env["message"] == (
                "no 'forecaster' model is registered in this workspace: train one first with "
                "the train_forecaster tool (predict tools never train)"
            )
            assert env["artifacts"] == []
            refused = await client.call_tool(
                "predict_cell_timeseries", {"data_path": "data/one.parquet", "cell_id": "2", "model_version": "v0009"}
            )
            assert refused.is_error and "has no version v0009" in envelope(refused)["message"]
        assert not (workspace / "models").exists() or list((workspace / "models").rglob("*")) == []

    anyio.run(scenario)


def test_train_tool_bad_inputs_in_process(workspace: Path, sample_csv: Path) -> None:
    """The same MCP layer in-process (no subprocess): argument and data errors of train_forecaster."""
    from bms_forecast.server import server

    env = server.call("train_forecaster", {"data_path": str(sample_csv), "max_steps": 200})
    assert env.status == "error" and env.message == "max_steps must be between 1 and 96, got 200"
    env = server.call("train_forecaster", {"data_path": str(sample_csv)})  # 50 readings per cell
    assert env.status == "error"
    assert env.message == (
        "not enough history to train: each cell needs at least 86 readings for max_steps=48 "
        "(the longest cell has 50); give more history or a smaller max_steps"
    )
    env = server.call("train_forecaster", {"data_path": str(sample_csv), "strategy": "magic"})
    assert env.status == "error" and "'strategy'" in env.message
    env = server.call("train_forecaster", {"data_path": "../outside.csv"})
    assert env.status == "error" and "outside the workspace" in env.message
    assert not (workspace / "models" / "forecaster").exists() or not any(
        (workspace / "models" / "forecaster").glob("v*")
    )
