"""Dask engine benchmark: preprocessing + features + anomaly scoring over a partitioned fleet dataset. Prints JSON.

1. Simulates ``--readings`` raw packet rows (``--devices`` strings x 24 cells at 1 reading/min)
   straight into a dataset folder partitioned by device and day, ``--sim-workers`` processes
   in parallel (``bms_datagen.dataset.simulate_dataset``); reports its time.
2. Trains a small anomaly detector on one device (not timed: the pipeline scores with a model).
3. Runs the pipeline - preprocessing (clean, interpolate, features, scale; output a dataset
   folder) then anomaly scoring of the preprocessed dataset (output a dataset folder) - three ways:
   ``single``: the same device tasks one after the other in this one process (no Dask);
   ``dask_1w`` / ``dask_2w``: a ``LocalCluster(n_workers=1|2, threads_per_worker=1, processes=True)``
   started in its own process (so the scheduler is a process of its own), this process the client.
   (The whole-table in-memory path cannot hold 20M readings in 4 GB: one frame of 20M rows x ~120
   columns is ~20 GB; the chunked single-file engine is ``bench_preprocess.py``.)

Peak RSS is sampled with psutil every 0.2 s for every process: the client (this process), the
scheduler (the cluster's process) and each worker. Load average is reported at start and end
(the machine may be shared). Goals (issue 20): no process above 4 GB; ``dask_2w`` wall time <= 0.6 x
``dask_1w``.

Usage: nice -n 10 uv run --frozen python bench/bench_dask.py [--readings 20000000] [--devices 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CLUSTER_SCRIPT = """
import sys, time
from distributed import LocalCluster
cluster = LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True,
                       dashboard_address=None, memory_limit=0)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
cluster.close()
"""


class RssSampler:
    """Peak resident memory per process of a set of process trees, sampled on a thread."""

    def __init__(self, roots: dict[str, int], interval: float = 0.2):
        import psutil

        self.psutil = psutil
        self.roots = roots
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for label, pid in self.roots.items():
            try:
                root = self.psutil.Process(pid)
                procs = [(label, root)]
                if label == "scheduler":  # the cluster process; its children are the workers
                    kids = [c for c in root.children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]
                    procs += [(f"worker_{i}", c) for i, c in enumerate(sorted(kids, key=lambda p: p.pid))]
                for name, proc in procs:
                    rss = proc.memory_info().rss / 1e6
                    self.peak[name] = max(self.peak.get(name, 0.0), rss)
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def pipeline(dataset: Path, work: Path, detector: Any, scheduler: str | None) -> dict[str, Any]:
    from bms_anomaly.distributed import detect_distributed
    from bms_preprocess.distributed import run_preprocess_distributed
    from bms_preprocess.engine import PreprocessOptions

    timings: dict[str, float] = {}
    start = time.perf_counter()
    pre = run_preprocess_distributed(dataset, work / "preprocessed", PreprocessOptions(impute="interpolate"), scheduler)
    timings["preprocess_s"] = round(time.perf_counter() - start, 2)
    mid = time.perf_counter()
    scored = detect_distributed(work / "preprocessed", work / "anomalies", detector, scheduler)
    timings["anomaly_s"] = round(time.perf_counter() - mid, 2)
    timings["total_s"] = round(time.perf_counter() - start, 2)
    return {**timings, "rows": pre.rows, "flagged": scored.info["flagged"]}


def warm_up(scheduler: str, dataset: Path, work: Path, detector: Any) -> None:
    """Import the pipeline's libraries on every worker (torch, sklearn) before timing."""
    from bms_schema.distributed import client_for

    def imports() -> bool:
        import bms_anomaly.hybrid  # noqa: F401
        import bms_preprocess.engine  # noqa: F401
        import torch  # noqa: F401

        return True

    client_for(scheduler).run(imports)


def fast_detector(dataset: Path) -> Any:
    from bms_anomaly.detect import prepare_input
    from bms_anomaly.hybrid import HybridAnomalyDetector, HybridConfig
    from bms_schema.dataset import list_partitions, read_device

    frame = read_device(list_partitions(dataset)[0])
    frame = frame.iloc[: min(len(frame), 50_000)]
    prepared, _ = prepare_input(frame)
    return HybridAnomalyDetector(config=HybridConfig()).fit(prepared)


