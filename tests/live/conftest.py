"""Fixtures for the live-inference tests: a registry in a fresh workspace and app clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from bms_schema.registry import ModelRegistry
from fastapi.testclient import TestClient
from live.fakes import FAKE_LOADERS


@pytest.fixture
def registry(workspace) -> ModelRegistry:
    return ModelRegistry()


@pytest.fixture
def make_client(workspace) -> Callable[..., Any]:
    """``with make_client(api_key=..., poll_seconds=...) as client:`` an app over stand-in models."""
    from bms_live.app import create_app
    from bms_live.settings import Settings

    @contextmanager
    def factory(
        loaders: dict[str, Any] | None = None, raise_server_exceptions: bool = True, **overrides: Any
    ) -> Iterator[TestClient]:
        overrides.setdefault("poll_seconds", 0)
        settings = Settings.from_env(**overrides)
        app = create_app(settings, loaders=FAKE_LOADERS if loaders is None else loaders)
        with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
            yield client

    return factory
