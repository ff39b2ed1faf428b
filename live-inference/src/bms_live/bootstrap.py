"""First models for a fresh install, trained on the embedded simulated fleet with each model
package's own training functions (``bms setup`` calls :func:`train_first_models`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from bms_schema.registry import ModelRegistry

log = logging.getLogger("bms.setup")

#: The simulated fleet the first models learn from: small enough to train in about a minute on
#: two cores, long enough (14 days, some cells failing) for the failure model's windows.
FIRST_FLEET = {"devices": 2, "cells_per_device": 8, "days": 14, "interval_minutes": 30, "seed": 3, "failure_rate": 0.5}


def first_fleet(**overrides: Any) -> pd.DataFrame:
    from bms_datagen.simulator import simulate_fleet

    return simulate_fleet(**{**FIRST_FLEET, **overrides})


def train_first_models(
    registry: ModelRegistry,
    raw: pd.DataFrame | None = None,
    models: tuple[str, ...] = ("anomaly", "failure", "forecast"),
    progress: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Train and register ``anomaly_hybrid``, ``failure_classifier`` and ``forecaster`` on ``raw``
    (default: :data:`FIRST_FLEET`); returns the registered version of each."""
    say = progress or (lambda message: log.info("%s", message))
    from bms_schema.loader import load_canonical

    raw = first_fleet() if raw is None else raw
    versions: dict[str, str] = {}
    if "anomaly" in models:
        from bms_anomaly.detectors import ForestConfig
        from bms_anomaly.hybrid import HybridAnomalyDetector, HybridConfig
        from bms_anomaly.persistence import register_detector
        from bms_anomaly.vae import VAEConfig

        say("training the anomaly detector (isolation forest, one-class SVM, VAE)")
        config = HybridConfig(seed=0, vae=VAEConfig(epochs=5), forest=ForestConfig(n_estimators=50))
        detector = HybridAnomalyDetector(config=config).fit(load_canonical(raw))
        versions["anomaly_hybrid"], _ = register_detector(detector, registry=registry)
    if "failure" in models:
        from bms_failure.api import train_and_register

        say("training the failure model (XGBoost, calibrated)")
        cleaned = load_canonical(raw, features=False, impute="none")
        result = train_and_register(cleaned, horizon_days=2, registry=registry)
        versions["failure_classifier"] = str(
            getattr(result.model, "version", None) or registry.latest_version("failure_classifier")
        )
    if "forecast" in models:
        from bms_forecast.config import TrainConfig
        from bms_forecast.persistence import save_forecaster
        from bms_forecast.training import fit_forecaster

        say("training the forecaster (XGBoost per target)")
        forecaster, report = fit_forecaster(
            raw, TrainConfig(n_estimators=40, max_train_pairs=20_000, max_backtest_origins=200)
        )
        versions["forecaster"], _ = save_forecaster(forecaster, report, registry=registry)
    return versions


def registry_for(workspace: Path) -> ModelRegistry:
    return ModelRegistry(workspace / "models")