def subset(dataset: Path, folder: Path, devices: int) -> Path:
    """A dataset folder of the first ``devices`` devices (hard links to their files: no copy)."""
    from bms_schema.dataset import list_partitions, write_marker

    shutil.rmtree(folder, ignore_errors=True)
    for part in list_partitions(dataset)[:devices]:
        for file in part.files:
            target = folder / file.relative_to(dataset)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(file, target)
    write_marker(folder, ["device", "day"], {"subset_of": str(dataset), "devices": devices})
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20_000_000)
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--sim-workers", type=int, default=2)
    parser.add_argument("--runs", default="single,dask_1w,dask_2w", help="comma-separated: single, dask_1w, dask_2w")
    parser.add_argument("--workdir", default=None, help="folder for the dataset and outputs (default: a temp dir)")
    parser.add_argument(
        "--pipeline-devices",
        type=int,
        default=None,
        help="run the pipeline on the first N devices of the simulated dataset only (default: all)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse a dataset simulated earlier in --workdir (its simulate.json)"
    )
    args = parser.parse_args()
    import psutil
    from bms_datagen.dataset import simulate_dataset
    from bms_datagen.fleet_config import FleetConfig

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dask-"))
    root.mkdir(parents=True, exist_ok=True)
    steps = args.readings // (args.devices * args.cells)  # the simulator caps a fleet at 20M readings
    config = FleetConfig(
        devices=args.devices, cells_per_device=args.cells, days=steps / 1440.0, interval_minutes=1.0, seed=20
    )
    report: dict[str, Any] = {
        "readings_requested": args.readings,
        "devices": args.devices,
        "cells_per_device": args.cells,
        "readings_per_cell": steps,
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    dataset = root / "fleet"
    saved = root / "simulate.json"
    if args.reuse and saved.exists() and json.loads(saved.read_text()).get("rows_requested") == args.readings:
        report["simulate"] = {**json.loads(saved.read_text()), "reused": True}
    else:
        if dataset.exists():
            shutil.rmtree(dataset)
        with RssSampler({"client": os.getpid()}) as sim_rss:
            sim = simulate_dataset(dataset, config, batch_devices=1, workers=args.sim_workers)
        report["simulate"] = {
            **{k: sim[k] for k in ("rows", "files", "batches", "workers", "seconds")},
            "rows_requested": args.readings,
            "peak_rss_mb_parent": round(sim_rss.peak.get("client", 0.0)),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        saved.write_text(json.dumps(report["simulate"]))
    if args.pipeline_devices:
        dataset = subset(dataset, root / "subset", args.pipeline_devices)
    from bms_schema.dataset import dataset_rows

    report["pipeline_readings"] = dataset_rows(dataset)
    detector = fast_detector(dataset)
    runs: dict[str, Any] = {}
    for name in [r.strip() for r in args.runs.split(",") if r.strip()]:
        work = root / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        load_before = [round(x, 2) for x in os.getloadavg()]
        if name == "single":
            with RssSampler({"client": os.getpid()}) as rss:
                result = pipeline(dataset, work, detector, None)
        else:
            n_workers = int(name.split("_")[1].rstrip("w"))
            proc = subprocess.Popen(
                [sys.executable, "-c", CLUSTER_SCRIPT, str(n_workers)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None and proc.stdin is not None
            address = proc.stdout.readline().strip()
            try:
                warm_up(address, dataset, work, detector)
                with RssSampler({"client": os.getpid(), "scheduler": proc.pid}) as rss:
                    result = pipeline(dataset, work, detector, address)
            finally:
                from bms_schema.distributed import close_clients

                close_clients()
                proc.stdin.close()
                proc.wait(timeout=120)
        runs[name] = {
            **result,
            "peak_rss_mb": {k: round(v) for k, v in sorted(rss.peak.items())},
            "max_process_rss_mb": round(max(rss.peak.values())),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        shutil.rmtree(work, ignore_errors=True)
        print(json.dumps({name: runs[name]}), file=sys.stderr, flush=True)
    report["runs"] = runs
    if "dask_1w" in runs and "dask_2w" in runs:
        report["ratio_2w_over_1w"] = round(runs["dask_2w"]["total_s"] / runs["dask_1w"]["total_s"], 3)
        report["goal_ratio_le_0_6"] = report["ratio_2w_over_1w"] <= 0.6
    report["goal_no_process_above_4gb"] = all(r["max_process_rss_mb"] <= 4000 for r in runs.values())
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine_memory_gb"] = round(psutil.virtual_memory().total / 1e9, 1)
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
