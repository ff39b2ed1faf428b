"""Prometheus text exposition (format 0.0.4) without a client library.

Three metric kinds are enough for the service: :class:`Counter`, :class:`Gauge` and
:class:`Histogram`, each with optional labels. Histograms take whole arrays at once
(``observe_many``: one ``searchsorted`` + ``bincount`` per batch), so recording the
1,000 scores of a batch costs microseconds. Every metric is thread-safe (one lock per
metric; the service's request handlers run in a thread pool).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request latency buckets in seconds: 0.5 ms .. 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: Buckets for scores and probabilities living in [0, 1].
UNIT_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str] | None) -> tuple[str, ...]:
        labels = labels or {}
        if set(labels) != set(self.label_names):
            raise ValueError(f"metric {self.name} takes labels {self.label_names}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def render(self) -> list[str]:
        return self.header() + self.samples()


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        super().__init__(name, help_text, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} can only go up (got {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_format_labels(self.label_names, k)} {_format_value(v)}" for k, v in items]


class Gauge(_Metric):
    """A value that goes up and down (set to the latest)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        super().__init__(name, help_text, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def remove(self, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values.pop(key, None)

    def value(self, **labels: str) -> float | None:
        return self._values.get(self._key(labels))

    def label_sets(self) -> list[tuple[str, ...]]:
        """The label values of every series currently set (a snapshot)."""
        with self._lock:
            return list(self._values)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_format_labels(self.label_names, k)} {_format_value(v)}" for k, v in items]


class Histogram(_Metric):
    """Cumulative bucket counts, sum and count per label set."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Iterable[float], labels: Sequence[str] = ()):
        super().__init__(name, help_text, labels)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name}: buckets must be distinct and non-empty")
        self.bounds = np.asarray(bounds, dtype=float)
        # per label set: [counts per bucket (non-cumulative, last = +Inf)], sum
        self._counts: dict[tuple[str, ...], np.ndarray] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, **labels: str) -> None:
        self.observe_many(np.asarray([value], dtype=float), **labels)

    def observe_many(self, values: np.ndarray | Sequence[float], **labels: str) -> None:
        """Record many observations at once (NaN values are ignored)."""
        arr = np.asarray(values, dtype=float).ravel()
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            return
        key = self._key(labels)
        # "le" semantics: a value equal to a bound falls in that bound's bucket.
        index = np.searchsorted(self.bounds, arr, side="left")
        counts = np.bincount(index, minlength=len(self.bounds) + 1)
        total = float(arr.sum())
        with self._lock:
            current = self._counts.get(key)
            if current is None:
                self._counts[key] = counts.astype(np.int64)
                self._sums[key] = total
            else:
                current += counts
                self._sums[key] += total

    def snapshot(self, **labels: str) -> tuple[np.ndarray, float, int]:
        """(cumulative counts per bound incl. +Inf, sum, count) for one label set."""
        key = self._key(labels)
        with self._lock:
            counts = self._counts.get(key, np.zeros(len(self.bounds) + 1, dtype=np.int64)).copy()
            total = self._sums.get(key, 0.0)
        cumulative = np.cumsum(counts)
        return cumulative, total, int(cumulative[-1])

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, v.copy(), self._sums[k]) for k, v in self._counts.items())
        lines: list[str] = []
        for key, counts, total in items:
            cumulative = np.cumsum(counts)
            for bound, count in zip(list(self.bounds) + [math.inf], cumulative):
                le = f'le="{_format_value(bound)}"'
                lines.append(f"{self.name}_bucket{_format_labels(self.label_names, key, le)} {int(count)}")
            lines.append(f"{self.name}_sum{_format_labels(self.label_names, key)} {_format_value(total)}")
            lines.append(f"{self.name}_count{_format_labels(self.label_names, key)} {int(cumulative[-1])}")
        return lines


_M = TypeVar("_M", bound=_Metric)


class MetricsRegistry:
    """A named collection of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def add(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class ServiceMetrics:
    """The metrics of the live service (one instance per app)."""

    def __init__(self) -> None:
        self.registry = MetricsRegistry()
        add = self.registry.add
        self.requests = add(
            Counter(
                "bms_live_requests_total",
                "HTTP requests by route, method and status code",
                ("route", "method", "status"),
            )
        )
        self.latency = add(
            Histogram("bms_live_request_duration_seconds", "HTTP request latency by route", LATENCY_BUCKETS, ("route",))
        )
        self.readings = add(Counter("bms_live_readings_total", "Readings (rows) scored, by model", ("model",)))
        self.predictions = add(
            Counter(
                "bms_live_predictions_total",
                "Predictions by model and outcome (flag or risk band)",
                ("model", "outcome"),
            )
        )
        self.anomaly_score = add(
            Histogram(
                "bms_live_anomaly_score", "Fused anomaly score of each reading (0..1)", UNIT_BUCKETS, ("version",)
            )
        )
        self.failure_probability = add(
            Histogram(
                "bms_live_failure_probability",
                "Failure probability within the horizon of each cell",
                UNIT_BUCKETS,
                ("version",),
            )
        )
        self.forecast_interval = add(
            Histogram(
                "bms_live_forecast_relative_interval_width",
                "Forecast interval width (Upper - Lower) relative to |Forecast|: lower is more confident",
                (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
                ("target",),
            )
        )
        self.model_info = add(Gauge("bms_live_model_info", "Served model version (value 1)", ("model", "version")))
        self.model_loaded = add(
            Gauge("bms_live_model_loaded_timestamp_seconds", "Unix time the served version was loaded", ("model",))
        )
        self.model_reloads = add(
            Counter("bms_live_model_reloads_total", "Model load attempts by result", ("model", "result"))
        )
        self.drift_flagged = add(
            Gauge("bms_live_drift_flagged_features", "Features flagged as drifted at the last drift check", ("model",))
        )
        self.feedback_precision = add(
            Gauge("bms_live_feedback_precision", "Rolling precision from ground-truth feedback", ("model",))
        )
        self.feedback_recall = add(
            Gauge("bms_live_feedback_recall", "Rolling recall from ground-truth feedback", ("model",))
        )
        self.feedback_items = add(
            Counter("bms_live_feedback_total", "Ground-truth feedback items received", ("model",))
        )

    def render(self) -> str:
        return self.registry.render()
