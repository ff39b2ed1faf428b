"""The store on SQLite and PostgreSQL: migrations, idempotent ingest, queries, feedback, retention."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bms_schema import normalize

START = pd.Timestamp("2026-01-01T00:00:00Z")


def _canonical(devices: int = 2, cells: int = 3, packets: int = 4, minutes: int = 15) -> pd.DataFrame:
    rows = []
    for d in range(devices):
        for k in range(packets):
            for n in range(1, cells + 1):
                rows.append(
                    {
                        "DeviceID": f"D{d}",
                        "CellNumber": n,
                        "Timestamp": START + pd.Timedelta(minutes=minutes * k),
                        "CellVoltage": 2.23 + 0.001 * n + 0.0001 * k,
                        "CellTemperature": 25.0 + 0.1 * n,
                        "CellSpecificGravity": 1.22,
                        "InstantaneousCurrent": 0.5,
                        "AmbientTemperature": 24.0,
                    }
                )
    frame, _ = normalize(pd.DataFrame(rows))
    return frame


def test_migrations_create_exactly_the_declared_schema(store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from bms_live.store import tables as T
    from bms_live.store.engine import head_revision

    assert store.revision == head_revision() == "0002"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), T.metadata)
    assert diff == []
    # opening the store again is a no-op migration
    from bms_live.store import Store

    again = Store(url=store.url)
    assert again.revision == "0002"
    again.close()


def test_ingest_is_idempotent_and_counts(store) -> None:
    frame = _canonical()
    first = store.ingest(frame, "readings")
    assert (first.received, first.stored, first.duplicates, first.packets) == (24, 24, 0, 8)
    again = store.ingest(frame, "readings")
    assert (again.stored, again.duplicates, again.packets) == (0, 24, 0)
    assert len(again.new_rows) == 0
    # half new, half resent; a row repeated inside one request counts once
    later = _canonical(packets=6)
    later = later[later["Timestamp"] >= START + pd.Timedelta(hours=1)]  # 2 devices x 2 packets x 3 cells
    more = pd.concat([later, later.iloc[-1:]], ignore_index=True)
    mixed = store.ingest(pd.concat([frame.iloc[:6], more], ignore_index=True), "readings")
    assert (mixed.received, mixed.stored, mixed.duplicates) == (19, 12, 7)
    status = store.status()
    assert status["rows"]["readings"] == 36 and status["rows"]["cells"] == 6 and status["rows"]["packets"] == 12
    assert status["last_reading"] == "2026-01-01T01:15:00Z"


def test_readings_range_pagination_and_values(store) -> None:
    frame = _canonical(packets=8)
    frame.loc[(frame["CellNumber"] == 2) & (frame["DeviceID"] == "D0"), "CellVoltage"] = np.nan
    store.ingest(frame, "readings")
    page = store.readings("D0", 1, limit=3)
    assert page["count"] == 3 and page["next_offset"] == 3
    assert [r["timestamp"] for r in page["items"]] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:15:00Z",
        "2026-01-01T00:30:00Z",
    ]
    assert page["items"][1]["CellVoltage"] == pytest.approx(2.2311)
    start = int(pd.Timestamp("2026-01-01T01:00:00Z").value // 1000)
    end = int(pd.Timestamp("2026-01-01T01:30:00Z").value // 1000)
    window = store.readings("D0", start_us=start, end_us=end)
    assert window["count"] == 6 and window["next_offset"] is None  # 2 packets x 3 cells, end exclusive
    assert all(r["CellVoltage"] is None for r in window["items"] if r["cell_number"] == 2)
    last = store.readings("D0", 1, limit=3, offset=6)
    assert last["count"] == 2 and last["next_offset"] is None
    devices = store.devices()
    assert [d["device_id"] for d in devices["items"]] == ["D0", "D1"] and devices["items"][0]["cells"] == 3
    cells = store.cells("D1")
    assert cells["count"] == 3 and cells["items"][0]["last_reading"] == "2026-01-01T01:45:00Z"
    assert cells["items"][0]["last"]["CellVoltage"] == pytest.approx(2.2317)
    history = store.cell_history("D0")
    assert len(history) == 24 and history["Timestamp"].is_monotonic_increasing
    recent = store.recent_readings("D0", 2)
    assert len(recent) == 6 and recent["Timestamp"].min() == pd.Timestamp("2026-01-01T01:30:00Z")


def test_predictions_alerts_feedback_and_retention(store) -> None:
    frame = _canonical()

    def score(conn, new_rows):
        keys = new_rows["cell_key"].tolist()
        ts = new_rows["ts_us"].tolist()
        preds = [
            {
                "prediction_id": f"p-{i}",
                "kind": "anomaly",
                "cell_key": k,
                "ts_us": t,
                "model_name": "m",
                "model_version": "v0001",
                "score": float(i),
                "flag": i % 5 == 0,
                "label": "statistical" if i % 5 == 0 else "normal",
                "reason": None,
                "created_us": 1,
            }
            for i, (k, t) in enumerate(zip(keys, ts))
        ]
        alerts = [
            {
                "cell_key": keys[0],
                "device_id": "D0",
                "kind": "anomaly:statistical",
                "severity": "warning",
                "message": "m",
                "first_us": ts[0],
                "last_us": ts[i],
                "prediction_id": f"p-{i}",
            }
            for i in (0, 5)
        ]
        return preds, alerts

    result = store.ingest(frame, "readings", score)
    assert result.predictions == 24
    assert [a["new"] for a in result.alerts] == [True, False] and result.alerts[0]["alert_id"] == result.alerts[1][
        "alert_id"
    ]
    flagged = store.predictions_page("anomaly", flagged=True)
    assert flagged["count"] == 5 and {p["label"] for p in flagged["items"]} == {"statistical"}
    assert store.predictions_page("anomaly", device="D1", flagged=True)["count"] == 2
    alert = store.alerts(status="open")["items"][0]
    assert alert["occurrences"] == 2 and alert["cell_id"] == "D0-1"
    acked = store.set_alert_status(alert["alert_id"], "acknowledged", "operator")
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "operator"
    assert store.set_alert_status(999, "resolved") is None
    assert store.fleet()["open_alerts"] == 1  # acknowledged is not resolved

    store.record_feedback(
        [
            {
                "prediction_id": "p-0",
                "model": "anomaly",
                "model_version": "v0001",
                "predicted": True,
                "actual": False,
                "score": 0.0,
            }
        ]
    )
    store.record_feedback(
        [
            {
                "prediction_id": "p-0",
                "model": "anomaly",
                "model_version": "v0001",
                "predicted": True,
                "actual": True,
                "score": 0.0,
            },
            {
                "prediction_id": "p-1",
                "model": "anomaly",
                "model_version": "v0001",
                "predicted": False,
                "actual": False,
                "score": 1.0,
            },
        ]
    )
    pairs = store.feedback_pairs(window=10)
    assert sorted(pairs) == [("anomaly", "p-0", True, True, "v0001"), ("anomaly", "p-1", False, False, "v0001")]
    assert store.prediction("p-5")["flag"] is True

    # retention: with "now" one day after the data, keeping 0.5 days deletes everything but feedback
    store.set_alert_status(alert["alert_id"], "resolved")
    now = int((START + pd.Timedelta(days=1)).value // 1000)
    kept = store.cleanup(2, now=now)
    assert sum(kept["deleted"].values()) == 0
    gone = store.cleanup(0.5, now=now)
    assert gone["deleted"]["readings"] == 24 and gone["deleted"]["predictions"] == 24
    assert gone["deleted"]["alerts"] == 1 and gone["deleted"]["packets"] == 8
    assert store.status()["rows"]["feedback"] == 2
    with pytest.raises(Exception, match="days"):
        store.cleanup(0)
