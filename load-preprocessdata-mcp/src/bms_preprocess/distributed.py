"""Preprocessing on a Dask cluster, device by device: the same rows and values as :func:`.engine.run_preprocess`.

Three passes over the device partitions of a dataset folder (:mod:`bms_schema.dataset`), each a
task per device (:func:`bms_schema.distributed.map_partitions`); between passes the client merges
small summaries only:

1. clean (:class:`.streams.CleanStream` over the device's rows) -> a spill file per device, its
   quality report and its rows of the MICE sample (the same row-hash sample the one-pass run
   draws: at most ``sample_rows`` rows in all);
   client: merge the reports, fit the MICE kernel on the merged sample (as the one-pass run does);
2. impute + features (:class:`.streams.FeatureStream` over the device) -> a spill file, and the
   scaler moments of the device; client: merge the moments (Chan et al.);
3. scale and write the device's rows as ``device=<id>/part-0.parquet`` of the output dataset.

A device's rows are the whole history of its cells and its string, so every per-cell and
per-string computation sees exactly the rows it sees in one pass; merged scaler moments differ
from the one-pass ones by float rounding only (~1e-15 relative).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError
from bms_schema.clean import QualityAccumulator, merge_quality_reports
from bms_schema.dataset import DEVICE_KEY, Partition, dataset_rows, list_partitions, read_device, write_marker
from bms_schema.distributed import map_partitions, require_dataset
from bms_schema.features import FEATURE_COLUMNS, skipped_features

from .engine import PreprocessOptions, PreprocessResult, Progress, _check_totals, _fit_mice
from .mice import HELPER_PREFIXES, MiceImputer
from .scaling import BMSScaler, scaled_column
from .spill import Spill, assemble
from .streams import CleanStream, FeatureStream

log = logging.getLogger("bms.preprocess")


@dataclass
class _Task:
    partition: Partition
    work: Path  # this device's spill folder (shared filesystem)


def _imputer(options: PreprocessOptions) -> MiceImputer:
    return MiceImputer(
        sample_rows=options.sample_rows,
        iterations=options.iterations,
        random_state=options.random_state,
        eval_fraction=options.eval_fraction,
    )


def clean_device(task: _Task, options: PreprocessOptions, total_rows: int) -> dict[str, Any]:
    """Pass 1 on a worker: clean one device, spill it; return its report, columns and sample rows."""
    raw = read_device(task.partition)
    quality = QualityAccumulator()
    from bms_schema.normalize import detect_format

    quality.input_format = detect_format(raw)
    stream = CleanStream(options, quality, None)
    block = stream.feed(raw, final=True)
    del raw
    task.work.mkdir(parents=True, exist_ok=True)
    sample = None
    if block is not None and len(block):
        Spill(task.work, "clean").write(block)
        if options.impute == "mice":
            mask = _imputer(options).sample_mask(block, total_rows)
            sample = block.loc[mask].reset_index(drop=True) if mask.any() else None
    return {
        "report": quality.report() if quality.rows_out else None,
        "rows_in": quality.rows_in,
        "columns": stream.columns or [],
        "schema_columns": stream.schema_columns or [],
        "sample": sample,
    }


def feature_device(
    task: _Task,
    options: PreprocessOptions,
    columns: list[str],
    fitted: MiceImputer | None,
    single_cell_devices: list[str],
    scale_columns: list[str] | None,
) -> dict[str, Any]:
    """Pass 2 on a worker: impute + features of one device, spilled; return counts and scaler moments."""
    spill = Spill(task.work, "clean")
    spill.paths = sorted(task.work.glob("clean-*.arrow"))
    features = FeatureStream(options, columns, fitted)
    features.single_cell_devices = single_cell_devices
    out_spill = Spill(task.work, "features")
    scaler = BMSScaler(columns=list(scale_columns)) if scale_columns is not None else None
    feature_values: dict[str, int] = {}
    for block in spill.frames():
        out, feats = features.process(block)
        for name, values in feats.items():
            feature_values[name] = feature_values.get(name, 0) + int(np.count_nonzero(~np.isnan(values)))
        exclude = {c for c in out.columns if c.startswith(HELPER_PREFIXES)}
        if scaler is not None:
            exclude |= {scaled_column(c) for c in scaler.columns}
            scaler.partial_fit(pd.DataFrame({c: feats[c] if c in feats else out[c].to_numpy() for c in scaler.columns}))
        out_spill.write(out, extra=feats, exclude=exclude)
    for p in spill.paths:
        p.unlink(missing_ok=True)
    return {"imputed_counts": features.imputed_counts, "feature_values": feature_values, "scaler": scaler}


def write_device(task: _Task, output: Path, scaler: BMSScaler | None, batch_rows: int) -> dict[str, Any]:
    """Pass 3 on a worker: scale one device's rows and write them as its partition of ``output``."""
    spill = Spill(task.work, "features")
    spill.paths = sorted(task.work.glob("features-*.arrow"))
    folder = output / f"{DEVICE_KEY}={task.partition.device}"
    folder.mkdir(parents=True, exist_ok=True)
    rows, names = assemble(spill, folder / "part-0.parquet", scaler, batch_rows=batch_rows)
    shutil.rmtree(task.work, ignore_errors=True)
    return {"rows": rows, "columns": names}


