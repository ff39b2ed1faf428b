"""The service over the real models, trained tiny once per session on a simulated fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from bms_schema import ModelRegistry, normalize, sort_readings
from fastapi.testclient import TestClient

CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = ["DeviceID", "CellNumber", *CORE]
    records = frame[cols].astype(object).where(frame[cols].notna(), None).to_dict("records")
    for record, stamp in zip(records, frame["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")):
        record["Timestamp"] = stamp
    return records


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with anomaly_hybrid, failure_classifier and forecaster trained on a small fleet."""
    from bms_anomaly.persistence import load_detector
    from bms_live.bootstrap import first_fleet, train_first_models

    workspace = tmp_path_factory.mktemp("live-real")
    registry = ModelRegistry(workspace / "models")
    raw = first_fleet()  # the fleet `bms setup` trains on: 2 strings x 8 cells, 14 days
    versions = train_first_models(registry, raw)  # what `bms setup` does
    detector = load_detector(versions["anomaly_hybrid"], registry=registry, cache=False)
    canonical = sort_readings(normalize(raw)[0])
    return {"workspace": workspace, "registry": registry, "detector": detector, "canonical": canonical}


@pytest.fixture
def client(trained) -> Iterator[TestClient]:
    from bms_live.app import create_app
    from bms_live.settings import Settings

    app = create_app(Settings.from_env(workspace=Path(trained["workspace"]), poll_seconds=0, api_key=None))
    with TestClient(app) as test_client:
        yield test_client


def test_all_real_models_load(client) -> None:
    served = client.get("/models").json()["served"]
    assert {k: v["loaded"] for k, v in served.items()} == {"anomaly": True, "failure": True, "forecast": True}
    assert served["anomaly"]["name"] == "anomaly_hybrid" and served["anomaly"]["version"] == "v0001"
    assert served["failure"]["metrics"] and served["forecast"]["metrics"]


def test_live_anomaly_scores_equal_batch_scores(client, trained) -> None:
    """Packets sent a few at a time get exactly the scores the model gives the whole table at once."""
    from bms_datagen.simulator import simulate_fleet
    from bms_schema.loader import load_canonical

    raw = simulate_fleet(
        devices=1,
        cells_per_device=6,
        days=1.5,
        interval_minutes=30,
        seed=11,
        dropout_rate=0.0,
        missing_rate=0.0,
        duplicate_rate=0.0,
        out_of_order_rate=0.0,
        anomaly_rate=0.05,
    )
    batch = load_canonical(raw)
    expected = trained["detector"].score(batch)
    batch = batch.assign(Score=expected["AnomalyScore"].to_numpy(), Flag=expected["AnomalyFlag"].to_numpy())
    records = _records(batch.sort_values(["Timestamp", "CellNumber"], kind="stable"))
    got = []
    for lo in range(0, len(records), 18):  # three packets per request
        response = client.post("/v1/anomaly", json={"readings": records[lo : lo + 18]})
        assert response.status_code == 200, response.text
        got.extend(response.json()["results"])
    live = pd.DataFrame(
        {
            "CellID": [r["CellID"] for r in got],
            "Timestamp": pd.to_datetime([r["Timestamp"] for r in got]),
            "LiveScore": [r["AnomalyScore"] for r in got],
            "LiveFlag": [r["AnomalyFlag"] for r in got],
        }
    )
    merged = live.merge(batch[["CellID", "Timestamp", "Score", "Flag"]], on=["CellID", "Timestamp"])
    assert len(merged) == len(batch) == len(records)
    # bms_anomaly scores <= 256 rows with a NumPy forest walk and more with scikit-learn; the two
    # differ in the last bit, which can move a score across a tie in the calibration ECDF (a
    # surprise of ~1e-3 on the most normal readings). Features are asserted exactly in test_logic.
    np.testing.assert_allclose(merged["LiveScore"], merged["Score"], rtol=1e-6, atol=2e-3)
    assert np.median(np.abs(merged["LiveScore"] - merged["Score"])) < 1e-9
    assert (merged["LiveFlag"] == merged["Flag"]).all()
    flagged = [r for r in got if r["AnomalyFlag"]]
    assert flagged and all(r["reason"] for r in flagged)
    assert set(got[0]["scores"]) == {"IForestScore", "OCSVMScore", "VAEScore"}


