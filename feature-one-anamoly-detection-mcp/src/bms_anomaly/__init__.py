"""bms_anomaly: hybrid anomaly detection on BMS readings (Isolation Forest + one-class SVM + VAE).

Public API (imported lazily so the MCP server starts fast)::

    from bms_anomaly import HybridAnomalyDetector, load_detector, register_detector
    detector = load_detector("latest")          # registered anomaly_hybrid, cached in memory
    result = detector.score(readings)           # AnomalyScore, AnomalyFlag, AnomalyKind, AnomalyReason
"""

from __future__ import annotations

from bms_schema.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "HybridAnomalyDetector": ".hybrid",
        "HybridConfig": ".hybrid",
        "OUTPUT_COLUMNS": ".hybrid",
        "load_detector": ".persistence",
        "register_detector": ".persistence",
        "MODEL_NAME": ".persistence",
        "detect": ".detect",
    },
)
