"""The alert rules on numbers: which cells fire, after how many readings, how severe; dedupe and
cooldown through the store; the rules file and PUT /v1/alerts/rules; risk, drift, degradation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from live.fakes import packet

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _stamp(k: int) -> str:
    return (T0 + pd.Timedelta(minutes=15 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _frame(rows: list[dict[str, Any]], first_key: int = 1) -> pd.DataFrame:
    """Canonical rows as the store hands them to the rules (``cell_key``, ``ts_us``)."""
    from bms_schema import normalize

    frame, _ = normalize(pd.DataFrame(rows))
    frame = frame.reset_index(drop=True)
    keys = {d: i for i, d in enumerate(sorted(frame["DeviceID"].astype(str).unique()))}
    cell_key = frame["CellNumber"].to_numpy(dtype=np.int64) + 1000 * np.asarray(
        [keys[str(d)] for d in frame["DeviceID"]], dtype=np.int64
    )
    ts = pd.DatetimeIndex(frame["Timestamp"]).as_unit("us").asi8
    return frame.assign(cell_key=cell_key + first_key - 1, ts_us=ts)


def _packet(k: int, cells: int = 8, device: str = "A", **overrides: Any) -> list[dict[str, Any]]:
    rows = packet(device, cells, _stamp(k), voltage=2.225, CellTemperature=25.0, **overrides)
    return rows


def _engine(**overrides: Any) -> Any:
    from bms_live.alerts.config import AlertRules, apply_overrides
    from bms_live.alerts.engine import AlertEngine

    return AlertEngine(apply_overrides(AlertRules(), overrides))


def _by_cell(alerts: list[dict[str, Any]]) -> dict[tuple[int | None, str], dict[str, Any]]:
    return {(a["cell_key"], a["kind"]): a for a in alerts}


def test_hot_cell_and_temperature_over_ambient() -> None:
    rows = _packet(0)
    rows[2]["CellTemperature"] = 47.0  # cell 3: hot and 23 degC over ambient (24)
    rows[4]["CellTemperature"] = 30.0  # cell 5: 6 degC over ambient
    rows[6]["CellTemperature"] = 28.9  # cell 7: 4.9 over ambient, below the 5 degC limit
    alerts = _engine().evaluate(_frame(rows), None)
    assert sorted((a["cell_key"], a["kind"], a["severity"]) for a in alerts) == [
        (3, "cell_temperature", "critical"),
        (5, "cell_temperature", "warning"),
    ]
    hot = _by_cell(alerts)[(3, "cell_temperature")]
    assert "cell temperature 47.0 degC" in hot["message"] and "23.0 degC over ambient 24.0" in hot["message"]
    assert "thermal runaway" in hot["action"]
    assert json.loads(hot["details"]) == {"temperature": 47.0, "ambient": 24.0, "hits": 1}


def test_float_band_by_chemistry_needs_two_readings_and_compensates_for_temperature() -> None:
    engine = _engine()

    def flooded(k: int) -> list[dict[str, Any]]:
        rows = _packet(k)
        rows[1]["CellVoltage"] = 2.10  # below 2.17 - 0.03 and below IEEE 450's 2.13: critical
        rows[3]["CellVoltage"] = 2.30  # above 2.25 + 0.03: warning
        rows[5]["CellVoltage"] = 2.27  # inside the tolerance
        return rows

    assert engine.evaluate(_frame(flooded(0)), None) == []  # one reading out of band is not enough
    alerts = engine.evaluate(_frame(flooded(1)), None)
    assert sorted((a["cell_key"], a["severity"]) for a in alerts) == [(2, "critical"), (4, "warning")]
    low = _by_cell(alerts)[(2, "cell_voltage")]
    assert "2.100 V/cell below the flooded (IEEE 450) float band 2.173-2.253" in low["message"]  # +3 mV at 24 degC
    # VRLA (no specific gravity): band 2.25-2.30; a warm battery (35 degC) lowers it by 30 mV
    vrla = _engine()
    for k in range(2):
        rows = packet("V", 6, _stamp(k), voltage=2.27, CellSpecificGravity=None, AmbientTemperature=35.0)
        rows[0]["CellVoltage"] = 2.18  # below 2.22 - 0.03
        rows[1]["CellVoltage"] = 2.21  # inside once compensated (2.19 .. 2.30), below 2.22 without
        got = vrla.evaluate(_frame(rows), None)
    assert [(a["cell_key"], a["kind"]) for a in got] == [(1, "cell_voltage")]
    assert "VRLA (IEEE 1188) float band 2.220-2.270" in got[0]["message"]
    # a discharging string is not floating: no float-band alert however low its cells are
    rows = _packet(5, InstantaneousCurrent=-20.0)
    rows[1]["CellVoltage"] = 2.0
    assert _engine(cell_voltage={"min_consecutive": 1}).evaluate(_frame(rows), None) == []


def test_sg_below_the_string_mean() -> None:
    engine = _engine()
    for k in range(2):
        rows = _packet(k, CellSpecificGravity=1.215)
        rows[5]["CellSpecificGravity"] = 1.180  # 0.028 below the mean 1.2081
        rows[6]["CellSpecificGravity"] = 1.195  # 0.013 below the mean: fine
        alerts = engine.evaluate(_frame(rows), None)
    assert [(a["cell_key"], a["kind"], a["severity"]) for a in alerts] == [(6, "sg_spread", "warning")]
    assert "1.180 is 0.028 below the string mean 1.208" in alerts[0]["message"]


def test_sensor_dropout_counts_a_run_across_ingests_and_a_reading_resets_it() -> None:
    engine = _engine()
    fired = []
    for k in range(9):
        rows = _packet(k)
        if k != 6:
            rows[6]["CellVoltage"] = 65.535  # 0xFFFF sentinel: no reading
        if k < 4:
            rows[1]["CellTemperature"] = 65535.0
        fired.append([(a["cell_key"], a["kind"]) for a in engine.evaluate(_frame(rows), None)])
    # cell 7 misses readings 0-5 (fires at the 6th), reads at 6 (reset), misses 7-8; cell 2 misses 0-3 only
    assert fired == [[], [], [], [], [], [(7, "sensor_dropout")], [], [], []]
    more = _engine()
    several = [r for k in range(6) for r in _packet(k)]  # six packets in one ingest: the run is within it
    for r in several:
        if r["CellNumber"] == 4:
            r["CellVoltage"] = 65.535
    alerts = more.evaluate(_frame(several), None)
    assert [(a["cell_key"], a["kind"], a["count"]) for a in alerts] == [(4, "sensor_dropout", 1)]
    assert "voltage missing for 6 readings in a row (0xFFFF sentinel" in alerts[0]["message"]


def test_vrla_float_current_rise_over_its_baseline() -> None:
    engine = _engine()
    for k in range(8):  # the baseline: 0.4 A on float
        rows = packet("V", 4, _stamp(k), voltage=2.27, CellSpecificGravity=None, InstantaneousCurrent=0.4)
        assert engine.evaluate(_frame(rows), None) == []
    ok = packet("V", 4, _stamp(8), voltage=2.27, CellSpecificGravity=None, InstantaneousCurrent=0.85)
    assert engine.evaluate(_frame(ok), None) == []  # below max(2 x 0.4, 0.4 + 0.5) = 0.9 A
    high = packet("V", 4, _stamp(9), voltage=2.27, CellSpecificGravity=None, InstantaneousCurrent=1.3)
    alerts = engine.evaluate(_frame(high), None)
    assert [(a["cell_key"], a["device_id"], a["kind"], a["severity"]) for a in alerts] == [
        (None, "V", "float_current", "warning")
    ]
    assert "float current 1.30 A" in alerts[0]["message"] and "baseline 0.40 A" in alerts[0]["message"]
    flooded = _engine()  # the rule is for VRLA: a flooded string's float current is not judged
    for k in range(10):
        amps = 0.4 if k < 9 else 5.0
        assert flooded.evaluate(_frame(packet("F", 4, _stamp(k), InstantaneousCurrent=amps)), None) == []


def _scored(frame: pd.DataFrame, flagged: set[int]) -> dict[str, Any]:
    return {
        "model": {"name": "anomaly_hybrid", "version": "v0001"},
        "results": [
            {
                "prediction_id": f"p-{i}",
                "CellID": cell,
                "Timestamp": _stamp(0),
                "AnomalyScore": 7.5 if n in flagged else 0.1,
                "AnomalyFlag": 1 if n in flagged else 0,
                "AnomalyKind": "statistical" if n in flagged else "normal",
                "reason": "CellTemperature far above peers" if n in flagged else None,
            }
            for i, (cell, n) in enumerate(zip(frame["CellID"], frame["CellNumber"]))
        ],
    }


def test_an_anomaly_a_physical_rule_explains_is_not_a_second_alert() -> None:
    rows = _packet(0)
    rows[2]["CellTemperature"] = 47.0
    frame = _frame(rows)
    alerts = _engine().evaluate(frame, _scored(frame, {1, 3}))
    assert sorted((a["cell_key"], a["kind"]) for a in alerts) == [(1, "anomaly:statistical"), (3, "cell_temperature")]
    both = _engine(anomaly={"suppress_when_explained": False}).evaluate(frame, _scored(frame, {1, 3}))
    assert len(both) == 3
    # an open physical alert of the cell (from an earlier ingest) explains it too
    later = _frame(_packet(1))
    alerts = _engine().evaluate(later, _scored(later, {3}), lambda keys: {3: {"cell_temperature"}})
    assert alerts == []


def test_dedupe_and_cooldown_through_ingest(client_for) -> None:
    with client_for() as client:
        for k in range(3):  # the hot cell in three packets: one alert, three occurrences
            rows = packet("A", 4, _stamp(k), CellTemperature=25.0)
            rows[2]["CellTemperature"] = 55.0
            answer = client.post("/v1/ingest", json={"readings": rows}).json()
            assert [(a["new"], a["kind"]) for a in answer["alerts"]] == [(k == 0, "cell_temperature")]
        alerts = client.get("/v1/alerts").json()["items"]
        assert [(a["cell_id"], a["kind"], a["severity"], a["occurrences"]) for a in alerts] == [
            ("A-3", "cell_temperature", "critical", 3)
        ]
        assert alerts[0]["first_seen"] == _stamp(0) and alerts[0]["last_seen"] == _stamp(2)
        assert alerts[0]["action"].startswith("check the cell") and alerts[0]["details"]["temperature"] == 55.0
        first = alerts[0]["alert_id"]
        client.post(f"/v1/alerts/{first}/acknowledge", json={"by": "op"})
        rows = packet("A", 4, _stamp(3), CellTemperature=25.0)
        rows[2]["CellTemperature"] = 55.0
        answer = client.post("/v1/ingest", json={"readings": rows}).json()
        assert [(a["alert_id"], a["new"]) for a in answer["alerts"]] == [(first, False)]  # acknowledged: still the one
        client.post(f"/v1/alerts/{first}/resolve")
        rows = packet("A", 4, _stamp(4), CellTemperature=25.0)
        rows[2]["CellTemperature"] = 55.0
        answer = client.post("/v1/ingest", json={"readings": rows}).json()
        assert answer["alerts"] == []  # resolved a moment ago: the 15-minute cooldown holds it back
        assert client.get("/v1/alerts").json()["count"] == 1
        # no cooldown: the next hot reading opens a new alert
        put = client.put("/v1/alerts/rules", json={"cooldown_seconds": 0})
        assert put.status_code == 200 and put.json()["rules"]["cooldown_seconds"] == 0
        rows = packet("A", 4, _stamp(5), CellTemperature=25.0)
        rows[2]["CellTemperature"] = 55.0
        answer = client.post("/v1/ingest", json={"readings": rows}).json()
        assert [a["new"] for a in answer["alerts"]] == [True] and answer["alerts"][0]["alert_id"] != first


def test_rules_file_and_put_rules(client_for, workspace) -> None:
    (workspace / "alert_rules.toml").write_text("[cell_temperature]\nhot_c = 30.0\nover_ambient_c = 50.0\n")
    with client_for() as client:
        rules = client.get("/v1/alerts/rules").json()
        assert rules["file"].endswith("alert_rules.toml") and rules["rules"]["cell_temperature"]["hot_c"] == 30.0
        assert rules["rules"]["cell_voltage"]["critical_low_v"] == 2.13  # bms_failure.trends.FLOAT_VOLTAGE_MIN
        rows = packet("A", 4, _stamp(0), CellTemperature=25.0)
        rows[0]["CellTemperature"] = 31.0
        assert [a["kind"] for a in client.post("/v1/ingest", json={"readings": rows}).json()["alerts"]] == [
            "cell_temperature"
        ]
        bad = client.put("/v1/alerts/rules", json={"cell_temperature": {"hot": 30}})
        assert bad.status_code == 422 and "cell_temperature.hot: unknown setting" in bad.json()["detail"]
        toml = client.put("/v1/alerts/rules", json={"cooldown_seconds": 5})
        assert toml.status_code == 422 and "is TOML; edit it" in toml.json()["detail"]


def test_put_rules_writes_the_json_file(client_for, workspace) -> None:
    with client_for() as client:
        answer = client.put("/v1/alerts/rules", json={"sensor_dropout": {"min_consecutive": 2}})
        assert answer.status_code == 200, answer.text
        assert json.loads((workspace / "alert_rules.json").read_text()) == {"sensor_dropout": {"min_consecutive": 2}}
        wrong = client.put("/v1/alerts/rules", json={"sensor_dropout": {"min_consecutive": "two"}})
        assert wrong.status_code == 422 and "must be a whole number" in wrong.json()["detail"]
        for k in range(2):
            rows = packet("A", 2, _stamp(k))
            rows[0]["CellVoltage"] = 65.535
            last = client.post("/v1/ingest", json={"readings": rows}).json()
        assert [a["kind"] for a in last["alerts"]] == ["sensor_dropout"]
    with client_for() as client:  # a restart reads the saved file
        assert client.get("/v1/alerts/rules").json()["rules"]["sensor_dropout"]["min_consecutive"] == 2


def test_failure_risk_and_remaining_life_from_stored_risk(client_for) -> None:
    with client_for() as client:
        for k in range(4):
            rows = packet("A", 3, _stamp(k), CellTemperature=25.0, voltage=2.225)
            rows[1]["CellVoltage"] = 2.15  # the stand-in failure model: risk rises as the mean voltage falls
            client.post("/v1/ingest", json={"readings": rows})
        risk = client.post("/v1/risk/refresh", params={"device_id": "A"})
        assert risk.status_code == 200, risk.text
        kinds = [(a["kind"], a["severity"]) for a in risk.json()["alerts"]]
        assert kinds == [("failure_risk", "critical")]  # cell 2: probability (2.25 - 2.15) x 10 = 1.0
        alerts = [a for a in client.get("/v1/alerts").json()["items"] if a["kind"] == "failure_risk"]
        assert [a["cell_id"] for a in alerts] == ["A-2"] and "failure probability 1.00" in alerts[0]["message"]
        again = client.post("/v1/risk/refresh", params={"device_id": "A"}).json()
        assert [a["new"] for a in again["alerts"]] == [False]  # the open alert counts it again
    engine = _engine()
    rows = engine.evaluate_risk(
        [
            {
                "CellID": "B-1",
                "DeviceID": "B",
                "FailureProbability": 0.3,
                "RiskBand": "medium",
                "alarm": False,
                "extra": {"RemainingLifeDays": 5.0},
            },
            {"CellID": "B-2", "DeviceID": "B", "FailureProbability": 0.1, "alarm": False, "extra": {}},
        ],
        {"B-1": 11, "B-2": 12},
        0,
    )
    assert [(r["cell_key"], r["kind"], r["severity"]) for r in rows] == [(11, "remaining_life", "critical")]


def test_drift_and_model_degradation_rules() -> None:
    drift = {
        "models": {
            "anomaly": {"flagged": ["CellVoltage", "TempAboveAmbient"], "version": "v0002", "window": 800},
            "failure": {"flagged": [], "version": "v0001"},
        }
    }
    feedback = {
        "served": {
            "anomaly": {"version": "v0002", "getting_worse": True, "reason": "live F1 0.41 vs held-out F1 0.80"},
            "failure": {"version": "v0001", "getting_worse": None},
        }
    }
    rows = _engine().evaluate_models(drift, feedback, 123)
    assert [(r["device_id"], r["kind"], r["severity"]) for r in rows] == [
        ("fleet", "drift:anomaly", "info"),
        ("fleet", "model_degradation:anomaly", "warning"),
    ]
    assert "2 feature(s): CellVoltage, TempAboveAmbient" in rows[0]["message"]
    assert (
        _engine(drift={"min_flagged_features": 3}, model_degradation={"enabled": False}).evaluate_models(
            drift, feedback, 123
        )
        == []
    )


def test_model_alerts_dedupe_in_the_store(client_for) -> None:
    with client_for() as client:
        service = client.app.state.service
        row = _engine().evaluate_models({"models": {"anomaly": {"flagged": ["CellVoltage"]}}}, {}, 1)
        first = service.store.raise_alerts(row)
        second = service.store.raise_alerts(row)
        assert [a["new"] for a in first + second] == [True, False]
        items = client.get("/v1/alerts").json()["items"]
        assert [(a["device_id"], a["cell_id"], a["kind"], a["occurrences"]) for a in items] == [
            ("fleet", None, "drift:anomaly", 2)
        ]
        assert client.post("/v1/alerts/check").json() == {"alerts": []}  # nothing drifted in this service


@pytest.mark.parametrize(
    "bad", [{"nope": 1}, {"cell_voltage": {"tolerance_v": "x"}}, {"channels": {"min_severity": "loud"}}]
)
def test_bad_rules_are_refused_with_the_setting_named(bad: dict[str, Any]) -> None:
    from bms_live.alerts.config import AlertRules, apply_overrides
    from bms_schema.errors import InputError

    with pytest.raises(InputError) as err:
        apply_overrides(AlertRules(), bad)
    assert next(iter(bad)) in str(err.value)
