"""The anomaly tools over MCP stdio: train + score, score with the registered model, 3D plot, errors."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pandas as pd
from anomaly_synthetic import make_readings
from mcp_stdio import connect, envelope

FOLDER = "feature-one-anamoly-detection-mcp"


def test_detect_and_visualise_over_stdio(workspace: Path) -> None:
    data = workspace / "data" / "readings.csv"
    make_readings(devices=2, cells=6, steps=300, seed=1).to_csv(data, index=False)

    async def scenario() -> None:
        async with connect(FOLDER) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"train_anomaly_detector", "detect_anomalies", "visualize_anomalies_3d", "health_check"} <= names

            # predicting without a model refuses, names the training tool and writes no model
            result = await client.call_tool("detect_anomalies", {"data_path": "data/readings.csv"})
            assert result.is_error and "train_anomaly_detector" in envelope(result)["message"]
            assert not (workspace / "models" / "anomaly_hybrid").exists()

            result = await client.call_tool(
                "train_anomaly_detector", {"data_path": "data/readings.csv", "contamination": 0.03}
            )
            fit = envelope(result)
            assert not result.is_error, fit["message"]
            assert fit["data"]["model_version"] == "v0001" and fit["data"]["alias"] == "champion"
            assert fit["data"]["holdout_f1"] >= 0.5 and "first model" in fit["data"]["decision"]["reason"]
            training = json.loads(Path(fit["data"]["metrics_path"]).read_text())["ground_truth"]
            assert training["scope"].startswith("held-out latest 30%")
            assert training["hybrid"]["f1"] == fit["data"]["holdout_f1"]

            result = await client.call_tool("detect_anomalies", {"data_path": "data/readings.csv"})
            trained = envelope(result)
            assert not result.is_error, trained["message"]
            assert trained["status"] == "ok" and trained["data"]["model_version"] == "v0001"
            kinds = {a["path"].rsplit("/", 1)[-1]: a["kind"] for a in trained["artifacts"]}
            assert kinds == {
                "anomalies.csv": "table",
                "cell_summary.csv": "table",
                "worst_episodes.csv": "table",
                "metrics.json": "report",
                "scores_over_time.png": "plot",
            }
            table = pd.read_csv(trained["data"]["result_path"])
            assert len(table) == 3600 and {
                "IsAnomaly",
                "AnomalyType",
                "AnomalyScore",
                "AnomalyFlag",
                "AnomalyKind",
                "AnomalyReason",
                "IForestScore",
                "OCSVMScore",
                "VAEScore",
            } <= set(table.columns)
            assert (table.loc[table["AnomalyKind"] == "sensor_fault", "AnomalyFlag"] == 1).all()
            truth = json.loads(Path(trained["data"]["metrics_path"]).read_text())["ground_truth"]
            assert truth["scope"].startswith("all rows")
            assert truth["hybrid"]["f1"] >= 0.5 and truth["hybrid"]["pr_auc"] >= 0.6
            assert set(truth["detectors"]) == {"IsolationForest", "OneClassSVM", "VAE"}
            assert trained["data"]["ground_truth"]["seed_rule_top5pct"]["f1"] == truth["seed_rule_top5pct"]["f1"]

            result = await client.call_tool(
                "detect_anomalies", {"data_path": "data/readings.csv", "model_version": "v0001"}
            )
            scored = envelope(result)
            assert not result.is_error, scored["message"]
            assert scored["data"]["trained"] is False and scored["data"]["model_version"] == "v0001"
            again = pd.read_csv(scored["data"]["result_path"])
            assert (again["AnomalyFlag"].to_numpy() == table["AnomalyFlag"].to_numpy()).all()

            result = await client.call_tool(
                "visualize_anomalies_3d", {"result_csv": trained["data"]["result_path"], "max_points": 1000}
            )
            plot = envelope(result)
            assert not result.is_error, plot["message"]
            assert plot["data"]["points"] == 1000 and plot["data"]["rows"] == 3600
            assert plot["data"]["html_bytes"] < 400_000
            assert Path(plot["data"]["png_path"]).stat().st_size > 10_000

            result = await client.call_tool(
                "visualize_anomalies_3d", {"result_csv": trained["data"]["result_path"], "z": "Humidity"}
            )
            assert result.is_error
            assert "z axis column 'Humidity' is not in the result table" in envelope(result)["message"]

            result = await client.call_tool("detect_anomalies", {"data_path": "/etc/passwd"})
            assert result.is_error
            assert "outside the workspace and allowed directories" in envelope(result)["message"]

            result = await client.call_tool(
                "train_anomaly_detector", {"data_path": "data/readings.csv", "contamination": 0.9}
            )
            assert result.is_error and "contamination" in envelope(result)["message"]

    anyio.run(scenario)
