"""Failure features and scoring on a Dask cluster, device by device (:mod:`bms_schema.distributed`).

Two passes over the device partitions of a dataset folder:

1. the end of each device's data (its last reading time) -> the client takes the fleet's end;
2. per device: load (the data core's one loader, as :func:`.api.load_readings_frame`), build the
   (cell, bucket) feature grid with ``data_end`` = the fleet's end (so the grid runs to the same
   last bucket as the one-pass grid), score it with the model (sent to each worker once), write
   the grid as ``device=<id>/part-0.parquet`` of the output features dataset and return the
   per-cell prediction table (one row per cell: a reduction, not the readings).

Every failure feature is per cell on the time-bucket grid, or a string median per bucket (one
device), so a device's grid equals its rows of the one-pass grid; the client concatenates the
per-cell tables and ranks them as :meth:`.model.FailureModel.predict` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.dataset import DEVICE_KEY, Partition, list_partitions, read_device, write_marker
from bms_schema.distributed import map_partitions

from .model import FailureModel


def _load(partition: Partition) -> pd.DataFrame:
    from bms_schema.loader import load_canonical, used_columns

    raw = read_device(partition)
    raw = raw[used_columns(list(raw.columns))]
    return load_canonical(raw, features=False, impute="none", check=False)


def device_end(partition: Partition) -> pd.Timestamp | None:
    """On a worker: the last reading time of one device (after cleaning)."""
    frame = _load(partition)
    ts = frame[C.TIMESTAMP]
    return None if ts.isna().all() else pd.Timestamp(ts.max())


def _anomaly_rows(anomalies: str | None, device: str) -> pd.DataFrame | None:
    if anomalies is None:
        return None
    from .features import ANOMALY_FLAG_COLUMNS

    for part in list_partitions(anomalies):
        if part.device == device:
            frame = read_device(part)
            keep = [c for c in frame.columns if c in {C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP}]
            keep += [c for c in ANOMALY_FLAG_COLUMNS if c in frame.columns]
            return frame[keep]
    return None


def score_device(
    partition: Partition,
    model: FailureModel,
    data_end: pd.Timestamp,
    horizon_days: float,
    output: str,
    anomalies: str | None,
) -> dict[str, Any]:
    """On a worker: the feature grid and per-cell scores of one device; the grid goes to ``output``."""
    from bms_schema.atomic import atomic_path

    from .api import _unknown_without_inputs
    from .features import build_feature_grid

    frame = _load(partition)
    flags = _anomaly_rows(anomalies, partition.device)
    grid = build_feature_grid(frame, model.config, flags, data_end=data_end)
    table = model.predict(frame, flags, grid=grid, horizon_days=horizon_days)
    table, unknown = _unknown_without_inputs(frame, table)
    folder = Path(output) / f"{DEVICE_KEY}={partition.device}"
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "part-0.parquet") as tmp:
        grid.table.to_parquet(tmp, index=False)
    return {"table": table, "unknown": unknown, "grid_rows": len(grid.table), "rows": len(frame)}


def rank(table: pd.DataFrame) -> pd.DataFrame:
    """The one-pass ranking of per-cell predictions (dead first, then by probability)."""
    table = table.drop(columns=["Rank"], errors="ignore")
    table = table.sort_values(
        ["AlreadyDead", "FailureProbability", C.DEVICE_ID, C.CELL_NUMBER],
        ascending=[False, False, True, True],
        na_position="last",
        kind="stable",
    )
    table.insert(0, "Rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def predict_failure_distributed(
    dataset: Path,
    output: Path,
    model: FailureModel,
    scheduler: str | None,
    *,
    horizon_days: float = 7.0,
    anomalies: Path | None = None,
    progress: Any = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-cell failure predictions of a dataset folder on the cluster; the feature grids go to ``output``.

    Returns ``(per-cell table ranked as in one pass, info)``.
    """
    partitions = list_partitions(dataset)
    ends = [e for e in map_partitions(scheduler, device_end, partitions, label="devices read") if e is not None]
    if not ends:
        from bms_schema import InputError

        raise InputError(f"{dataset.name}: no reading with a valid time in any device")
    data_end = max(ends)
    output.mkdir(parents=True, exist_ok=True)
    parts = map_partitions(
        scheduler,
        score_device,
        partitions,
        model,
        data_end,
        horizon_days,
        str(output),
        None if anomalies is None else str(anomalies),
        progress=progress,
        label="devices scored",
    )
    write_marker(output, [DEVICE_KEY], {"written_by": "bms_failure (Dask engine): feature grids"})
    table = rank(pd.concat([p["table"] for p in parts], ignore_index=True))
    unknown: dict[str, list[str]] = {}
    for p in parts:
        unknown.update(p["unknown"])
    info = {
        "devices": len(parts),
        "rows": int(sum(p["rows"] for p in parts)),
        "grid_rows": int(sum(p["grid_rows"] for p in parts)),
        "data_end": data_end,
        "unknown": unknown,
        "features_path": str(output),
        "engine": "dask",
    }
    return table, info
