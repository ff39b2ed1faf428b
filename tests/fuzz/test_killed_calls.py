"""SIGKILL during a call: no ``latest`` points at an unfinished step, and the next start leaves no leftovers.

A server is started as a subprocess speaking raw JSON-RPC over stdio (so the test holds its pid),
asked to train, and killed with SIGKILL at the worst moment: after its model version is on disk
(``models/<name>/.pending-*``) but before the call finished - the moment that used to leave
``latest`` pointing at a model whose step never ended. Likewise the preprocessing server is
killed while its spill folder exists. A restarted server's ``health_check`` must close the dead
steps and remove every leftover.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
from bms_agent.servers import ROOT
from bms_schema import ModelRegistry
from failure_fleet import synthetic_fleet
from mcp_stdio import connect, envelope

LEFTOVER_MARKERS = (".pending-", ".staging-", ".bms-spill-", ".latest-")


def _start(folder: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / folder / "server.py")],
        cwd=ROOT / folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    assert proc.stdin is not None and proc.stdout is not None

    def send(message: dict[str, object]) -> None:
        proc.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    send(
        {
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "kill-test", "version": "0"},
            },
        }
    )
    reply = json.loads(proc.stdout.readline())
    assert reply.get("id") == 1 and "result" in reply, reply
    send({"method": "notifications/initialized"})
    proc.send = send  # type: ignore[attr-defined]
    return proc


def _kill_when(proc: subprocess.Popen[bytes], seen: callable, timeout: float = 60.0) -> Path | None:  # type: ignore[valid-type]
    """Poll until ``seen()`` returns a path, then SIGKILL the server; returns what was seen."""
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = seen()
        if found is not None:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    return found


def _leftovers(workspace: Path) -> list[str]:
    return sorted(
        str(p.relative_to(workspace))
        for p in workspace.rglob("*")
        if p.name.startswith(LEFTOVER_MARKERS) or (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def _running_steps(workspace: Path) -> list[str]:
    out = []
    for manifest in (workspace / "runs").glob("*/manifest.json"):
        out += [s["step"] for s in json.loads(manifest.read_text())["steps"] if s["status"] == "running"]
    return out


def test_sigkill_during_training_and_preprocessing(workspace: Path) -> None:
    fleet = synthetic_fleet(devices=3, cells_per_device=12, days=50, seed=0)
    fleet.to_csv(workspace / "data" / "fleet.csv", index=False)
    models = workspace / "models" / "failure_classifier"

    # 1. the failure model is on disk but its call has not finished: kill
    server = _start("feature-three-failure-prediction-mcp")
    server.send(
        {
            "id": 2,
            "method": "tools/call",  # type: ignore[attr-defined]
            "params": {"name": "train_failure_model", "arguments": {"data_path": "data/fleet.csv"}},
        }
    )
    marker = _kill_when(server, lambda: next(models.glob(".pending-*"), None) if models.is_dir() else None)
    assert marker is not None, "the training call finished before its version could be caught pending"
    registry = ModelRegistry()
    assert registry.versions("failure_classifier") == [] and registry.latest_version("failure_classifier") is None
    assert not (models / "latest").exists()  # latest never pointed at the unfinished step's version
    assert len(_running_steps(workspace)) == 1

    # 2. the preprocessing server dies while its spill folder exists
    server = _start("load-preprocessdata-mcp")
    server.send(
        {
            "id": 2,
            "method": "tools/call",  # type: ignore[attr-defined]
            "params": {
                "name": "clean_and_filter_data",
                "arguments": {"data_path": "data/fleet.csv", "chunksize": 2000},
            },
        }
    )
    spill = _kill_when(server, lambda: next((workspace / "runs").glob("*/*/.bms-spill-*"), None))
    assert spill is not None, "the preprocessing call finished before its spill folder was seen"
    # (this server's start may already have closed the failure server's dead step in the background)
    assert any(s.endswith("clean_and_filter_data") for s in _running_steps(workspace))
    assert _leftovers(workspace), "the kills left nothing to clean: the test did not hit a call mid-way"

    # 3. the next start cleans up: steps closed as error, no leftovers, nothing registered
    async def restart() -> dict[str, object]:
        async with connect("load-preprocessdata-mcp") as client:
            return envelope(await client.call_tool("health_check", {}))

    health = anyio.run(restart)
    assert health["status"] == "ok", health["message"]
    # (the start cleans in the background, health_check again in the foreground: either may have done it)
    assert _leftovers(workspace) == []
    assert _running_steps(workspace) == []
    steps = sorted((workspace / "runs").glob("*/[0-9]*-*"))
    assert sorted(p.name for p in steps) == ["01-clean_and_filter_data", "01-train_failure_model"]
    for step_dir in steps:
        manifest = json.loads((step_dir / "manifest.json").read_text())
        assert manifest["status"] == "error" and "stopped during the call" in manifest["message"]
        assert sorted(p.name for p in step_dir.iterdir()) == ["manifest.json", "tool.log"]
    assert ModelRegistry().versions("failure_classifier") == [] and not any(
        p.name.startswith("v") for p in models.iterdir()
    )

    # 4. the killed version's number is free again: the next registration is v0001
    with ModelRegistry().register("failure_classifier") as staging:
        (staging.dir / "model.json").write_text("{}")
    assert staging.version == "v0001" and ModelRegistry().latest_version("failure_classifier") == "v0001"
