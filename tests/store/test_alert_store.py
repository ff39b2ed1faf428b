"""The store's alert and delivery paths on SQLite and PostgreSQL: rules on ingest, dedupe across
ingests, cooldown, string/model alerts without a cell, idempotent delivery rows and attempts."""

from __future__ import annotations

import time

import pandas as pd
from bms_schema import normalize

START = pd.Timestamp("2026-01-01T00:00:00Z")


def _packet(k: int, hot: bool) -> pd.DataFrame:
    rows = [
        {
            "DeviceID": "D0",
            "CellNumber": n,
            "Timestamp": START + pd.Timedelta(minutes=15 * k),
            "CellVoltage": 2.22,
            "CellTemperature": 55.0 if hot and n == 2 else 25.0,
            "CellSpecificGravity": 1.22,
            "InstantaneousCurrent": 0.5,
            "AmbientTemperature": 24.0,
        }
        for n in (1, 2, 3)
    ]
    frame, _ = normalize(pd.DataFrame(rows))
    return frame


def test_alerts_dedupe_cooldown_and_deliveries(store) -> None:
    from bms_live.alerts.config import AlertRules
    from bms_live.alerts.engine import AlertEngine

    engine = AlertEngine(AlertRules())
    store.alert_cooldown_us = 60_000_000

    def score(conn, new_rows):
        return [], engine.evaluate(new_rows, None, lambda keys: store.open_alert_kinds(conn, keys))

    first = store.ingest(_packet(0, hot=True), "readings", score).alerts
    second = store.ingest(_packet(1, hot=True), "readings", score).alerts
    assert [(a["new"], a["kind"], a["severity"]) for a in first + second] == [
        (True, "cell_temperature", "critical"),
        (False, "cell_temperature", "critical"),
    ]
    alert_id = first[0]["alert_id"]
    [item] = store.alerts()["items"]
    assert (item["cell_id"], item["occurrences"], item["details"]["temperature"]) == ("D0-2", 2, 55.0)
    with store.engine.connect() as conn:
        assert store.open_alert_kinds(conn, list(range(1, 10))) == {2: {"cell_temperature"}}
    # deliveries: one row per (alert, channel, target) however often it is claimed
    row = store.claim_delivery(alert_id, "webhook", "http://127.0.0.1:1/hook")
    again = store.claim_delivery(alert_id, "webhook", "http://127.0.0.1:1/hook")
    assert row["delivery_key"] == again["delivery_key"] and row["status"] == "pending"
    assert store.undelivered_alerts([("webhook", "http://127.0.0.1:1/hook"), ("email", "ops@x")]) == [alert_id]
    retry = store.record_attempt(row["delivery_key"], False, "attempt 1: boom", False, 123)
    assert (retry["status"], retry["attempts"], retry["next_attempt_us"]) == ("pending", 1, 123)
    assert [r["delivery_key"] for r in store.pending_deliveries()] == [row["delivery_key"]]
    done = store.record_attempt(row["delivery_key"], True, None, True, None)
    assert (done["status"], done["attempts"]) == ("delivered", 2) and store.pending_deliveries() == []
    [shown] = store.deliveries(alert_id)
    assert (shown["channel"], shown["status"], shown["attempts"], shown["last_error"]) == (
        "webhook",
        "delivered",
        2,
        "attempt 1: boom",
    )
    # resolved: the cooldown holds a new alert back, then one opens
    store.set_alert_status(alert_id, "resolved")
    held = store.ingest(_packet(2, hot=True), "readings", score).alerts
    assert [(a["new"], a.get("suppressed")) for a in held] == [(False, "cooldown")]
    store.alert_cooldown_us = 0
    reopened = store.ingest(_packet(3, hot=True), "readings", score).alerts
    assert [a["new"] for a in reopened] == [True] and reopened[0]["alert_id"] != alert_id
    # alerts without a cell (string / model level) dedupe per device and kind
    rows = engine.evaluate_models({"models": {"anomaly": {"flagged": ["CellVoltage"]}}}, {}, time.time_ns() // 1000)
    assert [a["new"] for a in store.raise_alerts(rows) + store.raise_alerts(rows)] == [True, False]
    fleet = [a for a in store.alerts()["items"] if a["device_id"] == "fleet"]
    assert [(a["cell_id"], a["kind"], a["occurrences"]) for a in fleet] == [(None, "drift:anomaly", 2)]
