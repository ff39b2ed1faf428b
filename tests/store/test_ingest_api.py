"""POST /v1/ingest and the REST routes over the store (SQLite and PostgreSQL), restarts included."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pytest
from bms_schema.registry import ModelRegistry
from fastapi.testclient import TestClient
from live.fakes import ANOMALY_PARAMS, FAKE_LOADERS, anomaly_reference, packet, register

#: The stand-in anomaly model scores the 12-reading rolling mean of the voltage: its answers
#: depend on the remembered history, so a restart that lost it would change them.
HISTORY_PARAMS = {**ANOMALY_PARAMS, "score_column": "VoltageRollMean", "threshold": 1.5}


def _stamp(k: int) -> str:
    return (pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(minutes=15 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _packets(n: int, device: str = "A", cells: int = 4) -> list[list[dict[str, Any]]]:
    out = []
    for k in range(n):
        rows = packet(device, cells, _stamp(k), voltage=2.23 + (0.08 if k % 7 == 3 else 0.0) + 0.002 * (k % 3))
        out.append(rows)
    return out


@pytest.fixture
def open_app(workspace, database_url) -> Callable[..., Any]:
    from bms_live.app import create_app
    from bms_live.settings import Settings

    registry = ModelRegistry()
    register(registry, "anomaly_hybrid", HISTORY_PARAMS, anomaly_reference())
    register(registry, "failure_classifier", {"horizon_days": 7})
    register(registry, "forecaster", {})

    @contextmanager
    def factory(**overrides: Any) -> Iterator[TestClient]:
        settings = Settings.from_env(poll_seconds=0, database_url=database_url, **overrides)
        with TestClient(create_app(settings, loaders=FAKE_LOADERS)) as client:
            yield client

    return factory


def test_ingest_formats_idempotency_and_scores(open_app) -> None:
    from bms_datagen.simulator import simulate_fleet

    with open_app() as client:
        first = client.post("/v1/ingest", json={"readings": packet("A", 3, _stamp(0))})
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["stored"], body["duplicates"], body["packets"], body["scored"]) == (3, 0, 1, 3)
        assert body["model"] == {"name": "anomaly_hybrid", "version": "v0001"}
        resent = client.post("/v1/ingest", json={"readings": packet("A", 3, _stamp(0))}).json()
        assert (resent["stored"], resent["duplicates"], resent["scored"]) == (0, 3, 0)
        assert "already stored" in resent["not_scored"]

        raw = simulate_fleet(devices=1, cells_per_device=3, days=0.05, interval_minutes=15, seed=0)
        csv = client.post("/v1/ingest", content=raw.to_csv(index=False), headers={"content-type": "text/csv"})
        assert csv.status_code == 200, csv.text
        expected = len(raw.drop_duplicates(["DeviceID", "CellNumber", "PacketDateTime"]))
        assert csv.json()["stored"] == expected and csv.json()["packets"] == raw["PacketDateTime"].nunique()
        rows = json.loads(raw.to_json(orient="records"))
        again = client.post("/v1/ingest", json={"rows": rows}).json()
        assert again["stored"] == 0 and again["duplicates"] == len(raw)
        readings = client.get("/v1/readings", params={"device_id": "1", "cell_number": 2}).json()
        assert readings["count"] == raw[raw["CellNumber"] == 2]["PacketDateTime"].nunique()

        for bad, field, reason in [
            ({"readings": packet("A", 1, _stamp(1)), "rows": [{}]}, "body", "exactly one of"),
            ({}, "body", "exactly one of"),
            (
                {"readings": [dict(packet("A", 1, _stamp(1))[0], CellVoltage=True)]},
                "readings.0.CellVoltage",
                "Input should be a valid number",
            ),
            ({"rows": [dict(rows[0], CellVoltage=True)]}, "body", "true/false"),
            ({"rows": [dict(rows[0], DeviceID="x" * 200)]}, "rows.0.DeviceID", "at most 128"),
        ]:
            response = client.post("/v1/ingest", json=bad)
            assert response.status_code == 422, (bad, response.text)
            errors = response.json()["errors"]
            assert any(e["field"] == field and reason in e["reason"] for e in errors), errors
        wrong_type = client.post("/v1/ingest", content=b"x", headers={"content-type": "application/xml"})
        assert wrong_type.status_code == 422 and "text/csv" in wrong_type.json()["detail"]
        assert client.get("/v1/fleet").json()["cells"] == 6


def test_restart_changes_no_answer_and_keeps_feedback(open_app, database_url, tmp_path) -> None:
    """Packets 0..9 through one service vs 0..4, restart, 5..9: identical answers for 5..9."""
    packets = _packets(10)

    def answers(client: TestClient, batch: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
        out = []
        for rows in batch:
            body = client.post("/v1/anomaly", json={"readings": rows}).json()
            out.extend((r["CellID"], r["Timestamp"], r["AnomalyScore"], r["AnomalyFlag"]) for r in body["results"])
        return out

    # reference: one service without a store (memory history only), all packets in turn
    with open_app(store=False) as client:
        expected = answers(client, packets)
    with open_app() as client:
        for rows in packets[:5]:
            ingest = client.post("/v1/ingest", json={"readings": rows}).json()
            assert ingest["stored"] == 4
        flagged_id = client.get("/v1/anomalies").json()["items"][0]["prediction_id"]
        fb = client.post("/v1/feedback", json={"feedback": [{"prediction_id": flagged_id, "actual": True}]})
        assert fb.status_code == 200
        before = client.get("/v1/feedback").json()["metrics"]
    with open_app() as client:  # a new process would see exactly this: the store
        assert client.get("/v1/feedback").json()["metrics"] == before
        assert client.get("/health").json()["history_rows"] == 0  # nothing in memory until a device is seen
        got = answers(client, packets[5:])
        assert got == expected[5 * 4 :]
        assert any(flag for *_, flag in got) and not all(flag for *_, flag in got)
        # feedback on a prediction made before the restart comes from the store
        again = client.post("/v1/feedback", json={"feedback": [{"prediction_id": flagged_id, "actual": False}]})
        assert again.status_code == 200 and again.json()["accepted"] == 1
        assert again.json()["metrics"]["anomaly"]["fp"] == 1
        items = client.get("/v1/feedback/items").json()["items"]
        assert [(i["prediction_id"], i["actual"]) for i in items] == [(flagged_id, False)]
        assert client.get("/models").status_code == 200


def test_rest_routes_over_the_store(open_app) -> None:
    with open_app() as client:
        for rows in _packets(12, "S", cells=3):
            assert client.post("/v1/ingest", json={"readings": rows}).status_code == 200
        fleet = client.get("/v1/fleet").json()
        assert fleet["devices"] == 1 and fleet["cells"] == 3 and fleet["packets"] == 12
        assert fleet["last_reading"] == _stamp(11)
        assert client.get("/v1/devices").json()["items"][0]["device_id"] == "S"
        cells = client.get("/v1/cells", params={"device_id": "S", "limit": 2}).json()
        assert cells["count"] == 2 and cells["next_offset"] == 2
        window = client.get("/v1/readings", params={"device_id": "S", "start": _stamp(2), "end": _stamp(4)}).json()
        assert window["count"] == 6
        anomalies = client.get("/v1/anomalies", params={"device_id": "S"}).json()
        assert anomalies["count"] >= 1 and all(a["flag"] is True for a in anomalies["items"])
        normal = client.get("/v1/anomalies", params={"device_id": "S", "flagged": "false", "limit": 5}).json()
        assert normal["count"] == 5 and all(a["flag"] is False for a in normal["items"])
        alerts = client.get("/v1/alerts", params={"status": "open"}).json()["items"]
        assert alerts and alerts[0]["kind"].startswith("anomaly:")
        alert_id = alerts[0]["alert_id"]
        ack = client.post(f"/v1/alerts/{alert_id}/acknowledge", json={"by": "ops"}).json()
        assert ack["status"] == "acknowledged" and ack["acknowledged_by"] == "ops"
        assert client.post(f"/v1/alerts/{alert_id}/resolve").json()["status"] == "resolved"
        assert client.post("/v1/alerts/999999/resolve").status_code == 404
        risk = client.post("/v1/risk/refresh", params={"device_id": "S"}).json()
        assert len(risk["results"]) == 3 and risk["as_of"] == _stamp(11)
        stored_risk = client.get("/v1/risk").json()["items"]
        assert len(stored_risk) == 3 and {r["cell_id"] for r in stored_risk} == {"S-1", "S-2", "S-3"}
        forecast = client.post("/v1/forecasts/refresh", params={"device_id": "S", "cell_number": 2, "steps": 4})
        assert forecast.status_code == 200 and forecast.json()["origin"] == _stamp(11)
        stored_fc = client.get("/v1/forecasts", params={"device_id": "S"}).json()["items"]
        assert len(stored_fc) == 8 and {f["step"] for f in stored_fc} == {1, 2, 3, 4}
        story = client.get("/v1/cells/analyze", params={"device_id": "S", "cell_number": 2}).json()
        assert story["readings_last_24h"] == 12 and story["forecast"]["cell_id"] == "S-2"
        assert story["risk"]["results"][0]["CellID"] == "S-2"
        missing = client.post("/v1/risk/refresh", params={"device_id": "nobody"})
        assert missing.status_code == 422 and "no stored readings" in missing.json()["detail"]
        paths = set(client.get("/openapi.json").json()["paths"])
        assert {
            "/v1/ingest",
            "/v1/fleet",
            "/v1/devices",
            "/v1/cells",
            "/v1/readings",
            "/v1/anomalies",
            "/v1/risk",
            "/v1/forecasts",
            "/v1/alerts",
            "/v1/feedback/items",
        } <= paths


def test_ingest_publishes_committed_events_to_bounded_subscribers(open_app) -> None:
    with open_app() as client:
        service = client.app.state.service
        everything = service.events.subscribe(maxsize=3)
        only_b = service.events.subscribe(maxsize=100, devices={"B"})
        for k in range(5):
            client.post("/v1/ingest", json={"readings": packet("A", 2, _stamp(k))})
        client.post("/v1/ingest", json={"readings": packet("B", 2, _stamp(0))})
        client.post("/v1/ingest", json={"readings": packet("B", 2, _stamp(0))})  # resent: nothing new, no event
        events = everything.drain()
        assert len(events) == 3 and everything.dropped == 3  # the slow subscriber lost its oldest events
        assert [e["devices"] for e in events] == [["A"], ["A"], ["B"]]
        mine = only_b.drain()
        assert len(mine) == 1 and [r["CellID"] for r in mine[0]["readings"]] == ["B-1", "B-2"]
        assert mine[0]["scores"][0]["prediction_id"] and mine[0]["model"]["name"] == "anomaly_hybrid"
        assert mine[0]["readings"][0]["Timestamp"] == _stamp(0)
