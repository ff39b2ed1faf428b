"""Every server's main input tool reads a partitioned Parquet dataset folder as it reads a file.

One small simulated fleet (raw 73-column packets) is written twice: as one Parquet file and as a
hive-partitioned dataset (``DeviceID=<id>/day=<yyyy-mm-dd>/part-0.parquet``, as a fleet store is
laid out). Each tool runs in process (``ToolServer.call``) on both; the answers must be equal.
Models are trained on the file, once per module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

LABELS = ["IsDead", "IsAnomaly", "AnomalyType"]


def _call(server: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    envelope = server.call(tool, args).model_dump()
    assert envelope["status"] == "ok", f"{tool}: {envelope['message']}"
    return envelope


def _artifact(envelope: dict[str, Any], stem: str, suffix: str) -> Path:
    names = [Path(a["path"]) for a in envelope["artifacts"]]
    paths = [p for p in names if p.name.startswith(stem) and p.name.endswith(suffix) and "metrics" not in p.name]
    assert len(paths) == 1, names
    return paths[0]


@pytest.fixture(scope="module")
def fleet_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A workspace holding the fleet as ``data/fleet.parquet`` and as ``data/fleet_ds/`` (partitioned),
    unlabelled copies of both, and the models trained on the file."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from bms_datagen.simulator import simulate_fleet
    from bms_schema import write_table

    ws = tmp_path_factory.mktemp("folders") / "ws"
    mp = pytest.MonkeyPatch()
    mp.setenv("BMS_WORKSPACE", str(ws))
    from bms_schema.paths import workspace

    data = workspace() / "data"
    raw = simulate_fleet(devices=2, cells_per_device=6, days=20, interval_minutes=60, seed=4, failure_rate=0.4)
    raw["day"] = pd.to_datetime(raw["PacketDateTime"], utc=True).dt.strftime("%Y-%m-%d")
    # File order = the order the dataset is read back in (partition paths sorted), so that
    # de-duplication keeps the same one of two conflicting rows in both.
    raw = raw.sort_values(["DeviceID", "day"], kind="stable", key=lambda s: s.astype(str)).reset_index(drop=True)
    unlabelled = raw.drop(columns=LABELS)
    for name, frame in (("fleet", raw), ("unlabelled", unlabelled)):
        write_table(frame.drop(columns="day"), data / f"{name}.parquet")
        ds.write_dataset(
            pa.Table.from_pandas(frame, preserve_index=False),
            data / f"{name}_ds",
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("DeviceID", pa.string()), ("day", pa.string())]), flavor="hive"),
            basename_template="part-{i}.parquet",
        )
    # The anomaly detector and the forecaster train on one device's first week (a model is all
    # the prediction tools need here); the failure model needs the whole fleet's deaths.
    first = raw["DeviceID"].astype(str).eq(str(raw["DeviceID"].iloc[0])) & raw["day"].le(sorted(raw["day"].unique())[6])
    write_table(raw.loc[first].drop(columns="day"), data / "week.parquet")
    from bms_anomaly.server import server as anomaly
    from bms_failure.server import server as failure
    from bms_forecast.server import server as forecast

    for server, tool, args in (
        (anomaly, "train_anomaly_detector", {"data_path": "data/week.parquet"}),
        (failure, "train_failure_model", {"data_path": "data/fleet.parquet", "horizon_days": 7}),
        (forecast, "train_forecaster", {"data_path": "data/week.parquet", "max_steps": 6}),
    ):
        _call(server, tool, args)
    yield {"ws": ws, "raw": raw}
    mp.undo()


@pytest.fixture
def in_workspace(fleet_paths: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BMS_WORKSPACE", str(fleet_paths["ws"]))
    return fleet_paths["ws"]


def test_partitioned_folder_is_laid_out_by_device_and_day(fleet_paths: dict[str, Any]) -> None:
    folder = fleet_paths["ws"] / "data" / "fleet_ds"
    parts = sorted(p.relative_to(folder).parts[:2] for p in folder.rglob("*.parquet"))
    devices = {d for d, _ in parts}
    assert len(devices) == 2 and all(d.startswith("DeviceID=") for d in devices)
    assert len(parts) == 2 * fleet_paths["raw"]["day"].nunique()  # one file per device and day


def test_resolve_input_accepts_a_dataset_folder_and_refuses_an_empty_one(in_workspace: Path) -> None:
    from bms_schema import InputError, PathError, resolve_input

    assert resolve_input("data/fleet_ds") == in_workspace / "data" / "fleet_ds"
    (in_workspace / "data" / "empty").mkdir(exist_ok=True)
    with pytest.raises(InputError, match="folder empty holds no CSV or Parquet file"):
        resolve_input("data/empty")
    with pytest.raises(PathError, match="not a file"):
        resolve_input("data/fleet_ds", kind="file")


def test_preprocess_reads_the_folder_as_the_file(in_workspace: Path) -> None:
    from bms_preprocess.server import server

    args = {"impute": "interpolate", "output_format": "parquet"}
    from_file = _call(server, "preprocess_battery_data_tool", {"data_path": "data/fleet.parquet", **args})
    from_folder = _call(server, "preprocess_battery_data_tool", {"data_path": "data/fleet_ds", **args})
    a = pd.read_parquet(_artifact(from_file, "preprocessed", ".parquet"))
    b = pd.read_parquet(_artifact(from_folder, "preprocessed", ".parquet"))
    assert len(a) > 3000 and a["CellID"].nunique() == 12
    b = b.drop(columns=[c for c in b.columns if c not in a.columns])  # the 'day' partition passes through
    pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False, check_categorical=False)
    manifest = json.loads((Path(from_folder["artifacts"][0]["path"]).parent / "manifest.json").read_text())
    (source,) = manifest["inputs"]
    assert source["kind"] == "folder" and source["files"] == len(
        list((in_workspace / "data" / "fleet_ds").rglob("*.parquet"))
    )
    assert len(source["blake2b"]) == 32


def test_anomaly_detection_reads_the_folder_as_the_file(in_workspace: Path) -> None:
    from bms_anomaly.server import server

    from_file = _call(server, "detect_anomalies", {"data_path": "data/unlabelled.parquet"})
    from_folder = _call(server, "detect_anomalies", {"data_path": "data/unlabelled_ds"})
    a, b = (pd.read_csv(_artifact(e, "anomalies", ".csv")) for e in (from_file, from_folder))
    assert len(a) == len(b) > 3000
    np.testing.assert_allclose(b["AnomalyScore"], a["AnomalyScore"])
    assert b["AnomalyFlag"].tolist() == a["AnomalyFlag"].tolist() and a["AnomalyFlag"].sum() > 0


def test_failure_prediction_reads_the_folder_as_the_file(in_workspace: Path) -> None:
    from bms_failure.server import server

    from_file = _call(server, "predict_cell_failure", {"data_path": "data/unlabelled.parquet"})
    from_folder = _call(server, "predict_cell_failure", {"data_path": "data/unlabelled_ds"})
    a, b = (
        pd.read_csv(_artifact(e, "failure_predictions", ".csv")).set_index("CellID").sort_index()
        for e in (from_file, from_folder)
    )
    assert len(a) == 12 and a.index.tolist() == b.index.tolist()
    np.testing.assert_allclose(b["FailureProbability"], a["FailureProbability"])
    assert b["RiskBand"].tolist() == a["RiskBand"].tolist()


def test_forecast_reads_the_folder_as_the_file(in_workspace: Path) -> None:
    from bms_forecast.server import server

    args = {"cell_id": "1-3", "steps": 6}
    from_file = _call(server, "predict_cell_timeseries", {"data_path": "data/unlabelled.parquet", **args})
    from_folder = _call(server, "predict_cell_timeseries", {"data_path": "data/unlabelled_ds", **args})
    a, b = (pd.read_csv(_artifact(e, "forecast_", ".csv")) for e in (from_file, from_folder))
    assert len(a) >= 6 and np.isfinite(a["Forecast"]).all()
    pd.testing.assert_frame_equal(a, b)
