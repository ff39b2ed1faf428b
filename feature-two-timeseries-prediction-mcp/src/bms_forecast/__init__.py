"""bms_forecast: global XGBoost forecasts of BMS cell readings (per-target models, conformal intervals).

Public API (imported lazily, so ``import bms_forecast`` stays cheap)::

    from bms_forecast import load_forecaster
    forecaster = load_forecaster("latest")            # registered model, cached per version
    table = forecaster.forecast(history, "A-3", 25)   # Timestamp, Target, Step, Forecast, Lower, Upper

    from bms_forecast import fit_forecaster, train_and_register, TrainConfig
"""

from __future__ import annotations

from bms_schema.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "load_forecaster": ".persistence",
        "save_forecaster": ".persistence",
        "Forecaster": ".model",
        "FORECAST_COLUMNS": ".model",
        "fit_forecaster": ".training",
        "train_and_register": ".service",
        "forecast_cell": ".service",
        "load_history": ".service",
        "TrainConfig": ".config",
        "TARGETS": ".config",
        "MODEL_NAME": ".config",
    },
)
