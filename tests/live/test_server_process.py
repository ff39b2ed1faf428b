"""``live-inference/server.py`` starts uvicorn on loopback and serves /health, /docs and 503s."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_entry_point_serves_on_loopback(workspace) -> None:
    port = _free_port()
    env = {**os.environ, "BMS_WORKSPACE": str(workspace)}
    env.pop("BMS_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "live-inference" / "server.py"),
            "--port",
            str(port),
            "--poll-seconds",
            "0",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 30
        health = None
        while time.time() < deadline and health is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                time.sleep(0.2)
        assert health is not None and health["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/failure",
            json={"readings": [{"DeviceID": "A", "CellNumber": 1, "Timestamp": "2026-01-01T00:00:00Z"}]},
        )
        assert response.status_code == 503 and response.json()["detail"].startswith("no model yet")
        connections = (
            subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
            if Path("/usr/bin/ss").exists() or Path("/bin/ss").exists()
            else ""
        )
        if connections:
            assert f"127.0.0.1:{port}" in connections and f"0.0.0.0:{port}" not in connections
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.stdout is not None and proc.stdout.read() == b""  # nothing printed to stdout
