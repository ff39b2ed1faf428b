"""CLI contracts (exit codes, messages), MCP client config, report rendering and output extraction."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from bms_agent.cli_pipeline import main as pipeline_main
from bms_agent.mcp_config import client_config, server_entries
from bms_agent.outputs import cells_at_risk
from bms_agent.pipeline import PipelineError, prepare_state
from bms_agent.report import write_report
from bms_agent.servers import ROOT, SERVER_FOLDERS
from bms_agent.state import CallRecord, PipelineOptions, PipelineState, StageRecord

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_mcp_config_uses_absolute_paths_for_every_server() -> None:
    entries = server_entries(uv="/opt/bin/uv", workspace="/data/ws")
    assert len(entries) == 5
    for name, folder in SERVER_FOLDERS.items():
        entry = entries[f"bms-{name}"]
        assert entry["command"] == "/opt/bin/uv"
        assert entry["args"] == ["--directory", str(ROOT / folder), "run", "server.py"]
        assert Path(entry["args"][1]).is_absolute() and (Path(entry["args"][1]) / "server.py").is_file()
        assert entry["env"] == {"BMS_WORKSPACE": "/data/ws"}
    assert set(client_config("claude", entries)) == {"mcpServers"}
    vscode = client_config("vscode", entries)["servers"]["bms-anomaly"]
    assert vscode["type"] == "stdio" and vscode["command"] == "/opt/bin/uv"
    direct = server_entries(python=sys.executable)["bms-failure"]
    assert direct == {
        "command": sys.executable,
        "args": [str(ROOT / "feature-three-failure-prediction-mcp" / "server.py")],
    }


def test_config_command_prints_valid_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bms_agent.mcp_config", "--client", "cursor", "--python"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert sorted(config["mcpServers"]) == sorted(f"bms-{n}" for n in SERVER_FOLDERS)


def test_resume_of_an_unknown_run_is_a_clear_error(workspace: Path, capsys) -> None:
    with pytest.raises(PipelineError, match="not a BMS-Flux run id"):
        prepare_state(PipelineOptions(), workspace, resume="yesterday")
    code = pipeline_main(["--workspace", str(workspace), "--resume", "20261125T070102123Z-3fa2c1"])
    assert code == 2
    assert "no pipeline run '20261125T070102123Z-3fa2c1' in" in capsys.readouterr().err


def test_missing_data_file_is_a_clear_error(workspace: Path, capsys) -> None:
    code = pipeline_main(["--workspace", str(workspace), "--data", str(workspace / "nope.csv")])
    assert code == 2 and "nope.csv: no such file" in capsys.readouterr().err


def test_unknown_stage_to_skip_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        pipeline_main(["--skip", "everything"])
    assert exc.value.code == 2 and "invalid choice: 'everything'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--timeout", "--start-timeout", "--days"])
def test_non_positive_numbers_are_refused(option: str) -> None:
    with pytest.raises(SystemExit) as exc:
        pipeline_main([option, "0"])
    assert str(exc.value) == f"bms-pipeline: {option} must be positive, got {0.0 if 'timeout' in option else 0}"


def _state_with_failure_output(workspace: Path) -> PipelineState:
    state = prepare_state(PipelineOptions(), workspace)
    step = state.run_dir / "05-predict_cell_failure"
    step.mkdir(parents=True)
    table = step / "failure_predictions.csv"
    pd.DataFrame(
        {
            "DeviceID": ["A", "A", "B"],
            "CellNumber": [1, 2, 3],
            "CellID": ["A-1", "A-2", "B-3"],
            "FailureProbability": [0.12, float("nan"), 0.81],
            "RiskBand": ["low", "dead", "high"],
            "AlreadyDead": [False, True, False],
            "TopReasons": ["", "", "SG 0.03 below string; voltage falling"],
        }
    ).to_csv(table, index=False)
    (step / "risk_ranking.png").write_bytes(PNG)
    envelope = {
        "status": "ok",
        "message": "1 of 3 cells at high risk",
        "data": {"cells": 3, "seconds": 1.5},
        "artifacts": [
            {"path": str(table), "kind": "table", "description": "per-cell"},
            {"path": str(step / "risk_ranking.png"), "kind": "plot", "description": "ranking"},
        ],
    }
    state.stages["failure"] = StageRecord(
        name="failure",
        status="ok",
        seconds=2.0,
        calls=[
            CallRecord(
                server="failure",
                tool="predict_cell_failure",
                arguments={},
                envelope=envelope,
                seconds=1.75,
                tool_seconds=1.5,
            )
        ],
    )
    state.wall_seconds = 4.0
    return state


def test_cells_at_risk_come_from_the_failure_table(workspace: Path) -> None:
    cells = cells_at_risk(_state_with_failure_output(workspace))
    assert [c["cell_id"] for c in cells] == ["B-3", "A-1", "A-2"]
    assert cells[0] == {
        "cell_id": "B-3",
        "probability": 0.81,
        "band": "high",
        "already_dead": False,
        "reasons": "SG 0.03 below string; voltage falling",
    }
    assert cells[2]["already_dead"] is True


def test_report_markdown_and_self_contained_html(workspace: Path) -> None:
    state = _state_with_failure_output(workspace)
    md_path, html_path = write_report(state, workspace)
    md, html = md_path.read_text(), html_path.read_text()
    assert md_path.parent == state.run_dir and html_path.parent == state.run_dir
    assert "| B-3 | 0.810 | high | SG 0.03 below string; voltage falling |" in md
    assert "Already dead (1): A-2." in md
    assert "![risk_ranking.png](05-predict_cell_failure/risk_ranking.png)" in md
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in html
    assert "<td>B-3</td><td>0.810</td>" in html
    # 4 s wall, 1.5 s in the tool, 0.25 s protocol
    assert "Total 4.0 s; inside the tools 1.5 s; outside the tools 0.2 s" in md
    # the answer first: the first screen names the dead and the at-risk cells, with the reason in full
    first_screen = "\n".join(md.splitlines()[:40])
    assert "**Dead cells (1 of 3):** A-2." in first_screen
    assert "| B-3 | 81% | high | unknown | SG 0.03 below string; voltage falling |" in first_screen
    assert "Inspect B-3 now" in first_screen and "Replace the dead cell A-2." in first_screen
    assert md.index("## Summary") < md.index("## Per-cell detail") < md.index("## Technical appendix")


def test_human_labels_and_remaining_life() -> None:
    from bms_agent.report import human_label
    from bms_agent.summary import remaining_life

    assert (
        human_label("privacy.readings.dcr_p05")
        == "privacy (readings): distance to the closest real row, 5th percentile"
    )
    assert human_label("missing_before.CellVoltage") == "missing before imputation: cell voltage"
    assert human_label("overall_score") == "SDV quality score (0-1)"
    assert (
        remaining_life({"RUL_p10_days": 4.2, "RUL_p50_days": 11.6, "RUL_p90_days": 30.1}) == "12 d (p10 4 d - p90 30 d)"
    )
    assert remaining_life({"TopReasons": "x"}) == ""


def test_servers_get_the_workspace_and_the_users_data_folder(tmp_path: Path, monkeypatch) -> None:
    from bms_agent.pipeline import server_env

    monkeypatch.setenv("BMS_ALLOWED_DIRS", "/srv/shared")
    data = tmp_path / "mine" / "readings.csv"
    env = server_env(PipelineOptions(data=str(data)), tmp_path / "ws")
    assert env["BMS_WORKSPACE"] == str(tmp_path / "ws")
    assert env["BMS_ALLOWED_DIRS"].split(":") == ["/srv/shared", str(tmp_path / "mine")]
    assert "BMS_ALLOWED_DIRS" in server_env(PipelineOptions(), tmp_path / "ws")  # inherited dirs kept


def test_sdv_sample_and_recent_history_are_written_from_the_table(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from bms_agent.sampling import write_recent_history, write_sdv_sample

    stamps = pd.date_range("2025-01-01", periods=200, freq="h", tz="UTC")
    frame = pd.DataFrame(
        {
            "DeviceID": ["A"] * 200 + ["B"] * 200,
            "CellNumber": [1] * 200 + [2] * 200,
            "CellID": ["A-1"] * 200 + ["B-2"] * 200,
            "Timestamp": list(stamps) * 2,
            "CellVoltage": [2.2] * 399 + [None],
            "CellTemperature": 25.0,
            "IsDead": 0,
            "VoltageRate": 0.1,
        }
    )
    table = tmp_path / "processed.parquet"
    frame.to_parquet(table)
    counts = write_sdv_sample(table, tmp_path / "sdv", rows=50, seed=1)
    sample = pd.read_csv(tmp_path / "sdv" / "readings.csv")
    assert counts == {"rows_read": 400, "rows_written": 50} and len(sample) == 50
    assert list(sample.columns) == [
        "DeviceID",
        "CellNumber",
        "CellID",
        "Timestamp",
        "CellVoltage",
        "CellTemperature",
        "IsDead",
    ]  # features are not synthesised
    assert sample["Timestamp"].str.endswith("+00:00").all()  # canonical UTC timestamps, offset kept
    assert sample["CellVoltage"].notna().all()

    out = tmp_path / "recent.parquet"
    assert write_recent_history(table, out, ["B-2"], days=2) == {"rows_written": 49}  # 48 h + the start hour
    recent = pq.read_table(out).to_pandas()
    assert set(recent["CellID"]) == {"B-2"} and recent["Timestamp"].min() == stamps[-49]


def test_sdv_sample_and_recent_history_read_a_real_packet_file(tmp_path: Path) -> None:
    """With preprocessing skipped the driver samples the user's raw file (73 header names, 72 fields a row)."""
    from bms_agent.sampling import write_recent_history, write_sdv_sample

    packets = ROOT / "tests" / "data" / "bms_packet_sample.csv"
    counts = write_sdv_sample(packets, tmp_path / "sdv", rows=50, seed=1)
    assert counts["rows_written"] == 50 and counts["rows_read"] == len(pd.read_csv(packets))
    assert write_recent_history(packets, tmp_path / "recent.parquet", ["1-3"], days=7)["rows_written"] > 0


def test_summary_in_a_pipe_is_plain_text_and_never_cut(workspace: Path) -> None:
    from types import SimpleNamespace

    from bms_agent.cli_pipeline import plain_summary

    state = _state_with_failure_output(workspace)
    long_note = "0 of 96 cells at high risk of dying within 7 days, 6 already dead, reasons: sensor faults " * 2
    state.stages["failure"].calls[0].envelope["message"] = long_note.strip()
    text = plain_summary(SimpleNamespace(state=state))
    line = next(line for line in text.splitlines() if line.startswith("failure "))
    assert line.endswith(long_note.strip()) and len(line) > 120  # the whole result on one line
    assert "\x1b[" not in text and "│" not in text  # no colour codes, no box drawing
