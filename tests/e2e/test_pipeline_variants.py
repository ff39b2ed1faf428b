"""The pipeline on data like a user's own (issue 13): no deaths, no labels, VRLA without SG, one cell,
no discharge, 1-minute and 60-minute intervals. Each variant exits 0 and every stage says what it did."""

from __future__ import annotations

from pathlib import Path

import pytest
from bms_agent.cli_pipeline import run_pipeline
from bms_agent.state import PipelineOptions

FAST = dict(
    skip=["synthetic", "synthetic_eval", "synthetic_plot"],
    forecast_cells=1,
    forecast_steps=4,
    horizon_days=2,
    timeout=180,
    seed=3,
    anomaly_prior_rows=17_280,  # a smaller prior fleet than the default 69,120 readings (the same stage)
)


def _run(workspace: Path, **variant):
    result = run_pipeline(PipelineOptions(**{**FAST, **variant}), workspace, quiet=True)
    assert result.exit_code == 0, result.error
    status = {n: r.status for n, r in result.state.stages.items()}
    lines = {n: r.line() for n, r in result.state.stages.items()}
    assert all(lines[n] for n in status), lines  # every stage says something
    return result, status, lines


@pytest.mark.slow
def test_vrla_hourly_healthy_fleet_without_labels(workspace: Path) -> None:
    result, status, lines = _run(
        workspace,
        devices=1,
        cells_per_device=6,
        days=5,
        interval_minutes=60,
        chemistry="vrla",
        no_labels=True,
        failure_rate=0.0,
    )
    # no death and no failure model in the workspace: one is trained on the embedded simulated fleet
    assert status["failure_fleet"] == "ok" and "no cell dies in the readings" in lines["failure_fleet"]
    assert status["failure_train"] == "ok" and "failure_classifier v0001" in lines["failure_train"]
    assert "model v0001" in lines["failure"] and "of 6 cells" in lines["failure"]
    assert "no IsAnomaly labels" in lines["anomaly_train"]
    # 720 readings: the detector trains on them with a simulated VRLA fleet at their interval
    assert status["anomaly_prior"] == "ok" and "1 devices x 24 cells x 720 readings" in lines["anomaly_prior"]
    assert "trained on 504 readings with 17280 of the prior fleet" in lines["anomaly_train"]
    assert "0 cells fail" in lines["simulate"]
    # the labels were dropped before preprocessing, as in a real fleet's data
    import pandas as pd

    first = pd.read_csv(result.state.dir / "no-labels" / "readings.csv", nrows=1)
    assert not {"IsDead", "IsAnomaly", "AnomalyType"} & set(first.columns)
    assert "CellSpecificGravity" not in first.columns

    # a second run in the same workspace uses the registered failure model instead of training one (the
    # forecaster of the first run is registered too: its stages are not repeated)
    again, status2, lines2 = _run(
        workspace,
        skip=[*FAST["skip"], "forecast_train", "forecast"],
        devices=1,
        cells_per_device=6,
        days=5,
        interval_minutes=60,
        chemistry="vrla",
        no_labels=True,
        failure_rate=0.0,
        seed=4,
        anomaly_prior_rows=0,  # the first run tried the prior stage; this one checks the registry's decisions
    )
    assert status2["failure_fleet"] == "skipped" and status2["failure_train"] == "skipped"
    assert status2["anomaly_prior"] == "skipped" and "--anomaly-prior-rows 0" in lines2["anomaly_prior"]
    # the forecast stages are skipped: the forecast server is not started (nor health-checked)
    assert [c.server for c in again.state.stages["health"].calls] == ["datagen", "preprocess", "anomaly", "failure"]
    assert [c.server for c in result.state.stages["health"].calls] == [
        "datagen",
        "preprocess",
        "anomaly",
        "failure",
        "forecast",
    ]
    assert "the registered failure_classifier v0001 predicts" in lines2["failure_train"]
    assert status2["anomaly"] == "ok" and "registered anomaly_hybrid v0001" in lines2["anomaly"]
    assert status2["failure"] == "ok" and "model v0001" in lines2["failure"] and "of 6 cells" in lines2["failure"]
