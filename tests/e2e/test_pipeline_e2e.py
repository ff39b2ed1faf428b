"""The whole pipeline over MCP on a tiny simulated fleet, with a crash mid-call and a resume.

First attempt: the forecast server dies when asked for a forecast -> the run stops at the
'forecast' stage with the server named, exit code 1, everything before kept. Second attempt
(--resume): only the forecast stage runs (and only the forecast server starts); the report's numbers are those the tools returned,
models are registered, and every tool call of both attempts is in one run folder.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from bms_agent.cli_pipeline import run_pipeline
from bms_agent.outputs import cells_at_risk
from bms_agent.servers import ServerSpec, default_specs
from bms_agent.state import PipelineOptions

HERE = Path(__file__).resolve().parent

# small (1,464 hourly readings), but with cells dying inside the span so the failure model can be
# trained (4 of 12 die)
TINY = dict(
    devices=1,
    cells_per_device=12,
    days=5,
    interval_minutes=60,
    seed=2,
    anomaly_prior_rows=17_280,
    failure_rate=0.9,
    sdv_rows=300,
    forecast_cells=2,
    forecast_steps=6,
    horizon_days=2,
    timeout=120,
)


def crashing_forecast() -> ServerSpec:
    real = default_specs()["forecast"]
    return ServerSpec(
        "forecast",
        sys.executable,
        (str(HERE / "crash_on_call.py"), "bms_forecast.server", "predict_cell_timeseries"),
        real.cwd,
    )


@pytest.mark.slow
def test_pipeline_end_to_end_with_crash_and_resume(workspace: Path) -> None:
    specs = {**default_specs(), "forecast": crashing_forecast()}
    first = run_pipeline(PipelineOptions(**TINY), workspace, specs=specs, quiet=True)

    state = first.state
    assert first.exit_code == 1 and first.failed_stage == "forecast", first.error
    assert (
        "stage 'forecast' failed: forecast server, tool predict_cell_timeseries: the server process exited "
        "during the call" in first.error
    )
    status = {n: r.status for n, r in state.stages.items()}
    assert all(status[n] == "ok" for n in ("health", "simulate", "preprocess", "anomaly", "failure", "forecast_train"))
    # the SDV stages overlap the others: finished before the crash, or not started after it (never half-done)
    assert status["synthetic"] in ("ok", "pending") and status["synthetic_eval"] in ("ok", "pending")
    assert "stopped at stage 'forecast'" in first.report_md.read_text()

    second = run_pipeline(PipelineOptions(timeout=120), workspace, resume=state.run_id, quiet=True)
    assert second.ok, second.error
    state = second.state
    assert state.run_id == first.state.run_id and state.attempts == 2
    # the resumed attempt checks and starts only the servers of the stages left: forecast (and datagen when
    # an SDV stage had not finished before the crash)
    sdv_left = any(status[n] != "ok" for n in ("synthetic", "synthetic_eval", "synthetic_plot"))
    assert [c.server for c in state.stages["health"].calls] == (["datagen", "forecast"] if sdv_left else ["forecast"])

    # one run folder holds every step of both attempts; the finished stages were not repeated
    runs = [p for p in (workspace / "runs").iterdir() if p.is_dir()]
    assert runs == [state.run_dir]
    steps = json.loads((state.run_dir / "manifest.json").read_text())["steps"]
    tools = [s["tool"] for s in steps]
    # simulate once, and once the prior fleet of the small fleet's anomaly detector
    assert status["anomaly_prior"] == "ok"
    assert tools.count("simulate_bms_fleet") == 2 and tools.count("detect_anomalies") == 1
    assert tools.count("train_forecaster") == 1 and tools.count("sdv_generate") == 1
    forecast_calls = [s for s in steps if s["tool"] == "predict_cell_timeseries"]
    assert [s["status"] for s in forecast_calls] == ["ok"] * TINY["forecast_cells"]

    # models trained and registered on the way
    models = workspace / "models"
    for name in ("anomaly_hybrid", "failure_classifier", "forecaster"):
        assert (models / name / "latest" / "metadata.json").exists(), name

    # the report's numbers are the tools' numbers
    md = second.report_md.read_text()
    html = second.report_html.read_text()
    anomaly = state.stages["anomaly"].calls[0].envelope["data"]
    assert f"| flagged readings | {anomaly['flagged']} |" in md and f"| rows | {anomaly['rows']} |" in md
    table = pd.read_csv(state.stages["failure"].calls[-1].envelope["data"]["table_path"])
    assert [c["cell_id"] for c in cells_at_risk(state)] == table.sort_values(
        "FailureProbability", ascending=False, kind="stable"
    )["CellID"].tolist()
    dead = table[table["AlreadyDead"].astype(bool)]
    living = table[~table["AlreadyDead"].astype(bool)].sort_values("FailureProbability", ascending=False, kind="stable")
    top = living.iloc[0]
    assert f"| {top['CellID']} | {top['FailureProbability']:.3f} | {top['RiskBand']} |" in md
    assert (
        f"Already dead ({len(dead)}): " in md
        and len(dead) == state.stages["failure"].calls[-1].envelope["data"]["dead_cells"]
    )
    # the answer first: the first screen of the report names every dead cell and every at-risk cell
    first_screen = "\n".join(md.splitlines()[:40])
    assert f"**Dead cells ({len(dead)} of {len(table)}):** " + ", ".join(dead["CellID"].astype(str)) in first_screen
    for cell in living[living["RiskBand"].isin(["high", "medium"])]["CellID"].astype(str):
        assert f"| {cell} | " in first_screen, cell
    forecast_cells = [c.arguments["cell_id"] for c in state.stages["forecast"].calls]
    assert forecast_cells == living["CellID"].tolist()[: TINY["forecast_cells"]]
    fc = pd.read_csv(state.stages["forecast"].calls[0].envelope["data"]["forecast_path"])
    volt = fc[fc["Target"] == "CellVoltage"].sort_values("Step")
    assert (
        f"| {forecast_cells[0]} | CellVoltage | {TINY['forecast_steps']} | {volt['Forecast'].iloc[0]:.4g} | "
        f"{volt['Forecast'].iloc[-1]:.4g} |" in md
    )
    for name in ("anomaly_hybrid", "failure_classifier", "forecaster"):
        version = (models / name / "latest").resolve().name
        assert re.search(rf"\| {name} \| {version} \| yes \|", md), name
    assert html.count("data:image/png;base64,") >= 3  # plots embedded: the HTML stands alone
    assert "Total " in md and "outside the tools" in md
