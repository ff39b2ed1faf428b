"""Where the five BMS-Flux servers live and how to start each one as a subprocess.

Every server is addressed by a short namespace (``datagen``, ``preprocess``, ``anomaly``,
``failure``, ``forecast``) used for stage definitions, agent tool names
(``anomaly__detect_anomalies``) and MCP client configuration.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: The repository root (agent-driver/src/bms_agent/servers.py -> three levels up).
ROOT = Path(__file__).resolve().parents[3]

SERVER_FOLDERS: dict[str, str] = {
    "datagen": "data-generator-mcp",
    "preprocess": "load-preprocessdata-mcp",
    "anomaly": "feature-one-anamoly-detection-mcp",
    "failure": "feature-three-failure-prediction-mcp",
    "forecast": "feature-two-timeseries-prediction-mcp",
}

#: Environment variables a server needs from ours (workspace, threads, locale, plotting backend).
PASSED_ENV_PREFIXES = ("BMS_", "PATH", "HOME", "MPL", "OMP", "LANG", "LC_", "TMPDIR", "UV_", "VIRTUAL_ENV")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: a command, its arguments and a working directory."""

    name: str
    command: str
    args: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return self.cwd.name

    def params(self, extra_env: dict[str, str] | None = None):  # -> mcp.StdioServerParameters
        from mcp import StdioServerParameters

        env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV_PREFIXES)}
        env.setdefault("MPLBACKEND", "Agg")
        env.update(self.env)
        env.update(extra_env or {})
        return StdioServerParameters(command=self.command, args=list(self.args), env=env, cwd=str(self.cwd))


def default_spec(name: str, root: Path = ROOT) -> ServerSpec:
    """The server ``name`` started with this interpreter on ``<folder>/server.py``."""
    if name not in SERVER_FOLDERS:
        raise KeyError(f"unknown server '{name}': expected one of {', '.join(SERVER_FOLDERS)}")
    folder = root / SERVER_FOLDERS[name]
    return ServerSpec(name=name, command=sys.executable, args=(str(folder / "server.py"),), cwd=folder)


def default_specs(root: Path = ROOT) -> dict[str, ServerSpec]:
    return {name: default_spec(name, root) for name in SERVER_FOLDERS}
