"""Shared fixtures: an isolated workspace per test, the real packet sample, MCP stdio clients."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE_CSV = DATA / "bms_packet_sample.csv"

os.environ.setdefault("BMS_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


#: Seconds each test file takes: the sum of its tests' setup + call + teardown in a fresh-clone ``.ci/run`` with
#: ``--durations=0`` on 2 idle cores (2026-12-08 02:47 UTC, 599 passed in 343.6 s; files under 1.5 s left out).
#: xdist (``--dist loadfile --no-loadscope-reorder`` in pyproject.toml) hands the files out in collection
#: order, so they are collected longest first: the run no longer ends with one worker alone on a long file
#: while the other has finished (xdist's default order, most tests first, left the one-test e2e files for
#: last). A file not listed counts as 1 s (after every listed file, in the usual order). Refresh the figures
#: from a ``--durations=0`` run when a file's time changes a lot.
FILE_SECONDS: dict[str, int] = {
    "tests/failure/test_simulated_fleets.py": 40,
    "tests/e2e/test_pipeline_variants.py": 38,
    "tests/dask/test_dask_engine.py": 35,
    "tests/agent/test_agent.py": 31,
    "tests/console/test_dashboard_browser.py": 30,
    "tests/e2e/test_pipeline_e2e.py": 30,
    "tests/agent/test_pipeline_mechanics.py": 30,
    "tests/e2e/test_pipeline_one_cell.py": 29,
    "tests/anomaly/test_state_aware.py": 27,
    "tests/failure/test_model.py": 19,
    "tests/fuzz/test_fuzz_tools.py": 17,
    "tests/preprocess/test_engine.py": 17,
    "tests/anomaly/test_hybrid.py": 16,
    "tests/live/test_logic.py": 16,
    "tests/mcp/test_mcp_surface.py": 15,
    "tests/preprocess/test_csv_lines.py": 15,
    "tests/preprocess/test_tools_stdio.py": 14,
    "tests/anomaly/test_tools_stdio.py": 13,
    "tests/datagen/test_sdv.py": 12,
    "tests/live/test_openapi_fuzz.py": 12,
    "tests/integration/test_servers_stdio.py": 11,
    "tests/anomaly/test_prior.py": 11,
    "tests/schema/test_mlflow_mirror.py": 11,
    "tests/live/test_champion_serving.py": 10,
    "tests/datagen/test_sdv_timestamps.py": 10,
    "tests/agent/test_agent_openai.py": 9,
    "tests/core/test_dataset_folders.py": 9,
    "tests/live/test_real_models.py": 9,
    "tests/forecast/test_forecast_stdio.py": 8,
    "tests/datagen/test_tools_stdio.py": 8,
    "tests/fuzz/test_model_files.py": 8,
    "tests/fuzz/test_killed_calls.py": 7,
    "tests/store/test_ingest_api.py": 6,
    "tests/failure/test_server_stdio.py": 6,
    "tests/live/test_api.py": 5,
    "tests/live/test_hardening.py": 5,
    "tests/store/test_durability.py": 5,
    "tests/forecast/test_promotion.py": 4,
    "tests/console/test_alert_delivery.py": 4,
    "tests/mcp/test_mcp_config.py": 4,
    "tests/forecast/test_forecaster.py": 3,
    "tests/console/test_alert_rules.py": 3,
    "tests/failure/test_prior.py": 3,
    "tests/console/test_stream.py": 3,
    "tests/anomaly/test_components.py": 2,
    "tests/preprocess/test_impute.py": 2,
    "tests/datagen/test_simulator.py": 2,
    "tests/datagen/test_simulator_variants.py": 2,
    "tests/store/test_cli.py": 2,
    "tests/live/test_server_process.py": 2,
    "tests/schema/test_state.py": 2,
    "tests/fuzz/test_no_data_answers.py": 2,
    "tests/failure/test_evaluation.py": 2,
    "tests/schema/test_mcp_errors.py": 2,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest test files first (stable: a file's tests keep their order and stay together)."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.nodeid.split("::", 1)[0], 1))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh BMS_WORKSPACE for one test (the sample data folder is allowed too)."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("BMS_WORKSPACE", str(ws))
    monkeypatch.setenv("BMS_ALLOWED_DIRS", str(DATA))
    from bms_schema.paths import workspace as make

    return make()


@pytest.fixture
def sample_csv() -> Path:
    return SAMPLE_CSV
