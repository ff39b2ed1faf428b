"""Fixtures for the console tests (stream, alerts, delivery): an app over the stand-in models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from bms_schema.registry import ModelRegistry
from live.fakes import ANOMALY_PARAMS, FAKE_LOADERS, anomaly_reference, register


@pytest.fixture
def make_app(workspace, tmp_path) -> Callable[..., Any]:
    """``make_app(**settings)`` -> a FastAPI app over stand-in models and a SQLite store in ``tmp_path``."""
    from bms_live.app import create_app
    from bms_live.settings import Settings

    registry = ModelRegistry()
    register(registry, "anomaly_hybrid", ANOMALY_PARAMS, anomaly_reference())
    register(registry, "failure_classifier", {"horizon_days": 7, "min_history_hours": 0})
    register(registry, "forecaster", {})

    def factory(**overrides: Any) -> Any:
        overrides.setdefault("poll_seconds", 0)
        overrides.setdefault("database_url", f"sqlite:///{tmp_path / 'bms.db'}")
        return create_app(Settings.from_env(**overrides), loaders=FAKE_LOADERS)

    return factory


@pytest.fixture
def client_for(make_app) -> Callable[..., Any]:
    from fastapi.testclient import TestClient

    @contextmanager
    def factory(**overrides: Any) -> Iterator[TestClient]:
        with TestClient(make_app(**overrides)) as client:
            yield client

    return factory
