"""Fixtures for the agent-driver tests: stub MCP servers and the path of the entry points."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STUB = HERE / "stub_server.py"
if str(HERE) not in sys.path:  # the stand-ins (fake_ollama, stub_server) are imported by the tests
    sys.path.insert(0, str(HERE))


@pytest.fixture
def stub_spec():
    """``stub_spec(name, **env)``: a ServerSpec starting the stub server with extra environment."""
    from bms_agent.servers import ServerSpec

    def make(name: str = "stub", **env: str) -> ServerSpec:
        return ServerSpec(name=name, command=sys.executable, args=(str(STUB),), cwd=HERE, env=dict(env))

    return make
