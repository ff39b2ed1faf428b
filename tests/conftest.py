"""Shared fixtures: an isolated workspace per test, the real packet sample, MCP stdio clients."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE_CSV = DATA / "bms_packet_sample.csv"

os.environ.setdefault("BMS_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh BMS_WORKSPACE for one test (the sample data folder is allowed too)."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("BMS_WORKSPACE", str(ws))
    monkeypatch.setenv("BMS_ALLOWED_DIRS", str(DATA))
    from bms_schema.paths import workspace as make

    return make()


@pytest.fixture
def sample_csv() -> Path:
    return SAMPLE_CSV
