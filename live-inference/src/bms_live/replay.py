"""Replay a simulated fleet into ``POST /v1/ingest``, packet by packet, at a chosen speed.

``bms replay --url http://127.0.0.1:8000 --speed 600`` simulates the embedded default fleet
(``bms_datagen.simulator.simulate_fleet``) and sends each packet (every cell of a string at one
time) in data-time order; ``--speed 600`` plays 10 minutes of data per second, ``--speed 0``
as fast as the service answers. ``bms start --demo`` runs it against the service it starts.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C

log = logging.getLogger("bms.replay")

READING_FIELDS = (
    C.DEVICE_ID,
    C.CELL_NUMBER,
    C.VOLTAGE,
    C.TEMPERATURE,
    C.SPECIFIC_GRAVITY,
    C.CURRENT,
    C.AMBIENT,
    C.STRING_VOLTAGE,
)


@dataclass
class ReplayStats:
    packets: int = 0
    readings: int = 0
    stored: int = 0
    duplicates: int = 0
    flagged: int = 0
    errors: int = 0
    acknowledged: list[tuple[str, int, str]] = field(default_factory=list)  # (device, cell, time) committed
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1000 if self.latencies else np.zeros(1)
        return {
            "packets": self.packets,
            "readings": self.readings,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "flagged": self.flagged,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "readings_per_second": round(self.readings / self.seconds, 1) if self.seconds else None,
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 2),
                "p99": round(float(np.percentile(lat, 99)), 2),
                "max": round(float(lat.max()), 2),
            },
        }


def simulated_fleet(
    devices: int = 3, cells: int = 24, days: float = 1.0, interval_minutes: float = 15.0, seed: int = 0, **params: Any
) -> pd.DataFrame:
    """The embedded default fleet (packet format, 73+ columns), from the data generator."""
    from bms_datagen.simulator import simulate_fleet

    return simulate_fleet(
        devices=devices, cells_per_device=cells, days=days, interval_minutes=interval_minutes, seed=seed, **params
    )


def packets(raw: pd.DataFrame) -> Iterator[tuple[pd.Timestamp, list[dict[str, Any]]]]:
    """Canonical readings grouped into packets (device, time), in time order, as JSON-ready dicts."""
    from bms_schema.normalize import normalize

    canonical, _ = normalize(raw, drop_unknown=True)
    canonical = canonical.sort_values([C.TIMESTAMP, C.DEVICE_ID, C.CELL_NUMBER], kind="stable")
    stamps = canonical[C.TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy()
    fields = [f for f in READING_FIELDS if f in canonical]
    # sentinels were turned into NaN by normalize: send the readings as the BMS did (the wire values)
    records = canonical[fields].astype(object).where(canonical[fields].notna(), None).to_dict("records")
    keys = list(zip(canonical[C.DEVICE_ID].tolist(), stamps.tolist()))
    times = canonical[C.TIMESTAMP].tolist()
    start = 0
    for i in range(1, len(keys) + 1):  # a walk over rows to cut packets: one comparison each
        if i == len(keys) or keys[i] != keys[start]:
            batch = records[start:i]
            for record, stamp in zip(batch, stamps[start:i]):
                record[C.TIMESTAMP] = stamp
                record[C.CELL_NUMBER] = int(record[C.CELL_NUMBER])
            yield times[start], batch
            start = i


def replay(
    post: Callable[[list[dict[str, Any]]], dict[str, Any]],
    raw: pd.DataFrame,
    speed: float = 0.0,
    limit: int | None = None,
    on_packet: Callable[[ReplayStats], None] | None = None,
    batch: int = 1,
) -> ReplayStats:
    """Send every packet of ``raw`` through ``post`` (which returns the ingest answer or raises).
    ``speed`` = data seconds per wall second (0 = no waiting); ``batch`` packets per request
    (a feed catching up sends several at once)."""
    stats = ReplayStats()
    t0 = time.perf_counter()
    first: pd.Timestamp | None = None
    stream = packets(raw)
    while True:
        chunk: list[tuple[pd.Timestamp, list[dict[str, Any]]]] = []
        for item in stream:  # the next `batch` packets (fewer at the end or at the limit)
            if limit is not None and stats.packets + len(chunk) >= limit:
                break
            chunk.append(item)
            if len(chunk) >= max(1, batch):
                break
        if not chunk:
            break
        when = chunk[0][0]
        rows = [r for _, p in chunk for r in p]
        if speed > 0:
            first = first if first is not None else when
            due = (when - first).total_seconds() / speed
            wait = due - (time.perf_counter() - t0)
            if wait > 0:
                time.sleep(wait)
        start = time.perf_counter()
        try:
            answer = post(rows)
        except Exception as exc:  # a failed request is counted and reported, the replay goes on
            stats.errors += 1
            log.warning("packet %s %s failed: %s", rows[0][C.DEVICE_ID], rows[0][C.TIMESTAMP], exc)
            continue
        stats.latencies.append(time.perf_counter() - start)
        stats.packets += len(chunk)
        stats.readings += len(rows)
        stats.stored += int(answer.get("stored", 0))
        stats.duplicates += int(answer.get("duplicates", 0))
        stats.flagged += int(answer.get("flagged", 0))
        stats.acknowledged.extend((r[C.DEVICE_ID], r[C.CELL_NUMBER], r[C.TIMESTAMP]) for r in rows)
        if on_packet is not None:
            on_packet(stats)
        if limit is not None and stats.packets >= limit:
            break
    stats.seconds = time.perf_counter() - t0
    return stats


def http_poster(
    url: str, api_key: str | None = None, timeout: float = 30.0
) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """``post(batch)`` over one keep-alive HTTP connection to ``{url}/v1/ingest``."""
    import httpx

    headers = {"content-type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)

    def post(batch: list[dict[str, Any]]) -> dict[str, Any]:
        response = client.post("/v1/ingest", content=json.dumps({"readings": batch}))
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    return post


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="bms replay", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: Any) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the live service")
    parser.add_argument(
        "--speed", type=float, default=0.0, help="data seconds per wall second (0 = as fast as it answers)"
    )
    parser.add_argument("--devices", type=int, default=3, help="strings in the simulated fleet")
    parser.add_argument("--cells", type=int, default=24, help="cells per string")
    parser.add_argument("--days", type=float, default=1.0, help="days of data")
    parser.add_argument("--interval-minutes", type=float, default=15.0, help="minutes between packets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--packets", type=int, default=None, help="stop after this many packets")
    parser.add_argument("--batch", type=int, default=1, help="packets per request")


def run(args: Any) -> int:
    import os

    raw = simulated_fleet(args.devices, args.cells, args.days, args.interval_minutes, args.seed)
    post = http_poster(args.url, os.environ.get("BMS_API_KEY"))
    stats = replay(post, raw, speed=args.speed, limit=args.packets, batch=args.batch)
    sys.stdout.write(json.dumps(stats.summary(), indent=2) + "\n")
    return 0 if stats.errors == 0 else 1
