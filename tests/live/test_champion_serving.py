"""Gated promotion seen from the live service, with real anomaly models and real loaders.

A champion trained on a labelled fleet; a deliberately worse candidate trained on tiny data
(a few hours of one string). The candidate is scored against the champion on the same held-out
readings, stays challenger, and the live service keeps serving the champion; ``promote=true``
moves it and the service follows within its poll interval, with zero failed requests under a
bounded load loop. A pinned version (``BMS_PIN_ANOMALY_HYBRID``) wins over the champion.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from anomaly.anomaly_synthetic import make_readings
from bms_schema.registry import ModelRegistry
from live.fakes import packet

POLL = 0.2


def _train(frame: pd.DataFrame, promote: bool = False, holdout_fraction: float = 0.3) -> Any:
    from bms_anomaly.detect import train_detector

    return train_detector(frame, contamination=0.03, seed=0, promote=promote, holdout_fraction=holdout_fraction)


@pytest.fixture
def app_client(workspace: Path):
    from bms_live.app import create_app
    from bms_live.settings import Settings
    from fastapi.testclient import TestClient

    def factory() -> TestClient:
        return TestClient(create_app(Settings.from_env(poll_seconds=POLL)))

    return factory


def test_worse_candidate_is_not_served_promote_is_followed_under_load(workspace: Path, app_client, monkeypatch) -> None:
    registry = ModelRegistry()
    champion = _train(make_readings(devices=2, cells=6, steps=300, seed=1))
    assert (champion.model_version, champion.decision["alias"]) == ("v0001", "champion")

    # tiny data: one string's first 7.5 hours (8 cells x 30 readings, never a discharge) trains it;
    # the next 30 hours (960 readings, with daily discharges) are held out and score both models
    tiny = make_readings(devices=1, cells=8, steps=150, seed=2, anomaly_rate=0.05)
    worse = _train(tiny, holdout_fraction=0.8)
    record = registry.decisions("anomaly_hybrid")[-1]
    assert worse.model_version == "v0002" and record["decision"] == "challenger", record
    ev = record["evaluation"]
    assert ev["metric"] == "f1" and ev["champion_version"] == "v0001"
    assert ev["candidate"] < ev["champion"] - 0.1, ev  # F1 on the same 960 held-out readings
    assert ev["candidate_metrics"]["rows"] == ev["champion_metrics"]["rows"] == worse.info["holdout_rows"]
    assert "does not beat champion v0001 f1" in record["reason"]

    with app_client() as client:
        served = client.get("/models").json()["served"]["anomaly"]
        assert served["version"] == "v0001" and served["serving"] == "champion"
        time.sleep(3 * POLL)  # the watcher has looked: the challenger is not picked up
        assert client.get("/models").json()["served"]["anomaly"]["version"] == "v0001"

        stop = threading.Event()
        failures: list[str] = []
        answered: list[str] = []

        def load(device: str) -> None:
            k = 0
            while not stop.is_set() and k < 2000:  # bounded
                k += 1
                body = {"readings": packet(device, 3, f"2026-01-05T00:{k % 60:02d}:00Z", voltage=2.25)}
                response = client.post("/v1/anomaly", json=body)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                answered.append(response.json()["model"]["version"])

        threads = [threading.Thread(target=load, args=(f"L{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        promoted = _train(tiny, promote=True, holdout_fraction=0.8)  # the user insists
        moved_at = time.time()
        assert promoted.decision["alias"] == "champion" and registry.resolve("anomaly_hybrid") == "v0003"
        followed = None
        while time.time() - moved_at < 10:
            if client.get("/models").json()["served"]["anomaly"]["version"] == "v0003":
                followed = time.time() - moved_at
                break
            time.sleep(0.02)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert followed is not None and followed < POLL + 5.0  # poll interval + one model load
        assert failures == []
        assert answered[0] == "v0001" and answered[-1] == "v0003" and set(answered) == {"v0001", "v0003"}
        assert len(answered) > 20

    # a pin wins over the champion (and a pinned version keeps being served when the champion moves)
    monkeypatch.setenv("BMS_PIN_ANOMALY_HYBRID", "v0001")
    with app_client() as client:
        served = client.get("/models").json()["served"]["anomaly"]
        assert served["version"] == "v0001" and served["serving"] == "pinned v0001"
        answer = client.post("/v1/anomaly", json={"readings": packet("P1", 3, "2026-01-05T01:00:00Z")}).json()
        assert answer["model"]["version"] == "v0001"


def test_feedback_is_kept_per_version_and_says_when_the_served_one_gets_worse(make_client, registry) -> None:
    from live.fakes import ANOMALY_PARAMS, anomaly_reference, register

    register(registry, "anomaly_hybrid", {**ANOMALY_PARAMS, "f1": 0.8}, anomaly_reference())  # held-out F1 0.8
    with make_client() as client:
        # 40 readings of one string: 20 flagged (2.40 V), 20 normal; the ground truth says the model is poor
        readings = [
            dict(r, CellVoltage=2.40 if i < 20 else 2.23) for i, r in enumerate(packet("W", 40, "2026-01-02T00:00:00Z"))
        ]
        results = client.post("/v1/anomaly", json={"readings": readings}).json()["results"]
        assert sum(r["AnomalyFlag"] for r in results) == 20
        actual = [i < 2 or i >= 20 for i in range(40)]  # tp 2, fp 18, fn 20, tn 0
        body = {"feedback": [{"prediction_id": r["prediction_id"], "actual": a} for r, a in zip(results, actual)]}
        assert client.post("/v1/feedback", json=body).status_code == 200
        report = client.get("/v1/feedback").json()
        served = report["served"]["anomaly"]
        assert served["version"] == "v0001" and served["holdout_f1"] == 0.8
        live = served["live"]
        assert (live["tp"], live["fp"], live["fn"], live["tn"]) == (2, 18, 20, 0)
        assert live["f1"] == pytest.approx(2 * 0.1 * (2 / 22) / (0.1 + 2 / 22))
        assert served["getting_worse"] is True and "vs held-out F1 0.800" in served["reason"]

        # a new champion starts with its own (empty) record; the old version's figures stay apart
        register(registry, "anomaly_hybrid", {**ANOMALY_PARAMS, "f1": 0.8, "tag": "second"}, anomaly_reference())
        assert client.post("/v1/models/reload").json()["results"][0]["version"] == "v0002"
        again = client.post("/v1/anomaly", json={"readings": readings[:4]}).json()["results"]
        client.post(
            "/v1/feedback", json={"feedback": [{"prediction_id": r["prediction_id"], "actual": True} for r in again]}
        )
        report = client.get("/v1/feedback").json()
        assert report["served"]["anomaly"]["version"] == "v0002"
        assert report["served"]["anomaly"]["getting_worse"] is None  # 4 items: too few to say
        by_version = report["metrics"]["anomaly"]["by_version"]
        assert by_version["v0001"]["n"] == 40 and by_version["v0002"]["n"] == 4 and by_version["v0002"]["tp"] == 4
