"""Ingest benchmark: replay of the default simulated fleet into a real ``bms start`` process over HTTP,
stored in SQLite and scored by a real anomaly model; then kill -9 mid-stream and a restart.

    uv run bench/bench_ingest.py [--days 3] [--batch 3] [--out result.json]

Figures (JSON on stdout):
* ``latency``: one 24-cell packet per request, in data-time order: p50/p99 ms per packet and
  the server's CPU ms per packet (from /proc, far less disturbed by other load than wall time);
* ``throughput``: ``--batch`` packets per request (the strings of a fleet reporting at one time):
  readings/s stored;
* ``kill9``: a fresh database, the stream killed with SIGKILL after ~1/3, restarted, then every
  packet resent: acknowledged readings lost and readings stored twice (both must be 0).
Goals (issue 18): >= 2,000 readings/s, p99 <= 50 ms per 24-cell packet, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(workspace: Path, port: int) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "BMS_WORKSPACE": str(workspace), "BMS_LIVE_POLL_SECONDS": "0"}
    env.pop("BMS_DATABASE_URL", None)
    env.pop("BMS_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bms_live.cli", "start", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError("the service exited during start-up") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the service did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def bodies(packets: list[tuple[Any, list[dict[str, Any]]]], batch: int) -> list[tuple[bytes, int]]:
    out = []
    for lo in range(0, len(packets), batch):
        rows = [r for _, p in packets[lo : lo + batch] for r in p]
        out.append((json.dumps({"readings": rows}).encode(), len(rows)))
    return out


def run_phase(port: int, pid: int, payloads: list[tuple[bytes, int]]) -> dict[str, Any]:
    import httpx

    latencies = []
    cpus = []
    stored = 0
    cpu0 = _cpu_seconds(pid)
    t0 = time.perf_counter()
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"content-type": "application/json"}
    ) as client:
        for body, _ in payloads:
            before = _cpu_seconds(pid)
            start = time.perf_counter()
            response = client.post("/v1/ingest", content=body)
            latencies.append(time.perf_counter() - start)
            cpus.append(_cpu_seconds(pid) - before)
            response.raise_for_status()
            stored += response.json()["stored"]
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds(pid) - cpu0
    lat = np.asarray(latencies) * 1000
    cpu_ms = np.asarray(cpus) * 1000
    readings = sum(n for _, n in payloads)
    return {
        "requests": len(payloads),
        "readings": readings,
        "stored": stored,
        "seconds": round(wall, 2),
        "readings_per_second": round(readings / wall, 1),
        "readings_per_server_cpu_second": round(readings / cpu, 1) if cpu > 0 else None,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
            "max": round(float(lat.max()), 2),
        },
        "server_cpu_ms_per_request": {
            "mean": round(cpu / len(payloads) * 1000, 2),
            "p50": round(float(np.percentile(cpu_ms, 50)), 2),
            "p99": round(float(np.percentile(cpu_ms, 99)), 2),
        },
    }


def kill9(workspace: Path, packets: list[tuple[Any, list[dict[str, Any]]]]) -> dict[str, Any]:
    import httpx
    from bms_live.store import Store

    port = _free_port()
    payloads = bodies(packets, 1)
    proc = start_server(workspace, port)
    acknowledged: list[tuple[str, int, str]] = []
    target = len(payloads) // 3

    def send() -> None:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"content-type": "application/json"}
        ) as client:
            for (body, _), (_, rows) in zip(payloads, packets):
                try:
                    response = client.post("/v1/ingest", content=body)
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    acknowledged.extend((r["DeviceID"], int(r["CellNumber"]), r["Timestamp"]) for r in rows)

    sender = threading.Thread(target=send)
    sender.start()
    while len(acknowledged) < target * 24 and sender.is_alive():
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    sender.join(60)
    proc = start_server(workspace, port)
    try:
        store = Store(workspace=workspace)
        stored = set()
        rows = 0
        for device in sorted({r["DeviceID"] for _, p in packets for r in p}):
            history = store.cell_history(device)
            rows += len(history)
            stored |= set(
                zip(
                    history["DeviceID"],
                    history["CellNumber"].astype(int),
                    history["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
            )
        acked = set(acknowledged)
        lost = len(acked - stored)
        duplicated_after_restart = rows - len(stored)
        resent = run_phase(port, proc.pid, payloads)
        total = store.status()["rows"]["readings"]
        expected = len({(r["DeviceID"], int(r["CellNumber"]), r["Timestamp"]) for _, p in packets for r in p})
        store.close()
    finally:
        stop(proc)
    return {
        "acknowledged_before_kill": len(acked),
        "stored_at_restart": len(stored),
        "acknowledged_lost": lost,
        "duplicated": duplicated_after_restart + max(0, total - expected),
        "after_resending_everything": {"stored": total, "expected": expected, "new_in_resend": resent["stored"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=3.0, help="days of the default fleet (3 x 24 cells, 15 min)")
    parser.add_argument(
        "--batch", type=int, default=12, help="packets per request in the throughput phase (12 = 4 fleet time steps)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from bms_live.bootstrap import train_first_models
    from bms_live.replay import packets as to_packets
    from bms_live.replay import simulated_fleet
    from bms_schema.registry import ModelRegistry

    root = Path(tempfile.mkdtemp(prefix="bms-bench-ingest-"))
    os.environ["BMS_WORKSPACE"] = str(root / "ws")
    t = time.perf_counter()
    train_first_models(ModelRegistry(root / "ws" / "models"), models=("anomaly",))
    train_seconds = time.perf_counter() - t
    raw = simulated_fleet(devices=3, cells=24, days=args.days, interval_minutes=15, seed=7)
    packets = list(to_packets(raw))
    half = len(packets) // 2
    result: dict[str, Any] = {
        "fleet": {
            "devices": 3,
            "cells_per_device": 24,
            "days": args.days,
            "interval_minutes": 15,
            "packets": len(packets),
            "readings": sum(len(p) for _, p in packets),
        },
        "train_seconds": round(train_seconds, 1),
        "load_average": os.getloadavg(),
    }
    port = _free_port()
    proc = start_server(root / "ws", port)
    try:
        result["latency"] = run_phase(port, proc.pid, bodies(packets[:half], 1))
        result["throughput"] = run_phase(port, proc.pid, bodies(packets[half:], args.batch))
        result["throughput"]["packets_per_request"] = args.batch
        sys.stderr.write(json.dumps(result) + "\n")
    finally:
        stop(proc)
    os.environ["BMS_WORKSPACE"] = str(root / "ws-kill9")
    import shutil

    shutil.copytree(root / "ws" / "models", root / "ws-kill9" / "models")
    result["kill9"] = kill9(root / "ws-kill9", packets[: min(len(packets), 300)])
    lat = result["latency"]
    result["goals"] = {
        "readings_per_second>=2000": result["throughput"]["readings_per_second"] >= 2000,
        "p99_ms_per_packet<=50": lat["latency_ms"]["p99"] <= 50,
        # the same goals on the server's own CPU time: what an idle core would give, since wall
        # time on a shared machine mostly measures the other processes (/proc/<pid>/stat, 10 ms ticks)
        "readings_per_server_cpu_second>=2000": (result["throughput"]["readings_per_server_cpu_second"] or 0) >= 2000,
        "server_cpu_p99_ms_per_packet<=50": lat["server_cpu_ms_per_request"]["p99"] <= 50,
        "kill9_lost==0": result["kill9"]["acknowledged_lost"] == 0,
        "kill9_duplicated==0": result["kill9"]["duplicated"] == 0,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    sys.stdout.write(text + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
