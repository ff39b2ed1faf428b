"""The HTTP API over stand-in models: happy paths, 422/503/401/413/404, hot reload under load."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from live.fakes import ANOMALY_PARAMS, anomaly_reference, packet, register


def _anomaly_models(registry) -> None:
    register(registry, "anomaly_hybrid", ANOMALY_PARAMS, anomaly_reference())


def _all_models(registry) -> None:
    _anomaly_models(registry)
    register(registry, "failure_classifier", {"horizon_days": 7})
    register(registry, "forecaster", {})


def _history(cells: int = 3, packets: int = 8, low_cell: int | None = None) -> list[dict]:
    rows = []
    for k in range(packets):
        stamp = f"2026-01-01T{k // 4:02d}:{(k % 4) * 15:02d}:00Z"
        for row in packet("A", cells, stamp):
            if low_cell is not None and row["CellNumber"] == low_cell:
                row["CellVoltage"] = 2.15
            rows.append(row)
    return rows


# -- no model yet ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/anomaly", {"readings": packet("A", 2, "2026-01-01T00:00:00Z")}),
        ("/v1/failure", {"readings": packet("A", 2, "2026-01-01T00:00:00Z")}),
        ("/v1/forecast", {"readings": packet("A", 2, "2026-01-01T00:00:00Z"), "cell_id": "A-1"}),
    ],
)
def test_no_model_is_503_with_how_to_train(make_client, path, body) -> None:
    with make_client() as client:
        response = client.post(path, json=body)
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert detail.startswith("no model yet: run the pipeline (uv run agent-driver/run_full_pipeline.py)")
        assert response.headers["retry-after"] == "30"
        health = client.get("/health").json()
        assert health["status"] == "ok" and not any(health["models_loaded"].values())


# -- anomaly -------------------------------------------------------------------------------
def test_anomaly_scores_each_reading_with_flag_and_reason(make_client, registry) -> None:
    _anomaly_models(registry)
    with make_client() as client:
        readings = packet("A", 3, "2026-01-01T00:00:00Z") + packet("A", 3, "2026-01-01T00:15:00Z")
        readings[4]["CellVoltage"] = 2.40  # far off: flagged by the stand-in (centre 2.23, spread 0.01)
        readings[5]["CellVoltage"] = 65.535  # a 0xFFFF sentinel: a sensor fault
        response = client.post("/v1/anomaly", json={"readings": readings})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == {"name": "anomaly_hybrid", "version": "v0001"}
        assert body["count"] == 6 and body["flagged"] == 2
        flags = [r["AnomalyFlag"] for r in body["results"]]
        assert flags == [0, 0, 0, 0, 1, 1]
        flagged = body["results"][4]
        assert flagged["CellID"] == "A-2" and flagged["Timestamp"] == "2026-01-01T00:15:00Z"
        assert flagged["AnomalyScore"] == pytest.approx((2.40 - 2.23) / 0.01)
        assert flagged["reason"] == "CellVoltage far from normal" and flagged["AnomalyKind"] == "statistical"
        assert body["results"][5]["AnomalyKind"] == "sensor_fault" and body["results"][5]["imputed"] is True
        assert set(flagged["scores"]) == {"IForestScore"}
        ids = [r["prediction_id"] for r in body["results"]]
        assert len(set(ids)) == 6


def test_raw_packet_names_are_accepted_over_http(make_client, registry) -> None:
    _anomaly_models(registry)
    raw = {
        "Device ID": "B",
        "Cell ID": 1,
        "PacketDateTime": "2026-01-01T00:00:00",
        "Cell Voltage": 2.23,
        "Cell Temperature": 25,
        "Cell Specific Gravity": 1.22,
        "Instantaneous Current": 0,
        "Ambient Temperature": 24,
        "SerialNumber": "X1",
    }
    with make_client() as client:
        response = client.post("/v1/anomaly", json={"readings": [raw]})
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["CellID"] == "B-1"


@pytest.mark.parametrize(
    "body, field, reason",
    [
        ({"readings": []}, "readings", "List should have at least 1 item"),
        (
            {"readings": [{"CellNumber": 1, "Timestamp": "2026-01-01T00:00:00Z", "CellVoltage": "high"}]},
            "readings.0.CellVoltage",
            "Input should be a valid number",
        ),
        (
            {"readings": [{"CellNumber": -1, "Timestamp": "2026-01-01T00:00:00Z"}]},
            "readings.0.CellNumber",
            "Input should be greater than or equal to 0",
        ),
        (
            {"readings": [{"CellNumber": 1, "Timestamp": "yesterday"}]},
            "readings.0.Timestamp",
            "Input should be a valid",
        ),
        ({"readings": [{"CellNumber": 1}]}, "readings.0.Timestamp", "Field required"),
        ({"readings": packet("A", 1, "2026-01-01T00:00:00Z"), "extra": 1}, "extra", "Extra inputs are not permitted"),
    ],
)
def test_anomaly_422_names_field_and_reason(make_client, registry, body, field, reason) -> None:
    _anomaly_models(registry)
    with make_client() as client:
        response = client.post("/v1/anomaly", json=body)
        assert response.status_code == 422
        errors = response.json()["errors"]
        match = [e for e in errors if e["field"] == field]
        assert match, errors
        assert match[0]["reason"].startswith(reason)


def test_not_json_is_422(make_client, registry) -> None:
    _anomaly_models(registry)
    with make_client() as client:
        response = client.post("/v1/anomaly", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["errors"][0]["reason"].startswith("JSON decode error")


def test_too_many_readings_is_422_and_too_large_body_is_413(make_client, registry) -> None:
    _anomaly_models(registry)
    with make_client(max_readings=5, max_body_bytes=4096) as client:
        response = client.post("/v1/anomaly", json={"readings": packet("A", 6, "2026-01-01T00:00:00Z")})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "readings"
        assert "limit is 5" in response.json()["detail"]
        big = {"readings": packet("A", 40, "2026-01-01T00:00:00Z")}
        response = client.post("/v1/anomaly", json=big)
        assert response.status_code == 413
        assert "the limit is 4096 bytes" in response.json()["detail"]


# -- API key -------------------------------------------------------------------------------
def test_api_key_is_required_when_configured(make_client, registry) -> None:
    _anomaly_models(registry)
    body = {"readings": packet("A", 1, "2026-01-01T00:00:00Z")}
    with make_client(api_key="s3cret") as client:
        for method, path, kwargs in (
            ("post", "/v1/anomaly", {"json": body}),
            ("get", "/models", {}),
            ("get", "/metrics", {}),
            ("get", "/v1/monitoring/drift", {}),
            ("post", "/v1/feedback", {"json": {"feedback": [{"prediction_id": "ab-1", "actual": True}]}}),
        ):
            response = getattr(client, method)(path, **kwargs)
            assert response.status_code == 401, path
            assert "missing or wrong API key" in response.json()["detail"]
        assert client.post("/v1/anomaly", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/v1/anomaly", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.post("/v1/anomaly", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200  # liveness stays open


# -- failure and forecast ------------------------------------------------------------------
def test_failure_ranks_cells_and_returns_ids(make_client, registry) -> None:
    _all_models(registry)
    with make_client() as client:
        response = client.post("/v1/failure", json={"readings": _history(low_cell=2)})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"]["name"] == "failure_classifier" and body["horizon_days"] == 7.0
        by_cell = {r["CellID"]: r for r in body["results"]}
        assert by_cell["A-2"]["FailureProbability"] == pytest.approx(1.0)
        assert by_cell["A-2"]["RiskBand"] == "high" and by_cell["A-2"]["alarm"] is True
        assert by_cell["A-1"]["alarm"] is False
        assert by_cell["A-2"]["reasons"] == ["cell voltage, 24 h mean low", "voltage vs string peers"]
        assert by_cell["A-2"]["extra"] == {"IsDead": False}
        wrong = client.post("/v1/failure", json={"readings": _history(), "horizon_days": 30})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "horizon_days"
        bad = client.post("/v1/failure", json={"readings": _history(), "horizon_days": -1})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "horizon_days"


def test_forecast_long_table_and_errors(make_client, registry) -> None:
    _all_models(registry)
    with make_client() as client:
        response = client.post("/v1/forecast", json={"readings": _history(), "cell_id": 2, "steps": 4})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["cell_id"] == "A-2" and body["steps"] == 4
        rows = body["forecast"]
        assert len(rows) == 8 and set(rows[0]) == {"Timestamp", "Target", "Step", "Forecast", "Lower", "Upper"}
        assert [r["Step"] for r in rows[:4]] == [1, 2, 3, 4]
        assert rows[0]["Timestamp"] == "2026-01-01T02:00:00Z"
        assert rows[0]["Lower"] < rows[0]["Forecast"] < rows[0]["Upper"]
        unknown = client.post("/v1/forecast", json={"readings": _history(), "cell_id": "Z-9"})
        assert unknown.status_code == 422 and "unknown cell 'Z-9'" in unknown.json()["detail"]
        too_far = client.post("/v1/forecast", json={"readings": _history(), "cell_id": 1, "steps": 500})
        assert too_far.status_code == 422 and too_far.json()["errors"][0]["field"] == "steps"


# -- feedback ------------------------------------------------------------------------------
def test_feedback_gives_rolling_precision_and_recall(make_client, registry) -> None:
    _all_models(registry)
    with make_client() as client:
        readings = packet("A", 4, "2026-01-01T00:00:00Z")
        readings[0]["CellVoltage"] = 2.40
        readings[1]["CellVoltage"] = 2.45
        results = client.post("/v1/anomaly", json={"readings": readings}).json()["results"]
        assert [r["AnomalyFlag"] for r in results] == [1, 1, 0, 0]
        truth = [True, False, True, False]  # tp, fp, fn, tn
        feedback = [{"prediction_id": r["prediction_id"], "actual": a} for r, a in zip(results, truth)]
        feedback.append({"prediction_id": "ffffffffffff-0", "actual": True})
        response = client.post("/v1/feedback", json={"feedback": feedback})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["accepted"] == 4 and body["unknown_ids"] == ["ffffffffffff-0"]
        m = body["metrics"]["anomaly"]
        assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 1)
        assert m["precision"] == 0.5 and m["recall"] == 0.5
        failure = client.post("/v1/failure", json={"readings": _history(low_cell=1)}).json()["results"]
        fb = [{"prediction_id": r["prediction_id"], "actual": r["CellID"] == "A-1"} for r in failure]
        m = client.post("/v1/feedback", json={"feedback": fb}).json()["metrics"]["failure"]
        assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 0) and m["precision"] == 1.0 and m["recall"] == 1.0
        assert client.get("/v1/feedback").json()["metrics"]["anomaly"]["n"] == 4
        text = client.get("/metrics").text
        assert 'bms_live_feedback_precision{model="anomaly"} 0.5' in text
        unknown = client.post("/v1/feedback", json={"feedback": [{"prediction_id": "nope-1", "actual": True}]})
        assert unknown.status_code == 404 and "none of the 1 prediction ids is known" in unknown.json()["detail"]
        bad = client.post("/v1/feedback", json={"feedback": [{"prediction_id": "ab-1", "actual": "maybe"}]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "feedback.0.actual"


# -- drift, models, metrics ----------------------------------------------------------------
def test_drift_endpoint_flags_shifted_feature(make_client, registry) -> None:
    _anomaly_models(registry)  # reference: CellVoltage ~ N(2.23, 0.01), TempAboveAmbient ~ N(1.0, 0.3)
    rng = np.random.default_rng(0)
    with make_client() as client:
        first = client.get("/v1/monitoring/drift").json()
        assert first["models"]["anomaly"]["status"] == "insufficient_data"
        assert first["models"]["failure"]["status"] == "no_model"
        for k in range(20):  # 20 packets x 10 cells; voltage normal, temperature 3 degC above usual
            stamp = f"2026-01-01T{k // 4:02d}:{(k % 4) * 15:02d}:00Z"
            readings = packet("A", 10, stamp)
            for row in readings:
                row["CellVoltage"] = float(rng.normal(2.23, 0.01))
                row["CellTemperature"] = float(24.0 + 4.0 + rng.normal(0, 0.3))
            assert client.post("/v1/anomaly", json={"readings": readings}).status_code == 200
        report = client.get("/v1/monitoring/drift").json()
        anomaly = report["models"]["anomaly"]
        assert anomaly["window"] == 200 and anomaly["status"] == "drift"
        assert anomaly["flagged"] == ["TempAboveAmbient"]
        assert anomaly["features"]["TempAboveAmbient"]["method"] == "ks"
        assert anomaly["features"]["CellVoltage"]["flagged"] is False
        assert report["flagged"] == {"anomaly": ["TempAboveAmbient"]}
        assert report["thresholds"]["psi"] == 0.2
        assert 'bms_live_drift_flagged_features{model="anomaly_hybrid"} 1' in client.get("/metrics").text


def test_models_and_metrics_endpoints(make_client, registry) -> None:
    _anomaly_models(registry)
    with make_client() as client:
        models = client.get("/models").json()
        served = models["served"]["anomaly"]
        assert served["loaded"] is True and served["version"] == "v0001" and served["metrics"] == {"f1": 0.5}
        assert served["loaded_at"] and served["features"] == ["CellVoltage", "TempAboveAmbient"]
        assert models["served"]["failure"]["loaded"] is False
        assert models["registry"]["anomaly_hybrid"]["latest"] == "v0001"
        readings = packet("A", 3, "2026-01-01T00:00:00Z")
        readings[0]["CellVoltage"] = 2.5
        client.post("/v1/anomaly", json={"readings": readings})
        client.post("/v1/anomaly", json={"readings": []})
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.text
        assert 'bms_live_requests_total{route="/v1/anomaly",method="POST",status="200"} 1' in text
        assert 'bms_live_requests_total{route="/v1/anomaly",method="POST",status="422"} 1' in text
        assert 'bms_live_request_duration_seconds_count{route="/v1/anomaly"} 2' in text
        assert 'bms_live_predictions_total{model="anomaly",outcome="flagged"} 1' in text
        assert 'bms_live_predictions_total{model="anomaly",outcome="normal"} 2' in text
        assert 'bms_live_anomaly_score_count{version="v0001"} 3' in text
        assert 'bms_live_model_info{model="anomaly_hybrid",version="v0001"} 1' in text
        docs = client.get("/openapi.json").json()
        assert {
            "/v1/anomaly",
            "/v1/failure",
            "/v1/forecast",
            "/v1/feedback",
            "/v1/monitoring/drift",
            "/metrics",
            "/health",
            "/models",
        } <= set(docs["paths"])
        assert client.get("/docs").status_code == 200


# -- hot reload ----------------------------------------------------------------------------
def test_reload_endpoint_picks_up_a_new_version(make_client, registry) -> None:
    _anomaly_models(registry)
    with make_client() as client:
        body = {"readings": packet("A", 1, "2026-01-01T00:00:00Z", voltage=2.30)}
        assert client.post("/v1/anomaly", json=body).json()["model"]["version"] == "v0001"
        register(registry, "anomaly_hybrid", {**ANOMALY_PARAMS, "centre": 2.30, "tag": "second"}, anomaly_reference())
        results = client.post("/v1/models/reload").json()["results"]
        assert results[0] == {
            "key": "anomaly",
            "name": "anomaly_hybrid",
            "status": "loaded",
            "version": "v0002",
            "previous": "v0001",
        }
        second = client.post("/v1/anomaly", json=body).json()
        assert second["model"]["version"] == "v0002"
        assert second["results"][0]["AnomalyScore"] == pytest.approx(0.1)  # centre moved to 2.30
        again = client.post("/v1/models/reload").json()["results"][0]
        assert again["status"] == "unchanged"


def test_hot_swap_under_concurrent_requests_never_fails(make_client, registry) -> None:
    """Requests keep flowing while the watcher swaps in three new versions: no request fails, every
    swap happens mid-traffic (the old version answered before it and the new one after it, with the
    workers running throughout), each worker sees the versions in order (a swap is atomic, never
    undone) and every answer is internally consistent (the version it names computed its scores).
    Each swap waits for answers, not for a clock, so a slow machine makes the test slower, not red."""
    centres = {"v0001": 2.23, "v0002": 2.25, "v0003": 2.27, "v0004": 2.29}
    per_version = 5  # answers each version must give before the next one is registered
    register(registry, "anomaly_hybrid", {**ANOMALY_PARAMS, "delay": 0.002}, anomaly_reference())
    with make_client(poll_seconds=0.05) as client:
        stop = threading.Event()
        failures: list[str] = []
        seen: dict[str, list[tuple[str, float]]] = {f"D{i}": [] for i in range(4)}
        lock = threading.Lock()

        def worker(device: str) -> None:
            k = 0
            while not stop.is_set():
                stamp = f"2026-01-01T00:00:{k % 60:02d}Z"
                k += 1
                response = client.post("/v1/anomaly", json={"readings": packet(device, 2, stamp, voltage=2.31)})
                if response.status_code != 200:
                    with lock:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                body = response.json()
                with lock:
                    seen[device].append((body["model"]["version"], body["results"][0]["AnomalyScore"]))

        def answers(version: str) -> int:
            with lock:
                return sum(v == version for answered in seen.values() for v, _ in answered)

        def wait_for_answers(version: str) -> None:
            deadline = time.monotonic() + 60
            while answers(version) < per_version:
                assert time.monotonic() < deadline, f"{version} gave {answers(version)} answers in 60 s"
                assert all(t.is_alive() for t in threads), "a request worker died"
                time.sleep(0.01)

        threads = [threading.Thread(target=worker, args=(device,), daemon=True) for device in seen]
        for t in threads:
            t.start()
        try:
            for previous, version in (("v0001", "v0002"), ("v0002", "v0003"), ("v0003", "v0004")):
                wait_for_answers(previous)  # traffic is flowing on the served version
                params = {**ANOMALY_PARAMS, "centre": centres[version], "tag": version, "delay": 0.002}
                assert register(registry, "anomaly_hybrid", {**params, "load_seconds": 0.1}, anomaly_reference()) == (
                    version
                )
            wait_for_answers("v0004")  # the last swap is observed by the same running workers
            assert all(t.is_alive() for t in threads)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert failures == []
    answered = [pair for pairs in seen.values() for pair in pairs]
    assert {v for v, _ in answered} == set(centres)
    for version in centres:
        assert sum(v == version for v, _ in answered) >= per_version, version
    order = sorted(centres)
    for device, pairs in seen.items():  # a worker never goes back to an older version
        indices = [order.index(v) for v, _ in pairs]
        assert indices == sorted(indices), device
    for version, score in answered:  # CellVoltage of cell 1 = 2.31 + 0.001
        assert score == pytest.approx(abs(2.311 - centres[version]) / 0.01), version


def test_chunked_body_over_the_limit_is_413(make_client, registry) -> None:
    _anomaly_models(registry)
    payload = json_bytes({"readings": packet("A", 60, "2026-01-01T00:00:00Z")})

    def chunks():
        for i in range(0, len(payload), 512):
            yield payload[i : i + 512]

    with make_client(max_body_bytes=2048) as client:
        response = client.post("/v1/anomaly", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert "request body too large" in response.json()["detail"]
        small = json_bytes({"readings": packet("A", 2, "2026-01-01T00:00:00Z")})
        ok = client.post("/v1/anomaly", content=iter([small]), headers={"content-type": "application/json"})
        assert ok.status_code == 200


def test_model_failure_is_a_json_500_and_the_service_keeps_serving(make_client, registry) -> None:
    register(
        registry,
        "anomaly_hybrid",
        {**ANOMALY_PARAMS, "features": ["CellVoltage"], "centre": "oops"},
        anomaly_reference(),
    )
    with make_client(raise_server_exceptions=False) as client:
        response = client.post("/v1/anomaly", json={"readings": packet("A", 1, "2026-01-01T00:00:00Z")})
        assert response.status_code == 500
        assert response.json()["detail"].startswith("internal error (UFuncTypeError")
        assert client.get("/health").status_code == 200


def json_bytes(body) -> bytes:
    import json

    return json.dumps(body).encode()


def test_big_anomaly_batches_run_in_the_thread_pool(make_client, registry, monkeypatch) -> None:
    import threading as th

    import bms_live.app as app_module

    _anomaly_models(registry)
    monkeypatch.setattr(app_module, "INLINE_MAX_READINGS", 2)
    with make_client() as client:
        service = client.app.state.service
        seen: list[str] = []
        original = service.anomaly
        monkeypatch.setattr(
            service, "anomaly", lambda readings: seen.append(th.current_thread().name) or original(readings)
        )
        small = client.post("/v1/anomaly", json={"readings": packet("A", 2, "2026-01-01T00:00:00Z")})
        big = client.post("/v1/anomaly", json={"readings": packet("A", 3, "2026-01-01T00:15:00Z")})
        assert small.status_code == big.status_code == 200 and big.json()["count"] == 3
        assert len(seen) == 2 and seen[0] != seen[1]  # inline on the loop's thread, then a pool worker
