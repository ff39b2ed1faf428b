"""The failure tools over MCP stdio: train, predict (artifacts, envelope data), errors."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pandas as pd
from bms_schema import write_table
from mcp_stdio import connect, envelope

FOLDER = "feature-three-failure-prediction-mcp"


def test_tools_over_stdio(workspace: Path) -> None:
    from bms_datagen.simulator import simulate_fleet

    # Raw 73-column packets (sentinels, duplicates, late packets) straight from the simulator.
    fleet = simulate_fleet(devices=1, cells_per_device=24, days=45, interval_minutes=60, seed=1, failure_rate=0.3)
    write_table(fleet, workspace / "data" / "fleet.parquet")
    write_table(fleet.drop(columns=["IsDead", "IsAnomaly", "AnomalyType"]), workspace / "data" / "unlabelled.csv")
    # An anomaly result table as bms_anomaly writes it (CellID, Timestamp, AnomalyFlag, ...).
    anomalies = pd.DataFrame(
        {
            "CellID": fleet["DeviceID"].astype(str) + "-" + fleet["CellNumber"].astype(str),
            "Timestamp": fleet["PacketDateTime"],
            "AnomalyFlag": fleet["CellNumber"] == 3,
            "AnomalyScore": 0.5,
        }
    )
    write_table(anomalies, workspace / "data" / "anomalies.parquet")

    async def scenario() -> None:
        async with connect(FOLDER) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"predict_cell_failure", "train_failure_model", "health_check"} <= names

            # Nothing registered: predict never trains; the error names the training tool.
            result = await client.call_tool("predict_cell_failure", {"data_path": "data/unlabelled.csv"})
            env = envelope(result)
            assert result.is_error and env["status"] == "error"
            assert "train_failure_model" in env["message"]
            assert not (workspace / "models" / "failure_classifier").exists() or not any(
                p.name.startswith("v") for p in (workspace / "models" / "failure_classifier").iterdir()
            )

            result = await client.call_tool(
                "train_failure_model", {"data_path": "data/fleet.parquet", "horizon_days": 7}
            )
            env = envelope(result)
            assert not result.is_error, env["message"]
            assert env["data"]["model"]["version"] == "v0001" and env["data"]["model"]["alias"] == "champion"
            assert {a["kind"] for a in env["artifacts"]} == {"report", "plot"}
            metrics = json.loads(Path(env["data"]["metrics_path"]).read_text())
            # A small fleet: model quality is asserted in test_model.py; here the numbers must be consistent.
            assert env["data"]["validation"]["roc_auc_7d"] == metrics["horizons"]["7d"]["model_roc_auc"]
            assert metrics["dead_state"]["trained"] is True
            assert set(metrics["horizons"]["7d"]["rules_roc_auc"]) >= {"ieee450_float_voltage", "ieee1188_ohmic"}

            health = envelope(await client.call_tool("health_check", {}))
            assert health["data"]["models"] == {"failure_classifier": "v0001"}

            result = await client.call_tool(
                "predict_cell_failure",
                {
                    "data_path": "data/unlabelled.csv",
                    "top_n": 5,
                    "horizon_days": 14,
                    "anomaly_path": "data/anomalies.parquet",
                },
            )
            env = envelope(result)
            assert not result.is_error, env["message"]
            data = env["data"]
            assert data["model"]["version"] == "v0001" and data["cells"] == 24
            probs = [c["FailureProbability"] for c in data["top_at_risk"]]
            assert len(probs) == 5 and probs == sorted(probs, reverse=True)
            high = [c["CellID"] for c in data["top_at_risk"] if c["RiskBand"] == "high"]
            assert data["failing_cell_ids"][: len(high)] == high
            table = pd.read_csv(data["table_path"])
            for column in (
                "DeviceID",
                "CellNumber",
                "FailureProbability",
                "StateOfHealth",
                "RemainingLifeDays",
                "RemainingLifeP10",
                "RemainingLifeP90",
                "RiskBand",
                "AlreadyDead",
                "TrendRule",
                "TopReasons",
            ):
                assert column in table.columns
            assert (table["HorizonDays"] == 14).all()
            dead = fleet.loc[fleet["IsDead"] == 1]
            dead_truth = set((dead["DeviceID"].astype(str) + "-" + dead["CellNumber"].astype(str)).unique())
            assert dead_truth
            assert set(table.loc[table["AlreadyDead"], "CellID"]) == dead_truth
            assert data["dead_cells"] == len(dead_truth)
            kinds = {Path(a["path"]).name: a["kind"] for a in env["artifacts"]}
            assert kinds == {
                "failure_predictions.csv": "table",
                "risk_ranking.png": "plot",
                "risk_drivers.png": "plot",
                "failure_metrics.json": "report",
            }
            for artifact in env["artifacts"]:
                assert Path(artifact["path"]).stat().st_size > 0
            manifest = json.loads((Path(env["log_path"]).parent / "manifest.json").read_text())
            assert [Path(i["path"]).name for i in manifest["inputs"]] == ["unlabelled.csv", "anomalies.parquet"]
            assert manifest["models"][0]["name"] == "failure_classifier" and manifest["models"][0]["version"] == "v0001"

            bad = await client.call_tool("predict_cell_failure", {"data_path": "/etc/hosts"})
            assert bad.is_error and "outside the workspace" in envelope(bad)["message"]
            bad = await client.call_tool(
                "predict_cell_failure", {"data_path": "data/fleet.parquet", "horizon_days": -1}
            )
            assert bad.is_error and "horizon_days must be a positive number of days, got -1" in envelope(bad)["message"]
            bad = await client.call_tool("train_failure_model", {"data_path": "data/unlabelled.csv"})
            assert bad.is_error and "training needs the label column 'IsDead'" in envelope(bad)["message"]

    anyio.run(scenario)
