"""Remember recent predictions and score them against ground truth sent back later.

Every ``/v1/anomaly`` and ``/v1/failure`` answer carries one ``prediction_id`` per row
(``"<batch>-<row>"``). :class:`PredictionStore` keeps the predicted positive/negative call
of each row in bounded memory (whole batches as arrays; the oldest batches are dropped
once more than ``capacity`` rows are held). ``/v1/feedback`` sends ``{prediction_id,
actual}`` pairs; :class:`FeedbackTracker` keeps the last ``window`` labelled predictions
per model (sending feedback twice for one id replaces the first) and computes rolling
precision, recall, F1 and accuracy from the confusion counts.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PredictionBatch:
    batch_id: str
    model: str
    version: str
    predicted: np.ndarray  # bool per row: the positive call (anomaly flagged / failure alarm)
    score: np.ndarray  # float per row: the score behind the call
    created: datetime

    def ids(self) -> list[str]:
        return [f"{self.batch_id}-{i}" for i in range(len(self.predicted))]


@dataclass(frozen=True)
class StoredPrediction:
    prediction_id: str
    model: str
    version: str
    predicted: bool
    score: float


class PredictionStore:
    """Bounded in-memory store of recent predictions, addressed by prediction id."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._batches: OrderedDict[str, PredictionBatch] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._rows

    def add(self, model: str, version: str, predicted: np.ndarray, score: np.ndarray) -> PredictionBatch:
        batch = PredictionBatch(
            batch_id=secrets.token_hex(6),
            model=model,
            version=version,
            predicted=np.asarray(predicted, dtype=bool).copy(),
            score=np.asarray(score, dtype=float).copy(),
            created=datetime.now(timezone.utc),
        )
        with self._lock:
            self._batches[batch.batch_id] = batch
            self._rows += len(batch.predicted)
            while self._rows > self.capacity and len(self._batches) > 1:
                _, dropped = self._batches.popitem(last=False)
                self._rows -= len(dropped.predicted)
        return batch

    def get(self, prediction_id: str) -> StoredPrediction | None:
        batch_id, sep, row = str(prediction_id).rpartition("-")
        if not sep or not row.isdigit():
            return None
        batch = self._batches.get(batch_id)
        index = int(row)
        if batch is None or index >= len(batch.predicted):
            return None
        return StoredPrediction(
            prediction_id, batch.model, batch.version, bool(batch.predicted[index]), float(batch.score[index])
        )


def classification_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Confusion counts and precision/recall/F1/accuracy (``None`` where undefined)."""
    p = np.asarray(predicted, dtype=bool)
    a = np.asarray(actual, dtype=bool)
    tp = int(np.sum(p & a))
    fp = int(np.sum(p & ~a))
    fn = int(np.sum(~p & a))
    tn = int(np.sum(~p & ~a))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    n = tp + fp + fn + tn
    return {
        "n": n,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / n if n else None,
    }


class FeedbackTracker:
    """Rolling precision/recall per model over the last ``window`` labelled predictions."""

    def __init__(self, window: int):
        self.window = window
        self._items: dict[str, OrderedDict[str, tuple[bool, bool]]] = {}
        #: the same per (model, version): "is the served version getting worse" needs its own figures
        self._by_version: dict[tuple[str, str], OrderedDict[str, tuple[bool, bool]]] = {}
        self._lock = threading.Lock()

    def record(self, prediction: StoredPrediction, actual: bool) -> None:
        with self._lock:
            for items in (
                self._items.setdefault(prediction.model, OrderedDict()),
                self._by_version.setdefault((prediction.model, prediction.version), OrderedDict()),
            ):
                items.pop(prediction.prediction_id, None)
                items[prediction.prediction_id] = (prediction.predicted, bool(actual))
                while len(items) > self.window:
                    items.popitem(last=False)

    def version_metrics(self, model: str, version: str) -> dict[str, Any]:
        """Rolling figures of one served version (``n == 0`` when it has no feedback yet)."""
        with self._lock:
            pairs = list(self._by_version.get((model, version), OrderedDict()).values())
        arr = np.asarray(pairs, dtype=bool).reshape(-1, 2)
        return {"window": self.window, **classification_metrics(arr[:, 0], arr[:, 1])}

    def metrics(self, model: str | None = None) -> dict[str, dict[str, Any]]:
        with self._lock:
            snapshot = {m: list(items.values()) for m, items in self._items.items() if model in (None, m)}
            versions = {m: sorted({v for (k, v) in self._by_version if k == m}) for m in snapshot}
        out: dict[str, dict[str, Any]] = {}
        for name, pairs in snapshot.items():
            arr = np.asarray(pairs, dtype=bool).reshape(-1, 2)
            out[name] = {
                "window": self.window,
                **classification_metrics(arr[:, 0], arr[:, 1]),
                "by_version": {v: self.version_metrics(name, v) for v in versions[name]},
            }
        return out


#: Feedback items a served version needs before its live F1 is compared with its held-out F1.
MIN_FEEDBACK_FOR_TREND = 30
#: Live F1 this far below the held-out F1 of the model card counts as "getting worse".
WORSE_BY = 0.1


def served_health(version_metrics: dict[str, Any], holdout: dict[str, Any] | None) -> dict[str, Any]:
    """Is the served version getting worse: its live F1 (feedback) against its held-out F1 (model card)."""
    f1_holdout = (holdout or {}).get("f1")
    live, n = version_metrics.get("f1"), int(version_metrics.get("n", 0))
    out: dict[str, Any] = {"live": version_metrics, "holdout_f1": f1_holdout, "getting_worse": None}
    if n < MIN_FEEDBACK_FOR_TREND:
        out["reason"] = f"{n} feedback items for this version (need {MIN_FEEDBACK_FOR_TREND})"
    elif f1_holdout is None or live is None:
        out["reason"] = "no F1 to compare (no held-out F1 in the model card, or no positive in the feedback)"
    else:
        out["getting_worse"] = bool(live < f1_holdout - WORSE_BY)
        out["reason"] = (
            f"live F1 {live:.3f} over the last {n} feedback items vs held-out F1 {f1_holdout:.3f} "
            f"({'more' if out['getting_worse'] else 'not more'} than {WORSE_BY} below)"
        )
    return out
