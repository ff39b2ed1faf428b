"""Ground-truth metrics: precision, recall, F1 and PR-AUC per detector, for the hybrid and a baseline.

The baseline is the seed project's rule: min-max normalise each detector's raw score on
the data, sum them, and flag the top 5 %.

Two comparisons are reported when ``IsAnomaly`` is present:

- ``detectors`` (the like-for-like one): rows whose readings exist and are possible
  (neither ``SensorFault`` nor ``OutOfRange``) of cells that are alive (``IsDead`` is not 1;
  the simulator labels anomalies only on alive cells, and a dead cell's readings are a
  failure - the failure-prediction label - rather than an unlabelled false alarm; the
  same rows including dead cells are reported as ``including_dead_cells``). Each single detector flags with the same
  threshold rule as the hybrid's statistical flag (its own calibrated training scores and
  the same ``contamination``); PR-AUC uses the calibrated scores.
- ``hybrid_with_cleaning_flags``: every row with a reading (not a 0xFFFF dropout), using
  the final ``AnomalyFlag``, which adds the rows cleaning marked out of range (impossible
  values are real sensor anomalies the detectors cannot see after imputation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SEED_RULE_TOP = 0.05


#: Fewer labelled anomalous readings than this in an evaluation: its precision/recall/F1 are reported but
#: flagged as not meaningful (on a 2 x 6-cell, 10-day fleet the held-out 30 % holds ~35 anomalous readings,
#: a handful of events, and its F1 swings by +/- 0.3 from one seed to the next).
MIN_EVAL_POSITIVES = 100


def support_note(metrics: dict[str, Any]) -> str:
    """``""``, or why the figures in ``metrics`` (from :func:`binary_metrics`) are too few to judge a model by."""
    positives = int(metrics.get("anomalous_readings", MIN_EVAL_POSITIVES))
    if positives >= MIN_EVAL_POSITIVES:
        return ""
    return (
        f"only {positives} labelled anomalous reading(s) in the evaluation (fewer than {MIN_EVAL_POSITIVES}): "
        "too few for a meaningful precision/recall/F1; evaluate on a larger or longer fleet"
    )


def binary_metrics(truth: np.ndarray, flags: np.ndarray, scores: np.ndarray | None = None) -> dict[str, Any]:
    truth = np.asarray(truth).astype(bool)
    flags = np.asarray(flags).astype(bool)
    tp = int(np.sum(truth & flags))
    fp = int(np.sum(~truth & flags))
    fn = int(np.sum(truth & ~flags))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out: dict[str, Any] = {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "flagged": int(flags.sum()),
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "anomalous_readings": tp + fn,
        "meaningful": tp + fn >= MIN_EVAL_POSITIVES,
    }
    if scores is not None:
        out["pr_auc"] = round(pr_auc(truth, scores), 4)
    return out


def pr_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); NaN without positives."""
    truth = np.asarray(truth).astype(bool)
    if truth.sum() == 0 or truth.sum() == len(truth):
        return float("nan")
    from sklearn.metrics import average_precision_score

    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    return float(average_precision_score(truth, scores))


def seed_rule(raw_scores: np.ndarray, top: float = SEED_RULE_TOP) -> tuple[np.ndarray, np.ndarray]:
    """The seed's rule: min-max normalise each column, sum, flag the top ``top`` share."""
    raw_scores = np.asarray(raw_scores, dtype=np.float64)
    low = np.nanmin(raw_scores, axis=0)
    span = np.nanmax(raw_scores, axis=0) - low
    span[span == 0] = 1.0
    total = ((raw_scores - low) / span).sum(axis=1)
    threshold = np.quantile(total, 1.0 - top)
    return total, total > threshold


def truth_labels(frame: pd.DataFrame, column: str = "IsAnomaly") -> np.ndarray | None:
    """A 0/1, true/false or text label column as booleans (``None`` when absent)."""
    if column not in frame.columns:
        return None
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        return raw.fillna(False).to_numpy(dtype=bool)
    text = raw.astype("string").str.strip().str.lower()
    return text.isin(["1", "1.0", "true", "yes"]).to_numpy()


def ground_truth_report(
    truth: np.ndarray,
    result: pd.DataFrame,
    detector_flags: dict[str, np.ndarray],
    score_columns: dict[str, str],
    raw_scores: np.ndarray,
    sensor: np.ndarray,
    out_of_range: np.ndarray,
    anomaly_type: pd.Series | None = None,
    dead: np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics for one scored table (see the module docstring)."""
    dead = np.zeros(len(truth), dtype=bool) if dead is None else np.asarray(dead, dtype=bool)
    readable = ~sensor & ~out_of_range
    clean = readable & ~dead
    y = truth[clean]
    statistical = (result["AnomalyKind"].to_numpy() == "statistical")[clean]
    detectors = {
        name: binary_metrics(y, flags[clean], result[score_columns[name]].to_numpy()[clean])
        for name, flags in detector_flags.items()
    }
    hybrid = binary_metrics(y, statistical, result["AnomalyScore"].to_numpy()[clean])
    seed_total, seed_flags = seed_rule(raw_scores[clean])
    baseline = binary_metrics(y, seed_flags, seed_total)
    best_single = max(m["f1"] for m in detectors.values())
    with_readings = ~sensor
    report: dict[str, Any] = {
        "rows_evaluated": int(clean.sum()),
        "true_anomalies": int(y.sum()),
        "detectors": detectors,
        "hybrid": hybrid,
        "seed_rule_top5pct": baseline,
        "hybrid_f1_gain_over_best_single": round(hybrid["f1"] - best_single, 4),
        "hybrid_with_cleaning_flags": binary_metrics(
            truth[with_readings & ~dead], result["AnomalyFlag"].to_numpy()[with_readings & ~dead]
        ),
        "including_dead_cells": {
            "rows": int(readable.sum()),
            "hybrid": binary_metrics(
                truth[readable],
                (result["AnomalyKind"].to_numpy() == "statistical")[readable],
                result["AnomalyScore"].to_numpy()[readable],
            ),
            "detectors": {
                name: binary_metrics(truth[readable], flags[readable], result[score_columns[name]].to_numpy()[readable])
                for name, flags in detector_flags.items()
            },
        },
        "dead_cell_rows": int(dead.sum()),
        "sensor_fault_rows": int(sensor.sum()),
        "out_of_range_rows": int(out_of_range.sum()),
    }
    if anomaly_type is not None:
        types = anomaly_type.astype("string").fillna("").to_numpy()
        flagged = result["AnomalyFlag"].to_numpy().astype(bool)
        recall_by_type = {}
        for name in sorted(set(types[truth]) - {""}):
            mask = truth & (types == name) & with_readings
            if mask.any():
                recall_by_type[str(name)] = {"rows": int(mask.sum()), "recall": round(float(flagged[mask].mean()), 4)}
        report["recall_by_type"] = recall_by_type
    return report
