"""kill -9 of a real service process in the middle of an ingest stream: every acknowledged
reading is in the database after a restart, none twice, and resending everything stores
exactly the rest."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
from live.fakes import packet


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(workspace: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "BMS_WORKSPACE": str(workspace), "BMS_LIVE_POLL_SECONDS": "0"}
    env.pop("BMS_API_KEY", None)
    env.pop("BMS_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bms_live.cli", "start", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the service did not start within 60 s")


def _packets(n: int) -> list[list[dict]]:
    start = pd.Timestamp("2026-03-01T00:00:00Z")
    return [
        packet(f"K{k % 2}", 24, (start + pd.Timedelta(minutes=k // 2)).strftime("%Y-%m-%dT%H:%M:%SZ")) for k in range(n)
    ]


def test_kill_9_mid_stream_loses_no_acknowledged_reading(workspace) -> None:
    from bms_live.store import Store

    port = _free_port()
    packets = _packets(150)
    acknowledged: list[tuple[str, int, str]] = []
    proc = _start(workspace, port)
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for rows in packets:
                if stop.is_set():
                    return
                try:
                    response = client.post("/v1/ingest", json={"readings": rows})
                except httpx.HTTPError:
                    return  # the server died under this request: not acknowledged
                if response.status_code == 200 and response.json()["stored"] == len(rows):
                    acknowledged.extend((r["DeviceID"], r["CellNumber"], r["Timestamp"]) for r in rows)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        deadline = time.time() + 60
        while len(acknowledged) < 30 * 24 and time.time() < deadline and sender.is_alive():
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the sender is still posting
        proc.wait(10)
    finally:
        stop.set()
        sender.join(30)
        if proc.poll() is None:
            proc.kill()
    acked = set(acknowledged)
    assert len(acked) == len(acknowledged) >= 30 * 24
    assert len(acked) < 150 * 24  # the kill really was mid-stream

    proc = _start(workspace, port)  # restart: the store is opened (and migrated) again
    try:
        store = Store(workspace=workspace)
        stored = store.cell_history("K0")
        stored = pd.concat([stored, store.cell_history("K1")], ignore_index=True)
        keys = list(
            zip(
                stored["DeviceID"],
                stored["CellNumber"].astype(int),
                stored["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        )
        assert len(keys) == len(set(keys))  # 0 duplicated
        assert acked <= set(keys)  # 0 acknowledged readings lost
        before = len(keys)
        # resending the whole stream stores exactly what was missing, nothing twice
        total_new = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for rows in packets:
                body = client.post("/v1/ingest", json={"readings": rows}).json()
                total_new += body["stored"]
        assert before + total_new == 150 * 24
        assert store.status()["rows"]["readings"] == 150 * 24
        store.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