def _merge_scalers(parts: list[BMSScaler], columns: list[str]) -> BMSScaler:
    """The moments of the union of the parts (Chan et al. pairwise merge, in part order)."""
    merged = BMSScaler(columns=list(columns))
    for part in parts:
        for name in columns:
            n_b = part.count_.get(name, 0.0)
            if n_b == 0:
                continue
            n_a = merged.count_.get(name, 0.0)
            if n_a == 0:
                merged.count_[name], merged.mean_[name], merged.m2_[name] = n_b, part.mean_[name], part.m2_[name]
                continue
            mean_a, mean_b = merged.mean_[name], part.mean_[name]
            n = n_a + n_b
            delta = mean_b - mean_a
            merged.mean_[name] = mean_a + delta * n_b / n
            merged.m2_[name] = merged.m2_[name] + part.m2_[name] + delta * delta * n_a * n_b / n
            merged.count_[name] = n
    return merged


def run_preprocess_distributed(
    dataset: Path,
    output: Path,
    options: PreprocessOptions,
    scheduler: str | None,
    progress: Progress | None = None,
) -> PreprocessResult:
    """Preprocess the device partitions of ``dataset`` on the cluster at ``scheduler`` into the dataset folder ``output``."""
    import tempfile
    import time

    options.validate()
    require_dataset(dataset)
    say = progress or (lambda fraction, message: None)
    partitions = list_partitions(dataset)
    total_rows = dataset_rows(dataset)
    output.mkdir(parents=True, exist_ok=True)
    work_root = Path(tempfile.mkdtemp(prefix=".bms-dask-", dir=output))
    tasks = [_Task(p, work_root / f"{i:06d}") for i, p in enumerate(partitions)]
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    try:
        say(0.05, f"cleaning {len(tasks)} devices on the cluster")
        first = map_partitions(scheduler, clean_device, tasks, options, total_rows, label="devices cleaned")
        reports = [r["report"] for r in first if r["report"] is not None]
        if not reports:
            raise InputError(f"{dataset.name}: no usable rows after cleaning")
        columns = first[0]["columns"]
        for r in first:
            if r["report"] is not None and r["columns"] != columns:
                raise InputError(
                    f"the devices of {dataset.name} do not have the same measurements ({columns} vs {r['columns']}): "
                    "a dataset holds one table shape"
                )
        report = merge_quality_reports(reports)
        report["rows_in"] = int(sum(r["rows_in"] for r in first))
        quality = QualityAccumulator()
        quality.rows_in = report["rows_in"]
        _check_totals(report, quality)
        timings["read_clean_s"] = round(time.perf_counter() - clock, 3)
        fitted = None
        if options.impute == "mice":
            say(0.4, "fitting the MICE imputer on the sample")
            samples = [r["sample"] for r in first if r["sample"] is not None]
            fitted = _fit_mice(_imputer(options), samples, columns, report)
        scale_cols = None
        if options.scale:
            present = set(first[0]["schema_columns"])
            empty = {c for c in columns if report["missing_by_column"].get(c, 0) >= report["rows_out"]}
            scale_cols = options.scale_columns or [
                *(c for c in columns if c not in empty),
                *(f for f in FEATURE_COLUMNS if options.features or f in present),
            ]
        say(0.5, "imputing and engineering features on the cluster")
        second = map_partitions(
            scheduler,
            feature_device,
            tasks,
            options,
            columns,
            fitted,
            list(report.get("single_cell_strings", [])),
            scale_cols,
            label="devices featurised",
        )
        imputed: dict[str, int] = {}
        feature_values: dict[str, int] = {}
        for r in second:
            for k, v in r["imputed_counts"].items():
                imputed[k] = imputed.get(k, 0) + v
            for k, v in r["feature_values"].items():
                feature_values[k] = feature_values.get(k, 0) + v
        scaler = None
        if scale_cols is not None:
            scaler = _merge_scalers([r["scaler"] for r in second], scale_cols)
            unfitted = scaler.drop_unfitted()
            report["not_scaled"] = {c: "no value at all" for c in unfitted}
            scaler.check_fitted()
        if options.features:
            report["skipped_features"] = skipped_features(
                report.get("measurements_without_value", []),
                [name for name in FEATURE_COLUMNS if feature_values.get(name, 0) == 0],
            )
        timings["impute_features_s"] = round(time.perf_counter() - clock - timings["read_clean_s"], 3)
        say(0.8, "writing the output partitions")
        third = map_partitions(
            scheduler, write_device, tasks, output, scaler, int(options.chunksize or 500_000), label="devices written"
        )
        write_marker(output, [DEVICE_KEY], {"written_by": "bms_preprocess (Dask engine)"})
        timings["total_s"] = round(time.perf_counter() - clock, 3)
        return PreprocessResult(
            output=output,
            rows=int(sum(r["rows"] for r in third)),
            columns=third[0]["columns"],
            report=report,
            mice_quality=fitted.quality_ if fitted is not None else None,
            imputed_counts=imputed,
            scaler=scaler,
            profile=None,
            chunks=len(tasks),
            timings=timings,
        )
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
