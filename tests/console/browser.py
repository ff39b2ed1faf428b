"""A real headless browser for the dashboard tests: Playwright for Python driving the Debian Chromium
(``/usr/bin/chromium``, installed by ``.ci/run``; Playwright's own browser download is never used).

With ``CI=true`` a missing browser (or Playwright) fails the browser tests instead of skipping them:
CI must really run them. Screenshots go to ``$BMS_TEST_ARTIFACTS`` (default ``tests/artifacts``,
ignored by git).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Laptop and tablet (portrait) viewports the pages are checked at.
LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}
#: Screenshots written by this session (printed in the terminal summary).
SCREENSHOTS: list[Path] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_path() -> str:
    """The system Chromium, or skip (fail under CI=true) with what to install."""
    configured = os.environ.get("BMS_CHROMIUM")
    for candidate in ([configured] if configured else []) + list(CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    message = "no Chromium at /usr/bin/chromium: `apt-get install -y chromium` (.ci/run does it) or set BMS_CHROMIUM"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("BMS_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts") / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Any, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.append(path)
    return path


class RequestLog:
    """Every request a page makes (HTTP and WebSocket), to check that none leaves the service."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("websocket", lambda ws: self.urls.append(ws.url))

    def foreign(self, netloc: str) -> list[str]:
        """URLs whose scheme is not http/ws or whose host:port is not ``netloc``."""
        out = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "ws") or parts.netloc != netloc:
                out.append(url)
        return out


# -- stand-in models (test doubles; the product loads the real ones) ------------------------------
def load_dead_aware_failure(version: str, registry: Any) -> Any:
    """tests/live's stand-in failure model, plus the real model's collapsed-cell rule: a cell whose
    last voltage is below 1.5 V is dead (probability 1), with a remaining life of 0 days."""
    from live.fakes import load_fake_failure

    model = load_fake_failure(version, registry)
    predict = model.predict

    def with_dead(history: pd.DataFrame) -> pd.DataFrame:
        table = predict(history)
        ordered = history.sort_values("Timestamp")
        last = ordered.groupby(["DeviceID", "CellNumber"], sort=True)["CellVoltage"].last().reset_index()
        dead = (last["CellVoltage"].to_numpy() < 1.5) & np.ones(len(table), dtype=bool)
        table["FailureProbability"] = np.where(dead, 1.0, table["FailureProbability"])
        table["RiskBand"] = np.where(dead, "dead", table["RiskBand"])
        table["RemainingLifeDays"] = np.where(dead, 0.0, np.nan)
        return table

    model.predict = with_dead
    return model


def console_loaders() -> dict[str, Any]:
    from live.fakes import FAKE_LOADERS

    return {**FAKE_LOADERS, "failure": load_dead_aware_failure}
