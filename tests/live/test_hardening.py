"""Issue 12, live service: no confident answer from missing inputs, bounded inputs, bounded memory."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from live.fakes import ANOMALY_PARAMS, anomaly_reference, packet, register

STAMP = "2026-01-01T00:00:00Z"


def _models(registry, **failure_params) -> None:
    register(registry, "anomaly_hybrid", ANOMALY_PARAMS, anomaly_reference())
    register(registry, "failure_classifier", {"horizon_days": 7, **failure_params})
    register(registry, "forecaster", {})


def _ids_only(cells: int, when: str = STAMP) -> list[dict]:
    return [{"DeviceID": "A", "CellNumber": n, "Timestamp": when} for n in range(1, cells + 1)]


# -- missing inputs: unknown, never a confident answer -----------------------------------------
def test_reading_without_measurements_is_unknown_naming_inputs(make_client, registry) -> None:
    _models(registry)
    with make_client() as client:
        # First with no history, then after a full packet was remembered: still unknown.
        for _ in range(2):
            body = client.post("/v1/anomaly", json={"readings": _ids_only(2)}).json()
            assert body["unknown"] == 2 and body["flagged"] == 0
            for r in body["results"]:
                assert r["AnomalyFlag"] is None and r["AnomalyScore"] is None and r["AnomalyKind"] == "unknown"
                assert "no measurement" in r["reason"] and "CellVoltage" in r["reason"]
                assert set(r["missing"]) >= {"CellVoltage", "CellTemperature", "CellSpecificGravity"}
            assert client.post("/v1/anomaly", json={"readings": packet("A", 2, STAMP)}).status_code == 200
        # a mixed request: only the empty reading is unknown
        mixed = packet("A", 2, "2026-01-01T00:15:00Z") + _ids_only(1, "2026-01-01T00:15:00Z")
        mixed[-1]["CellNumber"] = 3
        body = client.post("/v1/anomaly", json={"readings": mixed}).json()
        assert [r["AnomalyKind"] for r in body["results"]] == ["normal", "normal", "unknown"]
        assert body["results"][0]["AnomalyFlag"] == 0 and body["results"][0]["missing"] == ["StringVoltage"]


def test_required_measurement_missing_without_history_is_unknown(make_client, registry) -> None:
    _models(registry)
    with make_client() as client:
        reading = {"DeviceID": "B", "CellNumber": 1, "Timestamp": STAMP, "CellTemperature": 25.0}
        r = client.post("/v1/anomaly", json={"readings": [reading]}).json()["results"][0]
        assert r["AnomalyFlag"] is None and r["AnomalyKind"] == "unknown"
        assert r["reason"].endswith("(CellVoltage)") and "no earlier reading" in r["reason"]
        # once the cell has a remembered voltage, a missing one is filled and the answer is known
        client.post("/v1/anomaly", json={"readings": packet("B", 1, "2026-01-01T00:15:00Z")})
        later = dict(reading, Timestamp="2026-01-01T00:30:00Z")
        r = client.post("/v1/anomaly", json={"readings": [later]}).json()["results"][0]
        assert r["AnomalyFlag"] == 0 and r["imputed"] is True and "CellVoltage" in r["missing"]


def test_failure_refuses_cells_without_inputs_or_history(make_client, registry) -> None:
    _models(registry, min_history_hours=24)
    with make_client() as client:
        # ids and timestamps only: a refusal naming the inputs, not p=1.0 "dead"
        rows = _ids_only(3) + _ids_only(3, "2026-01-02T06:00:00Z")
        response = client.post("/v1/failure", json={"readings": rows})
        assert response.status_code == 422, response.text
        assert "no valid CellVoltage, CellTemperature" in response.json()["detail"]
        # 24 cells x 1 healthy reading: too little history for every cell
        response = client.post("/v1/failure", json={"readings": packet("A", 24, STAMP)})
        assert response.status_code == 422 and "too little history" in response.json()["detail"]
        assert "needs at least 24 h" in response.json()["detail"]
        # a cell with 30 h of history is scored; the one seen once is unknown, named, no alarm
        history = [
            row for h in range(0, 31, 3) for row in packet("A", 2, f"2026-01-0{1 + h // 24}T{h % 24:02d}:00:00Z")
        ]
        lone = packet("A", 3, "2026-01-02T06:00:00Z")[2:]
        body = client.post("/v1/failure", json={"readings": history + lone}).json()
        by_cell = {r["CellID"]: r for r in body["results"]}
        assert by_cell["A-1"]["RiskBand"] in ("low", "medium", "high")
        assert by_cell["A-3"]["RiskBand"] == "unknown" and by_cell["A-3"]["FailureProbability"] is None
        assert by_cell["A-3"]["alarm"] is False and "too little history" in by_cell["A-3"]["reasons"][0]


# -- bounded, strictly typed inputs --------------------------------------------------------------
@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"CellNumber": 2**70}, "readings.0.CellNumber", "Input should be less than or equal to 1000000"),
        ({"CellNumber": True}, "readings.0.CellNumber", "Input should be a valid integer"),
        ({"CellVoltage": True}, "readings.0.CellVoltage", "Input should be a valid number"),
        ({"CellTemperature": "25"}, "readings.0.CellTemperature", "Input should be a valid number"),
        ({"Timestamp": "1500-01-01T00:00:00Z"}, "readings.0.Timestamp", "Value error, timestamp 1500-01-01"),
        ({"Timestamp": "2263-01-01T00:00:00Z"}, "readings.0.Timestamp", "Value error, timestamp 2263-01-01"),
        ({"Timestamp": "9999-12-31T00:00:00"}, "readings.0.Timestamp", "Value error, timestamp 9999-12-31"),
        ({"DeviceID": "x" * 129}, "readings.0.DeviceID", "String should have at most 128 characters"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/anomaly", "/v1/failure"])
def test_out_of_range_and_boolean_inputs_are_422(make_client, registry, path, change, field, reason) -> None:
    _models(registry)
    with make_client() as client:
        reading = dict(packet("A", 1, STAMP)[0], **change)
        response = client.post(path, json={"readings": [reading]})
        assert response.status_code == 422, response.text
        errors = response.json()["errors"]
        assert any(e["field"] == field and e["reason"].startswith(reason) for e in errors), errors
        # the connection and the service carry on
        assert client.post("/v1/anomaly", json={"readings": packet("A", 1, STAMP)}).status_code == 200


def test_huge_identifiers_do_not_grow_memory(make_client, registry) -> None:
    _models(registry)
    with make_client() as client:
        big = "D" * 2_000_000
        client.post("/v1/anomaly", json={"readings": packet("warm", 2, STAMP)})
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for k in range(60):
                response = client.post("/v1/anomaly", json={"readings": packet(big + str(k), 1, STAMP)})
                assert response.status_code == 422
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 5_000_000, f"memory grew by {grown} bytes"
        assert client.get("/health").json()["history_rows"] == 2


def test_history_is_bounded_by_bytes() -> None:
    from bms_live.context import ReadingHistory

    history = ReadingHistory(per_cell=10, columns=["CellVoltage"], max_rows=10**9, max_bytes=200_000)
    for d in range(200):  # 200 devices x 24 cells x 1 row
        name = f"dev{d:03d}" + "x" * 100
        cells = np.asarray([f"{name}-{n}" for n in range(24)], dtype=object)
        history.update(
            np.full(24, name, dtype=object), cells, np.arange(24), np.full(24, d, dtype=np.int64), np.ones((24, 1))
        )
    assert 0 < history.nbytes <= 200_000
    assert len(history) < 200 * 24
    newest = history.context(np.asarray(["dev199" + "x" * 100], dtype=object))
    assert newest is not None and len(newest.ts) == 24  # the most recent device is kept
    assert history.context(np.asarray(["dev000" + "x" * 100], dtype=object)) is None
