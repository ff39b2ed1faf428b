"""``bms setup/status/cleanup/replay`` over a SQLite workspace (the training step itself is covered
by tests/live/test_real_models.py through the same package functions)."""

from __future__ import annotations

import json

import pandas as pd
from bms_schema.registry import ModelRegistry
from fastapi.testclient import TestClient
from live.fakes import ANOMALY_PARAMS, FAKE_LOADERS, anomaly_reference, register


def _run(capsys, *argv: str) -> dict:
    from bms_live.cli import main

    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_setup_replay_status_cleanup(workspace, capsys) -> None:
    from bms_live.app import create_app
    from bms_live.replay import replay, simulated_fleet
    from bms_live.settings import Settings

    setup = _run(capsys, "setup", "--no-models", "--generate-data", "--workspace", str(workspace))
    assert setup["database"]["revision"] == "0002" and setup["database"]["url"].endswith("bms.db")
    data = pd.read_csv(setup["data"]["path"])
    assert len(data) == setup["data"]["rows"] and {"PacketDateTime", "CellVoltage", "DeviceID"} <= set(data.columns)

    register(ModelRegistry(), "anomaly_hybrid", ANOMALY_PARAMS, anomaly_reference())
    raw = simulated_fleet(devices=2, cells=6, days=0.25, interval_minutes=15, seed=1)
    with TestClient(create_app(Settings.from_env(poll_seconds=0), loaders=FAKE_LOADERS)) as client:

        def post(batch):
            response = client.post("/v1/ingest", json={"readings": batch})
            assert response.status_code == 200, response.text
            return response.json()

        stats = replay(post, raw)
        again = replay(post, raw, limit=3)
        batched = replay(post, raw, batch=4, limit=10)
    unique = raw.drop_duplicates(["DeviceID", "CellNumber", "PacketDateTime"])
    assert stats.errors == 0 and stats.packets == raw.groupby(["DeviceID", "PacketDateTime"]).ngroups
    assert stats.stored == len(unique) and stats.readings == len(raw)
    assert again.stored == 0 and again.packets == 3
    assert batched.packets == 10 and len(batched.latencies) == 3 and batched.stored == 0
    assert stats.summary()["latency_ms"]["p99"] >= stats.summary()["latency_ms"]["p50"]

    status = _run(capsys, "status", "--workspace", str(workspace), "--url", "http://127.0.0.1:9")
    assert status["database"]["rows"]["readings"] == len(unique)
    newest = pd.to_datetime(raw["PacketDateTime"], utc=True).max()
    assert status["database"]["last_reading"] == newest.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["models"]["anomaly_hybrid"] == "v0001" and status["service"]["status"] == "not running"

    kept = _run(capsys, "cleanup", "--days", "0.1", "--from-latest", "--workspace", str(workspace))
    assert kept["deleted"]["readings"] > 0
    left = _run(capsys, "status", "--workspace", str(workspace), "--url", "http://127.0.0.1:9")
    assert left["database"]["rows"]["readings"] == len(unique) - kept["deleted"]["readings"]
    assert 0 < left["database"]["rows"]["readings"] < len(unique)


def test_analyze_without_data_is_a_clear_error(workspace, capsys) -> None:
    from bms_live.cli import main

    assert main(["analyze", "--workspace", str(workspace), "--device-id", "X", "--cell-number", "1"]) == 2
    err = capsys.readouterr().err
    assert "no stored readings for device 'X' cell 1" in err and "bms start --demo" in err
