"""The dashboard without a browser: routes, headers, shipped assets, and the fleet-cells logic."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from bms_schema.registry import ModelRegistry
from fastapi.testclient import TestClient
from live.fakes import FAKE_LOADERS, packet


@pytest.fixture
def registry(workspace) -> ModelRegistry:
    return ModelRegistry()


@pytest.fixture
def make_client(workspace) -> Callable[..., Any]:
    from bms_live.app import create_app
    from bms_live.settings import Settings

    @contextmanager
    def factory(**overrides: Any) -> Iterator[TestClient]:
        app = create_app(Settings.from_env(poll_seconds=0, **overrides), loaders=FAKE_LOADERS)
        with TestClient(app) as c:
            yield c

    return factory


@pytest.fixture
def client(make_client) -> Iterator[TestClient]:
    with make_client(api_key="k") as c:
        yield c


def test_pages_are_served_with_a_same_origin_policy(client) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    for path in ("/dashboard", "/dashboard/cell?device_id=A&cell_number=1", "/dashboard/alerts", "/dashboard/models"):
        page = client.get(path)  # a page is a shell without data: no API key needed
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert '<a class="skip-link" href="#main">' in page.text and '<main id="main"' in page.text
        assert ('aria-current="page"' in page.text) == ("/cell" not in path)  # the nav marks the page
        for src in re.findall(r'(?:src|href)="([^"#]+)"', page.text):
            assert src.startswith("/"), f"{path} loads {src} from elsewhere"
            assert client.get(src).status_code == 200, src
    plotly = client.get("/dashboard/vendor/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert client.get("/v1/fleet/cells").status_code == 401  # the data needs the key
    assert client.get("/v1/models/versions", headers={"X-API-Key": "k"}).status_code == 200


def test_shipped_assets_name_no_other_host() -> None:
    import bms_live.dashboard as dashboard

    folder = Path(dashboard.__file__).parent
    files = [p for p in folder.rglob("*") if p.suffix in (".js", ".css", ".html", ".svg")]
    assert {p.name for p in files} >= {"common.js", "fleet.js", "cell.js", "alerts.js", "models.js", "dashboard.css"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        urls = [u for u in re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text) if "www.w3.org" not in u]
        assert urls == [], f"{path.name} names other hosts: {urls}"
        assert "@import" not in text and "fonts.googleapis" not in text


def test_peer_deviation_is_the_string_median_and_unknown_without_peers() -> None:
    from bms_live.console import peer_deviation

    frame = pd.DataFrame({"device_id": ["A", "A", "A", "B", "C", "C"], "v": [2.0, 2.1, 2.25, 2.2, 2.3, None]})
    out = peer_deviation(frame, "v")
    np.testing.assert_allclose(out[:3], [-0.1, 0.0, 0.15])
    assert np.isnan(out[3:]).all()  # a one-cell string, and a string with one measured cell


def test_fleet_cells_orders_dead_at_risk_alerting(make_client, registry) -> None:
    from live.fakes import ANOMALY_PARAMS, anomaly_reference, register

    register(registry, "anomaly_hybrid", {**ANOMALY_PARAMS, "spread": 0.1}, anomaly_reference())
    register(registry, "failure_classifier", {"horizon_days": 7, "min_history_hours": 0})
    with make_client() as client:
        rows = []
        for k in range(4):
            when = (pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(hours=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
            rows += packet("A", 4, when)
            rows[-1]["CellVoltage"] = 2.15  # low (the stand-in failure model: risk 100 %, band high)
            rows += packet("B", 3, when)
            rows[-2]["CellVoltage"] = 1.2  # B-2: flagged by the anomaly model -> an open alert
            if k == 3:
                rows[-1]["CellTemperature"] = None  # B-3's last temperature is missing: the one before counts
        assert client.post("/v1/ingest", json={"readings": rows}).status_code == 200
        assert client.post("/v1/risk/refresh", params={"device_id": "A"}).status_code == 200
        body = client.get("/v1/fleet/cells").json()
    order = [(c["cell_id"], c["status"]) for c in body["cells"]]
    assert order[:2] == [("A-4", "at_risk"), ("B-2", "alerting")]
    assert {s for _, s in order[2:5]} == {"ok"} and {s for _, s in order[5:]} == {"unscored"}
    a4 = body["cells"][0]
    assert a4["failure_probability"] == pytest.approx(1.0) and a4["risk_band"] == "high"
    # A's latest voltages 2.231, 2.232, 2.233, 2.15: median 2.2315
    assert a4["deviation"]["CellVoltage"] == pytest.approx(2.15 - 2.2315)
    b2 = body["cells"][1]
    assert b2["open_alerts"] == 1 and b2["anomalies_24h"] == 4
    b3 = next(c for c in body["cells"] if c["cell_id"] == "B-3")
    assert b3["last"]["CellTemperature"] == pytest.approx(25.3)  # from the reading before the last
    assert b3["deviation"]["CellTemperature"] == pytest.approx(0.1)  # 25.3 - median(25.1, 25.2, 25.3)
    devices = {d["device_id"]: d for d in body["devices"]}
    assert devices["A"]["status_counts"]["at_risk"] == 1 and devices["B"]["open_alerts"] == 1
    assert devices["A"]["has_specific_gravity"] and body["metrics"]["CellSpecificGravity"]["available"]