def test_sensor_fault_reading_is_flagged_with_its_reason(client) -> None:
    readings = [
        {
            "DeviceID": "Z",
            "CellNumber": n,
            "Timestamp": "2026-02-01T00:00:00Z",
            "CellVoltage": 2.23,
            "CellTemperature": 25.0,
            "CellSpecificGravity": 1.22,
            "InstantaneousCurrent": 0.2,
            "AmbientTemperature": 24.0,
        }
        for n in (1, 2, 3)
    ]
    readings[1]["CellVoltage"] = 65.535
    results = client.post("/v1/anomaly", json={"readings": readings}).json()["results"]
    assert results[1]["AnomalyFlag"] == 1 and results[1]["AnomalyKind"] == "sensor_fault"
    assert "CellVoltage: 0xFFFF sentinel" in results[1]["reason"] and results[1]["imputed"] is True


def test_real_failure_prediction(client, trained) -> None:
    canonical = trained["canonical"]
    end = canonical["Timestamp"].max()
    recent = canonical[canonical["Timestamp"] > end - pd.Timedelta(days=3)]
    response = client.post("/v1/failure", json={"readings": _records(recent)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["horizon_days"] == 2.0 and body["model"]["name"] == "failure_classifier"
    results = body["results"]
    assert len(results) == 16 and {r["CellID"] for r in results} == set(canonical["CellID"])
    for r in results:
        assert r["RiskBand"] in ("dead", "high", "medium", "low", "insufficient_history")
        if r["RiskBand"] != "insufficient_history":
            assert 0.0 <= r["FailureProbability"] <= 1.0 and r["reasons"]
    assert "AlreadyDead" in results[0]["extra"] and "Rank" in results[0]["extra"]
    model = client.app.state.service.hub["failure"].require().model
    if model.reference is not None:  # the per-cell feature rows of this request feed the drift window
        drift = client.get("/v1/monitoring/drift").json()["models"]["failure"]
        assert drift["window"] == 16 and drift["status"] == "insufficient_data"
        assert set(drift["features"]) == set(model.features) & set(model.reference.columns)
    short = canonical[canonical["Timestamp"] > end - pd.Timedelta(hours=2)]
    too_short = client.post("/v1/failure", json={"readings": _records(short)})
    assert too_short.status_code == 422 and "too little history" in too_short.json()["detail"]


def test_real_forecast(client, trained) -> None:
    canonical = trained["canonical"]
    device = canonical[canonical["DeviceID"] == canonical["DeviceID"].iloc[0]]
    recent = device[device["Timestamp"] > device["Timestamp"].max() - pd.Timedelta(days=2)]
    cell = recent["CellID"].iloc[0]
    response = client.post("/v1/forecast", json={"readings": _records(recent), "cell_id": cell, "steps": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    rows = pd.DataFrame(body["forecast"])
    assert body["cell_id"] == cell and list(rows.columns) == [
        "Timestamp",
        "Target",
        "Step",
        "Forecast",
        "Lower",
        "Upper",
    ]
    assert set(rows["Target"]) <= set(CORE) and "CellVoltage" in set(rows["Target"])
    assert rows.groupby("Target")["Step"].apply(list).map(lambda s: s == [1, 2, 3, 4, 5]).all()
    assert (rows["Lower"] <= rows["Forecast"]).all() and (rows["Forecast"] <= rows["Upper"]).all()
    first = pd.Timestamp(rows["Timestamp"].iloc[0])
    assert first > recent["Timestamp"].max()
    short = recent[recent["CellID"] == cell].head(3)
    too_short = client.post("/v1/forecast", json={"readings": _records(short), "cell_id": cell, "steps": 5})
    assert too_short.status_code == 422 and "readings of history" in too_short.json()["detail"]


def test_real_model_hot_reload_and_drift(client, trained) -> None:
    from bms_anomaly.persistence import register_detector

    canonical = trained["canonical"]
    records = _records(canonical[canonical["Timestamp"] > canonical["Timestamp"].max() - pd.Timedelta(hours=6)])
    first = client.post("/v1/anomaly", json={"readings": records}).json()
    version, _ = register_detector(trained["detector"], registry=trained["registry"], promote=True)
    reload = client.post("/v1/models/reload").json()["results"]
    assert {
        "key": "anomaly",
        "name": "anomaly_hybrid",
        "status": "loaded",
        "version": version,
        "previous": first["model"]["version"],
    } in reload
    drift = client.get("/v1/monitoring/drift").json()["models"]["anomaly"]
    assert drift["version"] == version and drift["window"] == len(records)
    assert drift["features"] and all(f["method"] == "ks" for f in drift["features"].values())
    assert drift["status"] in ("ok", "drift")
    failure = client.get("/v1/monitoring/drift").json()["models"]["failure"]
    assert failure["status"] == (
        "no_reference"
        if client.app.state.service.hub["failure"].require().model.reference is None
        else "insufficient_data"
    )


def test_real_failure_does_not_call_fresh_cells_dead(client) -> None:
    """24 cells x 1 healthy reading: too little history, a refusal, never "dead" (issue 12)."""
    readings = [
        {
            "DeviceID": "H",
            "CellNumber": n,
            "Timestamp": "2026-02-01T00:00:00Z",
            "CellVoltage": 2.231,
            "CellTemperature": 25.4,
            "CellSpecificGravity": 1.221,
        }
        for n in range(1, 25)
    ]
    response = client.post("/v1/failure", json={"readings": readings})
    assert response.status_code == 422 and "too little history" in response.json()["detail"]
    ids_only = [
        {"DeviceID": "H", "CellNumber": n, "Timestamp": f"2026-02-0{d}T00:00:00Z"} for n in (1, 2) for d in (1, 3)
    ]
    response = client.post("/v1/failure", json={"readings": ids_only})
    assert response.status_code == 422 and "no valid CellVoltage, CellTemperature" in response.json()["detail"]


def test_ingest_then_bms_analyze_tells_the_cell_story(client, trained, capsys) -> None:
    """Readings ingested into the store; ``bms analyze`` prints the cell's anomalies, forecast and
    risk from the store (issue 18)."""
    import json

    from bms_live.cli import main

    canonical = trained["canonical"]
    end = canonical["Timestamp"].max()
    recent = canonical[canonical["Timestamp"] > end - pd.Timedelta(days=3)]
    records = _records(recent)
    for lo in range(0, len(records), 400):
        response = client.post("/v1/ingest", json={"readings": records[lo : lo + 400]})
        assert response.status_code == 200, response.text
    flagged = client.get("/v1/anomalies", params={"limit": 1000}).json()["items"]
    assert flagged, "the simulated fleet has anomalies"
    cell = flagged[0]
    capsys.readouterr()
    code = main(
        [
            "analyze",
            "--workspace",
            str(trained["workspace"]),
            "--device-id",
            cell["device_id"],
            "--cell-number",
            str(cell["cell_number"]),
            "--json",
        ]
    )
    assert code == 0
    story = json.loads(capsys.readouterr().out)
    assert story["cell_id"] == cell["cell_id"] and story["anomalies"]
    assert {a["prediction_id"] for a in story["anomalies"]} >= {cell["prediction_id"]}
    assert story["forecast"]["forecast"] and story["forecast"]["cell_id"] == cell["cell_id"]
    risk = story["risk"]["results"][0]
    assert risk["CellID"] == cell["cell_id"] and risk["RiskBand"] in ("dead", "high", "medium", "low", "unknown")
    assert story["state"] in ("float", "charge", "discharge", "rest", "equalize")
    code = main(
        [
            "analyze",
            "--workspace",
            str(trained["workspace"]),
            "--device-id",
            cell["device_id"],
            "--cell-number",
            str(cell["cell_number"]),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and f"cell {cell['cell_id']}" in text and "forecast CellVoltage" in text
    assert "failure risk within 2.0 days" in text and "anomalies stored:" in text


def test_real_forecast_names_targets_it_cannot_forecast(client, trained) -> None:
    canonical = trained["canonical"]
    device = canonical[canonical["DeviceID"] == canonical["DeviceID"].iloc[0]]
    recent = device[device["Timestamp"] > device["Timestamp"].max() - pd.Timedelta(days=2)]
    records = _records(recent)
    for record in records:
        record["CellVoltage"] = None  # the voltage sensor of the whole string is gone
    cell = recent["CellID"].iloc[0]
    body = client.post("/v1/forecast", json={"readings": records, "cell_id": cell, "steps": 3}).json()
    assert "CellVoltage" not in {row["Target"] for row in body["forecast"]}
    assert body["unknown_targets"]["CellVoltage"].startswith("unknown: 0 valid CellVoltage value(s)")
    assert "CellTemperature" not in body["unknown_targets"]
