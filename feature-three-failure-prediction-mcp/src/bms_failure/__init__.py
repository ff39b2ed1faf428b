"""bms_failure: which battery cells will fail and when (one discrete-time hazard survival model over weeks-long trends).

Public API (imported lazily, so ``import bms_failure`` stays cheap for the MCP server)::

    from bms_failure import load_failure_model, predict_failure, train_and_register
    model = load_failure_model()                  # the champion; any horizon
    table = model.predict(history_frame)           # per-cell risk, remaining life, alarms; no labels needed
"""

from __future__ import annotations

from bms_schema.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "load_failure_model": "bms_failure.model",
        "FailureModel": "bms_failure.model",
        "predict_failure": "bms_failure.api",
        "train_and_register": "bms_failure.api",
        "load_readings_frame": "bms_failure.api",
        "train_failure_model": "bms_failure.training",
        "build_feature_grid": "bms_failure.features",
        "FeatureConfig": "bms_failure.config",
        "FEATURES": "bms_failure.config",
        "HazardCurve": "bms_failure.survival",
        "trend_to_threshold": "bms_failure.trends",
        "MODEL_NAME": "bms_failure.config",
    },
)
