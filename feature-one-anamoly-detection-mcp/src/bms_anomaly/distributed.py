"""Anomaly scoring on a Dask cluster, device by device (:mod:`bms_schema.distributed`).

Each task reads one device's partition of a dataset folder, prepares it with the data core
(clean, interpolate, features: all per cell or per string, so a device's rows give exactly the
one-pass values), scores it with the detector (sent to each worker once), writes the scored rows
as ``device=<id>/part-0.parquet`` of the output dataset and returns the device's per-cell summary,
its worst episodes and counts. The client merges those; no task returns rows.

Scores, flags, kinds and reasons equal :func:`.detect.detect` on the whole table: the detector's
features are causal per cell (:data:`.features.HISTORY_REACH`, :func:`.features.screened_baseline`)
or per string and time, its calibration and threshold are fixed at training, and a device's
partition holds the whole history of its cells. Ground-truth metrics need all rows at once and
are not computed on this path (score the output dataset with ``ground_truth`` on one machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from bms_schema import columns as C
from bms_schema.dataset import DEVICE_KEY, Partition, list_partitions, read_device, write_marker
from bms_schema.distributed import map_partitions

from .detect import DetectionResult, dead_cells_records, detect
from .hybrid import HybridAnomalyDetector

EPISODES_TOP = 20


def score_device(
    partition: Partition,
    detector: HybridAnomalyDetector,
    output: str,
    contamination: float | str | None,
    impute: str,
) -> dict[str, Any]:
    """On a worker: score one device, write its rows, return its summaries (small)."""
    raw = read_device(partition)
    result = detect(raw, contamination=contamination, impute=impute, detector=detector, ground_truth=False)
    del raw
    folder = Path(output) / f"{DEVICE_KEY}={partition.device}"
    folder.mkdir(parents=True, exist_ok=True)
    from bms_schema.atomic import atomic_path

    with atomic_path(folder / "part-0.parquet") as tmp:
        result.table.to_parquet(tmp, index=False)
    return {
        "rows": len(result.table),
        "cell_summary": result.cell_summary,
        "episodes": result.episodes,
        "info": result.info,
        "dead_cells": dead_cells_records(detector),
    }


def detect_distributed(
    dataset: Path,
    output: Path,
    detector: HybridAnomalyDetector,
    scheduler: str | None,
    *,
    contamination: float | str | None = None,
    impute: str = "interpolate",
    progress: Any = None,
) -> DetectionResult:
    """Score the dataset folder ``dataset`` on the cluster; scored rows go to the dataset folder ``output``.

    The returned :class:`DetectionResult` has an empty ``table`` (the rows are in ``output``)
    and ``info["output_path"]``; summaries and counts are over all devices.
    """
    import time

    start = time.perf_counter()
    partitions = list_partitions(dataset)
    output.mkdir(parents=True, exist_ok=True)
    parts = map_partitions(
        scheduler,
        score_device,
        partitions,
        detector,
        str(output),
        contamination,
        impute,
        progress=progress,
        label="devices scored",
    )
    write_marker(output, [DEVICE_KEY], {"written_by": "bms_anomaly (Dask engine)"})
    summary = pd.concat([p["cell_summary"] for p in parts], ignore_index=True)
    summary = summary.sort_values(["anomaly_rate", "max_score"], ascending=False, kind="stable").reset_index(drop=True)
    episodes = pd.concat([p["episodes"] for p in parts if len(p["episodes"])], ignore_index=True)
    if len(episodes):
        episodes = episodes.sort_values(["peak_score", "readings"], ascending=False, kind="stable")
        episodes = episodes.head(EPISODES_TOP).reset_index(drop=True)
    else:
        episodes = parts[0]["episodes"]
    kinds: dict[str, int] = {}
    for p in parts:
        for k, v in p["info"]["kinds"].items():
            kinds[k] = kinds.get(k, 0) + int(v)
    first = parts[0]["info"]
    info = {
        "rows": int(sum(p["rows"] for p in parts)),
        "normalised_here": any(p["info"]["normalised_here"] for p in parts),
        "threshold": first["threshold"],
        "flagged": int(sum(p["info"]["flagged"] for p in parts)),
        "kinds": kinds,
        "features": first["features"],
        "dead_cells": [d for p in parts for d in p["dead_cells"]],
        "seconds": round(time.perf_counter() - start, 3),
        "engine": "dask",
        "devices": len(parts),
        "output_path": str(output),
    }
    return DetectionResult(
        table=pd.DataFrame(columns=[C.CELL_ID, C.TIMESTAMP]),
        detector=detector,
        trained=False,
        model_version=detector.model_version,
        metrics=None,
        cell_summary=summary,
        episodes=episodes,
        info=info,
    )


def plot_rows(output: Path, cells: list[str]) -> pd.DataFrame:
    """The scored rows of ``cells`` only, read from the output dataset with a filter (for the score plot)."""
    import pyarrow.dataset as ds

    from .hybrid import FLAG, SCORE

    files = [str(p) for part in list_partitions(output) for p in part.files]
    dataset = ds.dataset(files, format="parquet")
    table = dataset.to_table(
        columns=[C.CELL_ID, C.TIMESTAMP, SCORE, FLAG], filter=ds.field(C.CELL_ID).isin([str(c) for c in cells])
    )
    return table.to_pandas()
