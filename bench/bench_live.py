"""Benchmark of the live-inference HTTP service with a loopback load generator.

Trains a real ``anomaly_hybrid`` on a simulated fleet in a temporary workspace, starts
``live-inference/server.py`` with uvicorn on 127.0.0.1 in a subprocess, and measures with an
httpx client (keep-alive, sequential bounded loops):

* single-reading ``POST /v1/anomaly`` latency (p50, p99) - targets 5 ms / 20 ms;
* a batch of 1,000 readings (p50, max) - target 50 ms;
* errors while new model versions are registered and swapped in under load from several
  client threads - target 0;
* the server process's CPU time per request (from ``/proc``), which other processes on a
  busy machine disturb far less than wall-clock latency.

Prints one JSON object. Timings are wall-clock on a shared 2-core machine: the load
average at the start and end is printed with them.

    uv run bench/bench_live.py [--requests 1000] [--batches 30] [--swap-seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "live-inference" / "server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_model(days: float, seed: int) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """Simulate a fleet, train + register the hybrid on the first 80 % of time; return the
    detector, the later readings as request records (time order) and training figures."""
    from bms_anomaly.hybrid import HybridAnomalyDetector
    from bms_anomaly.persistence import register_detector
    from bms_datagen.simulator import simulate_fleet
    from bms_schema import normalize, sort_readings
    from bms_schema.loader import load_canonical

    start = time.perf_counter()
    raw = simulate_fleet(devices=3, cells_per_device=24, days=days, interval_minutes=15, seed=seed)
    canonical, _ = normalize(raw)
    canonical = sort_readings(canonical).sort_values("Timestamp", kind="stable").reset_index(drop=True)
    cut = canonical["Timestamp"].quantile(0.8)
    train = load_canonical(canonical[canonical["Timestamp"] <= cut])
    detector = HybridAnomalyDetector(seed=seed).fit(train)
    version, _ = register_detector(detector, {"bench": True})
    later = canonical[canonical["Timestamp"] > cut]
    cols = [
        "DeviceID",
        "CellNumber",
        "CellVoltage",
        "CellTemperature",
        "CellSpecificGravity",
        "InstantaneousCurrent",
        "AmbientTemperature",
    ]
    records = later[cols].astype(object).where(later[cols].notna(), None).to_dict("records")
    stamps = later["Timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    for record, stamp in zip(records, stamps):
        record["Timestamp"] = stamp
    info = {
        "training_rows": int(len(train)),
        "request_pool": len(records),
        "version": version,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return detector, records, info


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SERVER),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--poll-seconds",
            "0.5",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    import httpx

    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            if health["models_loaded"].get("anomaly"):
                return proc
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy within 60 s")


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p90_ms": round(float(np.percentile(arr, 90)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 3),
        "n": int(arr.size),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``): a figure other processes' load barely moves."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def single_latency(client: Any, records: list[dict[str, Any]], n: int, pid: int) -> dict[str, Any]:
    times, errors = [], 0
    cpu0 = cpu_seconds(pid)
    for i in range(n):
        body = {"readings": [records[i % len(records)]]}
        t0 = time.perf_counter()
        response = client.post("/v1/anomaly", json=body)
        times.append(time.perf_counter() - t0)
        errors += response.status_code != 200
    server_cpu = (cpu_seconds(pid) - cpu0) / n * 1000
    return {**percentiles(times), "errors": errors, "server_cpu_ms_per_request": round(server_cpu, 3)}


def batch_latency(client: Any, records: list[dict[str, Any]], n: int, size: int, pid: int) -> dict[str, Any]:
    times, errors = [], 0
    cpu0 = cpu_seconds(pid)
    for i in range(n):
        lo = (i * size) % max(1, len(records) - size)
        body = {"readings": records[lo : lo + size]}
        t0 = time.perf_counter()
        response = client.post("/v1/anomaly", json=body)
        times.append(time.perf_counter() - t0)
        errors += response.status_code != 200
    server_cpu = (cpu_seconds(pid) - cpu0) / n * 1000
    return {
        **percentiles(times),
        "errors": errors,
        "batch_size": size,
        "server_cpu_ms_per_request": round(server_cpu, 3),
    }


def swap_under_load(
    base_url: str, records: list[dict[str, Any]], detector: Any, seconds: float, threads: int, versions: int
) -> dict[str, Any]:
    import httpx
    from bms_anomaly.persistence import register_detector

    stop = threading.Event()
    lock = threading.Lock()
    counts = {"requests": 0, "errors": 0}
    seen: dict[str, int] = {}
    error_examples: list[str] = []

    def worker(offset: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            i = offset
            while not stop.is_set():
                body = {"readings": records[i % len(records) : i % len(records) + 8]}
                i += 8 * threads
                try:
                    response = client.post("/v1/anomaly", json=body)
                    ok = response.status_code == 200
                    version = response.json()["model"]["version"] if ok else None
                    text = "" if ok else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, version, text = False, None, repr(exc)
                with lock:
                    counts["requests"] += 1
                    if ok:
                        seen[version] = seen.get(version, 0) + 1
                    else:
                        counts["errors"] += 1
                        if len(error_examples) < 5:
                            error_examples.append(text)

    pool = [threading.Thread(target=worker, args=(k * 8,)) for k in range(threads)]
    for t in pool:
        t.start()
    registered = []
    for _ in range(versions):
        time.sleep(seconds / (versions + 1))
        version, _ = register_detector(detector, {"bench": True, "swap": True})
        registered.append(version)
    time.sleep(seconds / (versions + 1) + 1.0)  # the watcher polls every 0.5 s
    stop.set()
    for t in pool:
        t.join()
    return {
        "threads": threads,
        **counts,
        "versions_registered": registered,
        "versions_served": seen,
        "error_examples": error_examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="single-reading requests")
    parser.add_argument("--batches", type=int, default=30, help="1,000-reading requests")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--swap-seconds", type=float, default=8.0)
    parser.add_argument("--swap-threads", type=int, default=3)
    parser.add_argument("--days", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import httpx

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        os.environ["BMS_WORKSPACE"] = tmp
        os.environ.setdefault("BMS_THREADS", "1")
        detector, records, training = train_model(args.days, args.seed)
        port = free_port()
        env = {**os.environ, "BMS_WORKSPACE": tmp}
        env.pop("BMS_API_KEY", None)
        proc = start_server(port, env)
        base_url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base_url, timeout=30) as client:
                # warm up: feed the first packets so every cell has history, and JIT-free code paths are hot
                for lo in range(0, min(len(records), 72 * 16), 72):
                    client.post("/v1/anomaly", json={"readings": records[lo : lo + 72]})
                single = single_latency(client, records, args.requests, proc.pid)
                batch = batch_latency(client, records, args.batches, args.batch_size, proc.pid)
            swap = swap_under_load(base_url, records, detector, args.swap_seconds, args.swap_threads, 3)
            with httpx.Client(base_url=base_url, timeout=30) as client:
                served = client.get("/models").json()["served"]["anomaly"]["version"]
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    result = {
        "benchmark": "live-inference",
        "training": training,
        "single_reading_anomaly": {**single, "target_p50_ms": 5, "target_p99_ms": 20},
        "batch_anomaly": {**batch, "target_ms": 50},
        "hot_swap_under_load": {**swap, "served_after": served, "target_errors": 0},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
