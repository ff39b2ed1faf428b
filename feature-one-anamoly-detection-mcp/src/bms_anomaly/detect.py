"""The logic behind the ``train_anomaly_detector`` and ``detect_anomalies`` tools: prepare, train + register, or load + score, summarise.

Plain functions on DataFrames; the MCP layer only resolves paths and writes artifacts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.errors import InputError, ModelError

from .fusion import parse_contamination
from .hybrid import (
    FLAG,
    KIND,
    KIND_STATISTICAL,
    SCORE,
    SCORE_COLUMNS,
    HybridAnomalyDetector,
    HybridConfig,
    ensure_features,
    quality_mask,
)
from .metrics import ground_truth_report, truth_labels

log = logging.getLogger("bms.anomaly")

MIN_HOLDOUT_ROWS = 200


@dataclass
class DetectionResult:
    table: pd.DataFrame
    detector: HybridAnomalyDetector
    trained: bool
    model_version: str | None
    metrics: dict[str, Any] | None
    cell_summary: pd.DataFrame
    episodes: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def prepare_input(frame: pd.DataFrame, impute: str = "interpolate") -> tuple[pd.DataFrame, bool]:
    """Preprocessed output is used as it is; anything else is cleaned + imputed + featurised.

    Returns ``(frame, was_prepared_here)``.
    """
    from bms_schema.loader import load_canonical

    prepared, report = load_canonical(frame, impute=impute, return_report=True)  # keeps features already there
    return prepared.reset_index(drop=True), bool(report["features_added"])


def time_split(frame: pd.DataFrame, holdout_fraction: float) -> np.ndarray:
    """Boolean mask of training rows: readings before the ``1 - holdout_fraction`` time quantile.

    A split by time, never a random row split: the held-out rows are the latest readings of
    every cell, which the model has not seen.
    """
    if holdout_fraction <= 0:
        return np.ones(len(frame), dtype=bool)
    seconds = frame[C.TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    cut = np.quantile(np.unique(seconds), 1.0 - holdout_fraction)
    return seconds < cut


#: Prefix of a prior fleet's DeviceID and CellID in a pooled training frame (its cells never meet the user's).
PRIOR_PREFIX = "prior:"


def _has_sg(frame: pd.DataFrame) -> bool:
    return C.SPECIFIC_GRAVITY in frame.columns and bool(frame[C.SPECIFIC_GRAVITY].notna().any())


def pool_with_prior(own: pd.DataFrame, prior: pd.DataFrame, impute: str = "interpolate") -> pd.DataFrame:
    """``own`` (prepared training readings) and another fleet's readings ``prior`` in one training frame.

    A small fleet's own readings are too few to learn normal behaviour from: a 2 x 6-cell fleet over 10 days
    (11,500 readings, a few dozen of them anomalous) sets each detector's tail at its own few anomalies, and a
    0.13 V sag scores like the training data's largest normal scores. Pooled with a simulated fleet of the same
    chemistry, the peer-deviation features (which do not depend on the fleet) are learnt from both (development
    tiny fleets 75-78, F1 0.02-0.52 alone: 0.81-0.85 with a 1 x 24-cell x 30-day prior, the pipeline's, 69,120
    readings; 0.76-0.88 with 3 x 24 cells; VRLA 75-77 0.65-0.75 -> 0.88-0.90 with 3 x 24 cells).
    The prior's cells get :data:`PRIOR_PREFIX` on their ids, so no history or string spans the two fleets. Refused
    when the chemistries differ (one has specific gravity, the other not) or the readings' strings have fewer
    than 3 cells (the detector then learns each cell's own history, which another fleet cannot teach)."""
    from .features import MIN_PEERS, string_size

    if string_size(own) < MIN_PEERS:
        raise InputError(
            f"the readings' strings have {string_size(own):.0f} cell(s) per packet (fewer than {MIN_PEERS}): the "
            "detector learns each cell's own history there, which a prior fleet cannot teach; train without prior_path"
        )
    pooled, _ = prepare_input(prior, impute=impute)
    if len(pooled) == 0:
        raise InputError("the prior fleet has no readings: give a table of another fleet's readings, or no prior_path")
    if _has_sg(own) != _has_sg(pooled):
        have, lack = ("the readings", "the prior fleet") if _has_sg(own) else ("the prior fleet", "the readings")
        chemistry = "flooded" if _has_sg(own) else "vrla"
        raise InputError(
            f"{have} have CellSpecificGravity and {lack} not: simulate the prior with chemistry='{chemistry}' "
            "(the same chemistry as the readings)"
        )
    for column in (C.DEVICE_ID, C.CELL_ID):
        pooled[column] = PRIOR_PREFIX + pooled[column].astype(str)
    pooled = pooled[[c for c in own.columns if c in pooled.columns]]
    return pd.concat([pooled, own], ignore_index=True)


@dataclass
class TrainingOutcome:
    detector: HybridAnomalyDetector
    model_version: str | None
    decision: dict[str, Any] | None
    metrics: dict[str, Any] | None  # ground truth on the held-out readings (None without labels)
    info: dict[str, Any] = field(default_factory=dict)


def train_detector(
    frame: pd.DataFrame,
    *,
    contamination: float | str | None = None,
    features: list[str] | None = None,
    holdout_fraction: float = 0.3,
    seed: int = 0,
    register: bool = True,
    promote: bool = False,
    impute: str = "interpolate",
    progress: Any = None,
    prior: pd.DataFrame | None = None,
) -> TrainingOutcome:
    """Train a hybrid on the earlier readings of ``frame`` and register it as a candidate.

    The latest ``holdout_fraction`` of the time span is held out; the candidate and the current
    champion are both scored on it (hybrid F1 against ``IsAnomaly``) and the candidate becomes
    champion only when it is better (or ``promote``, or it is the first model). ``prior``: another
    fleet's readings trained on together with the earlier readings (see :func:`pool_with_prior`); the
    held-out readings are the user's only.
    """
    say = progress or (lambda fraction, message: None)
    start = time.perf_counter()
    if not 0.0 <= holdout_fraction < 0.9:
        raise InputError(f"holdout_fraction must be between 0 and 0.9, got {holdout_fraction}")
    contamination = parse_contamination(contamination) if contamination is not None else None
    say(0.05, "preparing readings")
    prepared, normalised_here = prepare_input(frame, impute=impute)
    train_mask = time_split(prepared, holdout_fraction)
    scope = f"held-out latest {holdout_fraction:.0%} of the time span (not trained on)"
    if (~train_mask).sum() < MIN_HOLDOUT_ROWS or train_mask.sum() < MIN_HOLDOUT_ROWS:
        train_mask = np.ones(len(prepared), dtype=bool)
        scope = "all rows, in-sample (nothing held out: holdout_fraction 0 or too few rows)"
    say(0.2, f"training on {int(train_mask.sum())} rows")
    config = HybridConfig(features=features, contamination=contamination or "auto", seed=seed)
    training = prepared.loc[train_mask]
    prior_rows = 0
    if prior is not None:
        say(0.15, "pooling with the prior fleet")
        pooled = pool_with_prior(training, prior, impute=impute)
        prior_rows = len(pooled) - len(training)
        training = pooled
    detector = HybridAnomalyDetector(config=config).fit(training)
    holdout = prepared.loc[~train_mask] if not train_mask.all() else prepared
    say(0.6, "scoring the held-out readings")
    candidate = detector.evaluate(holdout)
    metrics = candidate.get("report")
    if metrics is not None:
        metrics = {**metrics, "scope": scope}
    from bms_schema.model_protocol import fingerprint_frame

    from .persistence import detector_card

    columns = [c for c in (C.CELL_ID, C.TIMESTAMP, *C.CORE_COLUMNS, *detector.features) if c in prepared.columns]
    detector.card = detector_card(
        detector, candidate, holdout=scope, data_fingerprint=fingerprint_frame(prepared.loc[train_mask, columns])
    )
    version = None
    if register:
        from .persistence import register_detector

        say(0.75, "comparing with the champion and registering")
        meta = {
            "training_rows": int(train_mask.sum()),
            "prior_rows": prior_rows,
            "holdout_fraction": holdout_fraction,
            "seed": seed,
        }
        version, _ = register_detector(
            detector,
            meta,
            holdout=holdout if not train_mask.all() else None,
            promote=promote,
            candidate_metrics=candidate,
        )
    info = {
        "rows": len(prepared),
        "train_rows": int(train_mask.sum()),
        "holdout_rows": int((~train_mask).sum()),
        "prior_rows": prior_rows,
        "normalised_here": normalised_here,
        "threshold": detector.threshold,
        "features": detector.features,
        "scope": scope,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return TrainingOutcome(
        detector=detector, model_version=version, decision=detector.decision, metrics=metrics, info=info
    )


def detect(
    frame: pd.DataFrame,
    *,
    model_version: str = "champion",
    contamination: float | str | None = None,
    impute: str = "interpolate",
    progress: Any = None,
    detector: HybridAnomalyDetector | None = None,
    ground_truth: bool = True,
) -> DetectionResult:
    """Score ``frame`` (raw or preprocessed) with the registered hybrid (the champion by default).

    Never trains: with no model registered the error names ``train_anomaly_detector``.
    ``contamination=None`` keeps the model's own threshold (a value re-derives it from the
    stored training scores, no retraining). ``detector`` scores with an in-memory model instead.
    ``ground_truth=False`` skips the metrics against ``IsAnomaly`` (the Dask engine's partitions).
    """
    say = progress or (lambda fraction, message: None)
    start = time.perf_counter()
    contamination = parse_contamination(contamination) if contamination is not None else None
    if detector is None:
        from .persistence import load_detector

        say(0.05, "loading the registered model")
        detector = load_detector(model_version)
    say(0.1, "preparing readings")
    prepared, normalised_here = prepare_input(frame, impute=impute)
    info: dict[str, Any] = {"rows": len(prepared), "normalised_here": normalised_here}
    _, _, missing = ensure_features(prepared, detector.features)
    if missing:
        raise ModelError(
            f"registered model anomaly_hybrid {detector.model_version} was trained on feature(s) "
            f"{', '.join(missing)} that the data does not have (model features: {', '.join(detector.features)}); "
            "score data prepared the same way, or train a model on it with train_anomaly_detector"
        )
    say(0.5, "scoring")
    result = detector.score(prepared, contamination=contamination)
    table = pd.concat([prepared.drop(columns=[c for c in result.columns if c in prepared.columns]), result], axis=1)
    metrics = None
    truth = truth_labels(prepared) if ground_truth else None
    if truth is not None:
        metrics = evaluate(detector, prepared, result, truth)
        metrics["scope"] = "all rows (the model may have been trained on some of them)"
    threshold = detector.threshold_for(contamination)
    cell_summary, episodes = summarise(table, threshold)
    info.update(
        {
            "threshold": threshold,
            "flagged": int(result[FLAG].sum()),
            "kinds": {str(k): int(v) for k, v in result[KIND].value_counts().items()},
            "features": detector.features,
            "dead_cells": dead_cells_records(detector),
            "failing_cells": failing_cells_records(detector),
            "seconds": round(time.perf_counter() - start, 3),
        }
    )
    return DetectionResult(
        table=table,
        detector=detector,
        trained=False,
        model_version=detector.model_version,
        metrics=metrics,
        cell_summary=cell_summary,
        episodes=episodes,
        info=info,
    )


def evaluate(
    detector: HybridAnomalyDetector, frame: pd.DataFrame, result: pd.DataFrame, truth: np.ndarray
) -> dict[str, Any]:
    """Ground-truth metrics of a scored table (raw detector scores recomputed for the seed rule)."""
    raw = detector.raw_scores(frame)
    anomaly_type = frame["AnomalyType"] if "AnomalyType" in frame.columns else None
    return ground_truth_report(
        truth,
        result.reset_index(drop=True),
        detector.detector_flags(result, frame),
        SCORE_COLUMNS,
        raw,
        quality_mask(frame, C.SENSOR_FAULT),
        quality_mask(frame, C.OUT_OF_RANGE),
        anomaly_type.reset_index(drop=True) if anomaly_type is not None else None,
        dead=truth_labels(frame, "IsDead"),
    )


def dead_cells_records(detector: HybridAnomalyDetector) -> list[dict[str, Any]]:
    """The cells the last ``score`` recognised as dead: one record each (cell, since, recognised at, reason)."""
    dead = detector.last_dead
    if dead is None or dead.table.empty:
        return []
    table = dead.table.copy()
    for col in ("dead_since", "recognised_at"):
        table[col] = table[col].astype(str)
    return table.to_dict(orient="records")


def failing_cells_records(detector: HybridAnomalyDetector) -> list[dict[str, Any]]:
    """Living cells the last ``score`` saw drifting from their peers for a day (since, why; dead since if they died)."""
    failing = detector.last_failing
    if failing is None or failing.table.empty:
        return []
    table = failing.table.copy()
    for col in ("failing_since", "recognised_at", "dead_since"):
        table[col] = table[col].astype(str).replace("NaT", "")
    return table.to_dict(orient="records")


def summarise(table: pd.DataFrame, threshold: float, top: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cell anomaly rates and the worst episodes (runs of consecutive flagged readings of a cell)."""
    ordered = table.sort_values([C.CELL_ID, C.TIMESTAMP], kind="stable")
    cell = ordered[C.CELL_ID].to_numpy()
    flag = ordered[FLAG].to_numpy().astype(bool)
    new_cell = np.r_[True, cell[1:] != cell[:-1]]
    starts = flag & (new_cell | ~np.r_[False, flag[:-1]])
    episode_id = np.cumsum(starts)
    episode_id[~flag] = 0
    kind = ordered[KIND].to_numpy()
    counts = pd.DataFrame(
        {
            C.CELL_ID: cell,
            "flagged": flag.astype(np.int64),
            "statistical": (kind == KIND_STATISTICAL).astype(np.int64),
            "sensor_fault": (kind == "sensor_fault").astype(np.int64),
            "out_of_range": (kind == "out_of_range").astype(np.int64),
            "episodes": starts.astype(np.int64),
            SCORE: ordered[SCORE].to_numpy(),
        }
    )
    grouped = counts.groupby(C.CELL_ID, sort=True)
    summary = grouped[["flagged", "statistical", "sensor_fault", "out_of_range", "episodes"]].sum()
    summary.insert(0, "readings", grouped.size())
    summary["max_score"] = grouped[SCORE].max()
    summary["mean_score"] = grouped[SCORE].mean()
    summary["anomaly_rate"] = summary["flagged"] / summary["readings"]
    summary = summary.sort_values(["anomaly_rate", "max_score"], ascending=False).reset_index()

    if flag.any():
        runs = ordered.loc[flag].assign(_episode=episode_id[flag])
        g = runs.groupby("_episode", sort=False)
        episodes = pd.DataFrame(
            {
                C.CELL_ID: g[C.CELL_ID].first(),
                "start": g[C.TIMESTAMP].min(),
                "end": g[C.TIMESTAMP].max(),
                "readings": g.size(),
                "peak_score": g[SCORE].max(),
                "kind": g[KIND].first(),
                "reason": g["AnomalyReason"].first(),
            }
        )
        episodes = episodes.sort_values(["peak_score", "readings"], ascending=False).head(top).reset_index(drop=True)
    else:
        episodes = pd.DataFrame(columns=[C.CELL_ID, "start", "end", "readings", "peak_score", "kind", "reason"])
    return summary, episodes


def worst_cells(summary: pd.DataFrame, n: int) -> list[str]:
    """Cells with the most statistical anomalies (then highest peak score)."""
    ranked = summary.sort_values(["statistical", "max_score"], ascending=False)
    return ranked[C.CELL_ID].head(n).astype(str).tolist()
