"""bms_anomaly: hybrid anomaly detection on BMS readings (Isolation Forest + one-class SVM + VAE).

Public API (imported lazily so the MCP server starts fast)::

    from bms_anomaly import HybridAnomalyDetector, load_detector, register_detector
    detector = load_detector("latest")          # registered anomaly_hybrid, cached in memory
    result = detector.score(readings)           # AnomalyScore, AnomalyFlag, AnomalyKind, AnomalyReason
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "HybridAnomalyDetector": "hybrid",
    "HybridConfig": "hybrid",
    "OUTPUT_COLUMNS": "hybrid",
    "load_detector": "persistence",
    "register_detector": "persistence",
    "MODEL_NAME": "persistence",
    "detect": "detect",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'bms_anomaly' has no attribute {name!r}")
