"""Stream benchmark: ingest throughput through ``POST /v1/ingest`` into a real ``bms start`` process
(SQLite store, a real ``anomaly_hybrid`` model, the alert rules) with 0 ``WS /v1/stream`` clients
vs 10 clients of which one never reads.

    uv run bench/bench_stream.py [--days 12] [--batch 12] [--rounds 4] [--out result.json]

The fleet (3 strings x 24 cells, 15-minute packets) is cut into a warm-up slice and 2 x ``rounds`` + 1
disjoint slices, posted ``--batch`` packets per request; phases alternate (0 clients, 10 clients, 0,
..., 10, 0) so a change of the machine's load, or of the server's speed as its store grows, hits both
alike. The drop is the median over the loaded phases of 1 - (loaded rate / mean rate of the
unloaded phases beside it): one noisy phase on a shared machine moves the median less than the mean. Nine clients read every message (websockets' sync
client, each in a thread, in a child process of their own); the tenth completes the WebSocket handshake and then
never reads a byte (its socket fills up; the server drops its oldest events and, after
``BMS_STREAM_STUCK_SECONDS``, disconnects it).

Figures (JSON on stdout): per phase readings/s (wall clock) and readings per server CPU-second
(/proc: what the server itself spent, far less disturbed by the other processes on a shared
machine), the messages each reading client got, and the server's stream counters (``/health``).
Goal (issue 19): with 10 clients, throughput drops by less than 10 %.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import _cpu_seconds, _free_port, bodies, start_server, stop  # noqa: E402


class Reader(threading.Thread):
    """A client that reads every message (counts them and their bytes)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=30)
        self.messages = 0
        self.bytes = 0
        self.types: dict[str, int] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                text = self.ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except Exception:  # closed
                return
            self.messages += 1
            self.bytes += len(text)
            kind = text[9:24].split('"', 1)[0] if text.startswith('{"type":"') else "?"
            self.types[kind] = self.types.get(kind, 0) + 1

    def close(self) -> None:
        self.stop_flag.set()
        self.join(5)
        try:
            self.ws.close()
        except Exception:
            pass


