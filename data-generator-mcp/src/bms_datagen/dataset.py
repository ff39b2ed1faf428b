"""Simulate a fleet straight into a partitioned Parquet dataset, in parallel, with bounded memory.

The fleet is simulated in batches of ``batch_devices`` devices; batch ``k`` is an independent
simulation (:func:`bms_datagen.simulator.simulate_fleet_with_truth`) with its own seed drawn from
``SeedSequence(seed).spawn`` and its devices numbered after the previous batches', written as
``device=<id>/day=<yyyy-mm-dd>/part-0.parquet`` (:func:`bms_schema.dataset.write_partitions`) and
dropped. ``workers`` processes simulate batches at once, so peak memory is ``workers`` batches,
whatever the fleet size. The same parameters (seed, batch size) give the same dataset; a fleet of
one batch is the same readings as the single-file simulator with that batch's seed.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema.errors import InputError

from .fleet_config import FleetConfig

#: Devices simulated per batch by default (24 cells x 1 reading/min x 30 days = 1M rows per device).
DEFAULT_BATCH_DEVICES = 2


def batch_seeds(seed: int, batches: int) -> list[int]:
    """Independent per-batch seeds (``SeedSequence(seed).spawn``), stable for a given ``seed``."""
    return [
        int(s.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        for s in np.random.SeedSequence(seed).spawn(batches)
    ]


def _batch(args: tuple[dict[str, Any], int, int, str]) -> dict[str, Any]:
    params, offset, index, folder = args
    from bms_schema.dataset import write_partitions

    from .simulator import simulate_fleet_with_truth

    config = FleetConfig(**params)
    sim = simulate_fleet_with_truth(config)
    frame = sim.readings
    for name in ("DeviceID", "ChargerDeviceID"):
        if name in frame.columns:
            frame[name] = frame[name].to_numpy() + offset
    files = write_partitions(frame, folder, tag=f"{index:05d}", marker=False)
    cells = sim.cells.copy()
    if "DeviceID" in cells.columns:
        cells["DeviceID"] = cells["DeviceID"].to_numpy() + offset
    summary = {k: v for k, v in sim.summary.items() if isinstance(v, (int, float))}
    return {"rows": len(frame), "files": len(files), "cells": cells, "summary": summary}


def simulate_dataset(
    folder: str | Path,
    config: FleetConfig,
    *,
    batch_devices: int = DEFAULT_BATCH_DEVICES,
    workers: int | None = None,
) -> dict[str, Any]:
    """Simulate ``config`` (its ``devices`` in batches) into the dataset ``folder``; return a summary.

    The per-cell ground truth of every batch is written beside the data as ``_cells_truth.parquet``.
    """
    from bms_schema.dataset import write_marker
    from bms_schema.runtime import compute_threads

    if batch_devices < 1:
        raise InputError(f"batch_devices must be at least 1, got {batch_devices}")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"dataset folder {folder} is not empty: choose a new folder (a dataset is written once)")
    folder.mkdir(parents=True, exist_ok=True)
    batches = -(-config.devices // batch_devices)
    seeds = batch_seeds(config.seed, batches)
    jobs = []
    for k in range(batches):
        size = min(batch_devices, config.devices - k * batch_devices)
        params = asdict(replace(config, devices=size, seed=seeds[k]))
        jobs.append((params, k * batch_devices, k, str(folder)))
    workers = max(1, min(workers or compute_threads(), batches))
    start = time.perf_counter()
    if workers == 1:
        results = [_batch(job) for job in jobs]
    else:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_batch, jobs))
    cells = pd.concat([r["cells"] for r in results], ignore_index=True)
    cells.to_parquet(folder / "_cells_truth.parquet", index=False)
    write_marker(
        folder,
        ["device", "day"],
        {"written_by": "bms_datagen.simulate_dataset", "seed": config.seed, "batch_devices": batch_devices},
    )
    totals: dict[str, float] = {}
    for r in results:
        for k, v in r["summary"].items():
            totals[k] = totals.get(k, 0) + v
    return {
        "path": str(folder),
        "rows": int(sum(r["rows"] for r in results)),
        "files": int(sum(r["files"] for r in results)),
        "devices": config.devices,
        "batches": batches,
        "workers": workers,
        "seconds": round(time.perf_counter() - start, 3),
        "failed_cells": int(totals.get("failed_cells", 0)),
        "anomaly_rows": int(totals.get("anomaly_rows", 0)),
    }
