"""MLflow interop against a real local tracking server (SQLite backend) started by the test.

Asserted through MLflow's own client: the run with parameters and metrics, the model card,
decision and model files as artifacts, the registered version tagged with the local version, and
the same alias as the local registry (champion, then challenger for a worse candidate).
Needs the optional ``mlflow`` dependency group (``uv sync --group mlflow``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="the optional 'mlflow' dependency group is not installed")

from bms_schema.model_protocol import fingerprint_frame, register_candidate  # noqa: E402
from bms_schema.registry import ModelRegistry  # noqa: E402
from schema.test_registry_aliases import MeanModel, _data  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    assert exe, "the mlflow command is not installed"
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [
            exe,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        # no job runner (a second process tree, huey workers): the tests use tracking and the registry only
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:  # the server and its workers are one process group (start_new_session)
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def test_training_runs_and_versions_appear_in_mlflow(
    workspace: Path, tracking_uri: str, monkeypatch, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("BMS_MLFLOW_EXPERIMENT", "bms-test")
    registry = ModelRegistry()
    holdout = _data(400, 99)
    good = register_candidate(MeanModel().fit(_data(2000, 0)), holdout, registry=registry)
    worse = register_candidate(MeanModel().fit(_data(6, 1)), holdout, registry=registry)
    assert (good.alias, worse.alias) == ("champion", "challenger")
    assert good.decision["mlflow"]["status"] == "ok", good.decision["mlflow"]
    assert worse.decision["mlflow"]["status"] == "ok", worse.decision["mlflow"]

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(good.decision["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["family"] == "toy" and run.data.params["primary_metric"] == "mae"
    assert run.data.params["training_rows"] == "2000"
    assert run.data.metrics["mae"] == pytest.approx(good.evaluation.candidate)
    assert run.data.tags["bms.version"] == "v0001" and run.data.tags["bms.alias"] == "champion"
    worse_run = client.get_run(worse.decision["mlflow"]["run_id"])
    assert worse_run.data.metrics["champion_mae"] == pytest.approx(worse.evaluation.champion)
    assert worse_run.data.metrics["mae"] > worse_run.data.metrics["champion_mae"]

    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model_card.json", "decision.json", "model"} <= files
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/table.json" in model_files and "model/metadata.json" in model_files
    card = json.loads(Path(client.download_artifacts(run.info.run_id, "model_card.json", str(tmp_path))).read_text())
    assert card["family"] == "toy" and card["data_fingerprint"] == fingerprint_frame(_data(2000, 0))
    assert card["features"] == ["x"] and card["primary_metric"] == "mae"

    champion = client.get_model_version_by_alias("mean_model", "champion")
    challenger = client.get_model_version_by_alias("mean_model", "challenger")
    assert champion.tags["bms.version"] == "v0001" and champion.run_id == run.info.run_id
    assert challenger.tags["bms.version"] == "v0002"
    assert "does not beat champion v0001" in (challenger.description or "")

    # promote=true moves the alias in MLflow too
    forced = register_candidate(MeanModel().fit(_data(6, 2)), holdout, registry=registry, promote=True)
    assert forced.alias == "champion"
    assert client.get_model_version_by_alias("mean_model", "champion").tags["bms.version"] == "v0003"
    assert registry.resolve("mean_model") == "v0003"


def test_unreachable_server_leaves_the_local_registration_standing(workspace: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    got = register_candidate(MeanModel().fit(_data(500, 0)), _data(100, 1), registry=ModelRegistry())
    assert got.alias == "champion" and ModelRegistry().resolve("mean_model") == got.version
    assert got.decision["mlflow"]["status"] == "error"
    assert "MLflow mirror failed" in got.decision["mlflow"]["message"]