def stuck_client(port: int) -> socket.socket:
    """Handshake, then never read: the kernel buffers fill and the server's sends stop completing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


def reader_process(port: int, n: int) -> None:
    """``--readers``: run ``n`` reading clients in this (child) process until stdin closes, then print
    their counts (one JSON line). A separate process, so the readers do not share the GIL with the
    benchmark's HTTP client (a browser would not either)."""
    readers = [Reader(f"ws://127.0.0.1:{port}/v1/stream") for _ in range(n)]
    for r in readers:
        r.start()
    sys.stdout.write(json.dumps({"connected": n}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    time.sleep(0.3)
    out = {"messages": [r.messages for r in readers], "bytes": sum(r.bytes for r in readers), "types": readers[0].types}
    for r in readers:
        r.close()
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def start_readers(port: int, n: int) -> Any:
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, __file__, "--readers", str(n), "--port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    json.loads(proc.stdout.readline())
    return proc


def stop_readers(proc: Any) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def phase(port: int, pid: int, payloads: list[tuple[bytes, int]]) -> dict[str, Any]:
    import httpx

    cpu0 = _cpu_seconds(pid)
    t0 = time.perf_counter()
    stored = 0
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"content-type": "application/json"}
    ) as client:
        for body, _ in payloads:
            response = client.post("/v1/ingest", content=body)
            response.raise_for_status()
            stored += response.json()["stored"]
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds(pid) - cpu0
    readings = sum(n for _, n in payloads)
    return {
        "requests": len(payloads),
        "readings": readings,
        "stored": stored,
        "seconds": round(wall, 3),
        "readings_per_second": round(readings / wall, 1),
        "readings_per_server_cpu_second": round(readings / cpu, 1) if cpu > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=12.0, help="days of the default fleet (3 x 24 cells, 15 min)")
    parser.add_argument("--batch", type=int, default=12, help="packets per request (12 = 4 fleet time steps)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="loaded phases (10 clients), each between two unloaded ones"
    )
    parser.add_argument("--clients", type=int, default=10, help="WebSocket clients in the loaded phases")
    parser.add_argument("--stuck-seconds", type=float, default=10.0, help="BMS_STREAM_STUCK_SECONDS of the server")
    parser.add_argument("--out", default=None)
    parser.add_argument("--readers", type=int, default=0, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.readers:
        reader_process(args.port, args.readers)
        return

    import httpx
    from bms_live.bootstrap import train_first_models
    from bms_live.replay import packets as to_packets
    from bms_live.replay import simulated_fleet
    from bms_schema.registry import ModelRegistry

    root = Path(tempfile.mkdtemp(prefix="bms-bench-stream-"))
    os.environ["BMS_WORKSPACE"] = str(root / "ws")
    os.environ["BMS_STREAM_STUCK_SECONDS"] = str(args.stuck_seconds)
    t = time.perf_counter()
    train_first_models(ModelRegistry(root / "ws" / "models"), models=("anomaly",))
    train_seconds = time.perf_counter() - t
    raw = simulated_fleet(devices=3, cells=24, days=args.days, interval_minutes=15, seed=7)
    packets = list(to_packets(raw))
    slices = 2 * args.rounds + 1  # 0, 10, 0, ..., 10, 0: every loaded phase between two unloaded ones
    result: dict[str, Any] = {
        "fleet": {"devices": 3, "cells_per_device": 24, "days": args.days, "packets": len(packets)},
        "packets_per_request": args.batch,
        "train_seconds": round(train_seconds, 1),
        "load_average_before": os.getloadavg(),
        "phases": [],
    }
    port = _free_port()
    proc = start_server(root / "ws", port)
    try:
        # warm-up: the first requests load the model's lazy parts and fill the per-cell history
        size = len(packets) // (slices + 1)
        warm = packets[:size]
        result["warm_up"] = phase(port, proc.pid, bodies(warm, args.batch))
        rest = packets[len(warm) :]
        for i in range(slices):
            chunk = rest[i * size : (i + 1) * size]
            loaded = i % 2 == 1
            readers = None
            stuck = None
            if loaded:
                stuck = stuck_client(port)
                readers = start_readers(port, args.clients - 1)
                deadline = time.time() + 10
                while time.time() < deadline:
                    health = httpx.get(f"http://127.0.0.1:{port}/health").json()
                    if health["stream"]["connected"] >= args.clients:
                        break
                    time.sleep(0.05)
            figures = phase(port, proc.pid, bodies(chunk, args.batch))
            figures["clients"] = args.clients if loaded else 0
            if loaded:
                time.sleep(0.5)  # let the readers take the last messages
                figures["stream"] = httpx.get(f"http://127.0.0.1:{port}/health").json()["stream"]
                counts = stop_readers(readers)
                figures["reader_messages"] = counts["messages"]
                figures["reader_megabytes"] = round(counts["bytes"] / 1e6, 1)
                figures["reader_types"] = counts["types"]
                if stuck is not None:
                    stuck.close()
            result["phases"].append(figures)
            sys.stderr.write(json.dumps(figures) + "\n")
    finally:
        stop(proc)

    def mean(key: str, clients: int) -> float:
        values = [p[key] for p in result["phases"] if p["clients"] == clients and p[key] is not None]
        return sum(values) / len(values)

    wall0, wall10 = mean("readings_per_second", 0), mean("readings_per_second", args.clients)
    cpu0, cpu10 = mean("readings_per_server_cpu_second", 0), mean("readings_per_server_cpu_second", args.clients)

    def median_drop(key: str) -> float:
        """Median over the loaded phases of 1 - rate / mean rate of the unloaded phases beside it."""
        phases = result["phases"]
        drops = []
        for i, p in enumerate(phases):
            if p["clients"] == 0 or p[key] is None:
                continue
            near = [phases[j][key] for j in (i - 1, i + 1) if 0 <= j < len(phases) and phases[j]["clients"] == 0]
            near = [v for v in near if v is not None]
            if near:
                drops.append(1 - p[key] / (sum(near) / len(near)))
        drops.sort()
        mid = len(drops) // 2
        return drops[mid] if len(drops) % 2 else (drops[mid - 1] + drops[mid]) / 2

    result["summary"] = {
        "readings_per_second": {"0_clients": round(wall0, 1), f"{args.clients}_clients": round(wall10, 1)},
        "drop_wall_clock_of_means": round(1 - wall10 / wall0, 4),
        "drop_wall_clock": round(median_drop("readings_per_second"), 4),
        "readings_per_server_cpu_second": {"0_clients": round(cpu0, 1), f"{args.clients}_clients": round(cpu10, 1)},
        "drop_server_cpu_of_means": round(1 - cpu10 / cpu0, 4),
        "drop_server_cpu": round(median_drop("readings_per_server_cpu_second"), 4),
    }
    result["load_average_after"] = os.getloadavg()
    result["goals"] = {
        "drop_wall_clock<0.10": result["summary"]["drop_wall_clock"] < 0.10,
        "drop_server_cpu<0.10": result["summary"]["drop_server_cpu"] < 0.10,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    sys.stdout.write(text + "\n")
    import shutil

    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
