"""Alert delivery against real receivers started here: a webhook and a Slack-compatible endpoint
(``http.server``) and an SMTP server (``aiosmtpd``). An injected hot cell gives one alert,
delivered once per channel; a failing receiver is retried and the delivery record says so;
a restart sends nothing twice."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pandas as pd
import pytest
from console.servers import Mailbox, Receiver, live_server, wait_for
from live.fakes import packet


def _stamp(k: int) -> str:
    return (pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(minutes=15 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Any:
    with Receiver(fail_first=2) as hook, Receiver() as slack, Mailbox() as mail:
        monkeypatch.setenv("BMS_ALERT_WEBHOOK_URL", hook.url)
        monkeypatch.setenv("BMS_ALERT_SLACK_URL", slack.url.replace("/hook", "/services/T000/B000/XXXX"))
        monkeypatch.setenv("BMS_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("BMS_SMTP_PORT", str(mail.port))
        monkeypatch.setenv("BMS_SMTP_FROM", "bms@example.org")
        monkeypatch.setenv("BMS_SMTP_TO", "ops@example.org, oncall@example.org")
        monkeypatch.setenv("BMS_ALERT_BACKOFF_SECONDS", "0.05")
        yield hook, slack, mail


def _hot(k: int) -> list[dict[str, Any]]:
    rows = packet("A", 6, _stamp(k), CellTemperature=25.0)
    if k >= 2:
        rows[2]["CellTemperature"] = 55.0  # cell A-3 runs hot from the third packet on
    return rows


def test_hot_cell_alert_is_delivered_once_per_channel_with_retries(make_app, channels) -> None:
    hook, slack, mail = channels
    app = make_app()
    service = app.state.service
    with live_server(app) as host, httpx.Client(base_url=f"http://{host}", timeout=10) as http:
        for k in range(6):
            assert http.post("/v1/ingest", json={"readings": _hot(k)}).status_code == 200
        assert service.delivery.wait_idle(10)
        alerts = http.get("/v1/alerts").json()["items"]
        assert [(a["cell_id"], a["kind"], a["severity"], a["occurrences"]) for a in alerts] == [
            ("A-3", "cell_temperature", "critical", 4)
        ]
        alert_id = alerts[0]["alert_id"]
        # the webhook answered 503 twice, then took it: one body, three attempts
        assert hook.attempts == 3 and [b["alert"]["alert_id"] for b in hook.bodies] == [alert_id]
        body = hook.bodies[0]
        assert body["event"] == "alert" and body["alert"]["kind"] == "cell_temperature"
        assert "cell temperature 55.0 degC" in body["alert"]["message"] and body["alert"]["action"]
        # Slack-compatible: text + blocks
        assert slack.attempts == 1 and len(slack.bodies) == 1
        assert slack.bodies[0]["text"].startswith("[BMS-Flux critical] cell_temperature A-3: A-3 at")
        assert [b["type"] for b in slack.bodies[0]["blocks"]] == ["header", "section", "section", "section", "context"]
        # one email to both recipients, parsed
        assert wait_for(lambda: len(mail.messages) == 1, 5) and len(mail.messages) == 1
        msg = mail.messages[0]
        assert msg["Subject"] == "[BMS-Flux critical] cell_temperature A-3"
        assert msg["From"] == "bms@example.org" and msg["X-BMS-Alert-Id"] == str(alert_id)
        assert mail.envelopes == [("bms@example.org", ["ops@example.org", "oncall@example.org"])]
        parts = list(msg.walk())
        text = next(p for p in parts if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
        assert "cell temperature 55.0 degC" in text and "Recommended action:" in text
        attached = next(p for p in parts if p.get_content_type() == "application/json")
        assert json.loads(attached.get_payload(decode=True))["alert_id"] == alert_id
        # the delivery record: every channel once, the webhook after two failures
        record = http.get(f"/v1/alerts/{alert_id}/deliveries").json()
        rows = {d["channel"]: d for d in record["items"]}
        assert sorted(rows) == ["email", "slack", "webhook"] and record["count"] == 3
        assert (rows["webhook"]["status"], rows["webhook"]["attempts"]) == ("delivered", 3)
        assert rows["webhook"]["last_error"].startswith("attempt 2: RuntimeError: webhook")
        assert "answered HTTP 503" in rows["webhook"]["last_error"]
        assert [(rows[c]["status"], rows[c]["attempts"], rows[c]["last_error"]) for c in ("slack", "email")] == [
            ("delivered", 1, None)
        ] * 2
        assert rows["slack"]["target"].endswith("/services/...")  # the URL's secret path is not shown
        assert rows["email"]["target"] == "ops@example.org,oncall@example.org"
        assert http.get("/v1/alerts/999/deliveries").status_code == 404
    # a restart on the same database delivers nothing again
    again = make_app()
    with live_server(again) as host, httpx.Client(base_url=f"http://{host}", timeout=10) as http:
        assert again.state.service.delivery.wait_idle(10)
        assert http.post("/v1/ingest", json={"readings": _hot(6)}).json()["alerts"][0]["new"] is False
        assert again.state.service.delivery.wait_idle(10)
    assert (hook.attempts, len(slack.bodies), len(mail.messages)) == (3, 1, 1)


def test_pending_delivery_is_retried_after_a_restart_and_given_up_after_the_retries(
    make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    with Receiver(fail_first=10**6) as down:
        monkeypatch.setenv("BMS_ALERT_WEBHOOK_URL", down.url)
        monkeypatch.setenv("BMS_ALERT_RETRIES", "3")
        monkeypatch.setenv("BMS_ALERT_BACKOFF_SECONDS", "30")  # the retry is not due before the stop
        with TestClient(make_app()) as client:
            client.post("/v1/ingest", json={"readings": _hot(2)})
            service = client.app.state.service
            assert service.delivery.wait_idle(10, include_retries=False)
            alert_id = client.get("/v1/alerts").json()["items"][0]["alert_id"]
            first = client.get(f"/v1/alerts/{alert_id}/deliveries").json()["items"]
            assert [(d["status"], d["attempts"]) for d in first] == [("pending", 1)] and first[0]["next_attempt"]
        monkeypatch.setenv("BMS_ALERT_BACKOFF_SECONDS", "0.01")
        app = make_app()
        service = app.state.service
        import sqlalchemy as sa
        from bms_live.store import tables as T

        with service.store.engine.begin() as conn:  # as if the 30 s had passed while it was down
            conn.execute(sa.update(T.alert_deliveries).values(next_attempt_us=0))
        with TestClient(app) as client:  # the stored pending row is picked up again at start
            assert service.delivery.wait_idle(10)
            final = client.get(f"/v1/alerts/{alert_id}/deliveries").json()["items"]
            assert [(d["status"], d["attempts"]) for d in final] == [("failed", 3)]
            assert final[0]["last_error"].startswith("attempt 3: RuntimeError: webhook")
    assert down.attempts == 3 and down.bodies == []


def test_below_min_severity_is_stored_and_streamed_but_not_delivered(client_for, monkeypatch) -> None:
    with Receiver() as hook:
        monkeypatch.setenv("BMS_ALERT_WEBHOOK_URL", hook.url)
        monkeypatch.setenv("BMS_ALERT_MIN_SEVERITY", "critical")
        with client_for() as client:
            rows = packet("A", 3, _stamp(0), CellTemperature=25.0)
            rows[0]["CellTemperature"] = 31.0  # 7 degC over ambient: a warning
            rows[1]["CellTemperature"] = 51.0  # hot: critical
            client.post("/v1/ingest", json={"readings": rows})
            assert client.app.state.service.delivery.wait_idle(10)
            severities = {a["cell_id"]: a["severity"] for a in client.get("/v1/alerts").json()["items"]}
            assert severities == {"A-1": "warning", "A-2": "critical"}
        assert [b["alert"]["cell_id"] for b in hook.bodies] == ["A-2"]
