"""How each served model is loaded from the registry, and the interface the service expects.

The service calls the models' own in-process APIs; nothing here re-implements a model.
Each loader takes a resolved version (``"v0003"``) and the registry, and returns the
object the endpoint calls. The interfaces (duck-typed):

* ``anomaly`` (``anomaly_hybrid``, :func:`bms_anomaly.persistence.load_detector`):
  ``features: list[str]``, ``reference: DataFrame | None`` (training sample of those
  features, for drift), ``score(frame) -> DataFrame`` with ``AnomalyScore``,
  ``AnomalyFlag``, ``AnomalyKind``, ``AnomalyReason`` and one ``*Score`` column per detector.
* ``failure`` (``failure_classifier``): ``predict(history) -> DataFrame`` with one row per
  cell: ``DeviceID``, ``CellNumber``, ``FailureProbability``, ``RiskBand``, ``TopReasons``.
* ``forecast`` (``forecaster``): ``forecast(history, cell_id, steps, coverage) -> DataFrame``
  long table ``Timestamp, Target, Step, Forecast, Lower, Upper``.
"""

from __future__ import annotations

from typing import Any

from bms_schema.registry import ModelRegistry

from .holder import Loader, ModelSpec

ANOMALY_MODEL = "anomaly_hybrid"
FAILURE_MODEL = "failure_classifier"
FORECAST_MODEL = "forecaster"


def load_anomaly(version: str, registry: ModelRegistry) -> Any:
    from bms_anomaly.persistence import load_detector

    return load_detector(version, registry=registry, cache=False)


def load_failure(version: str, registry: ModelRegistry) -> Any:
    from bms_failure.model import load_failure_model

    return load_failure_model(version, registry=registry)


def load_forecast(version: str, registry: ModelRegistry) -> Any:
    from bms_forecast.persistence import load_forecaster

    return load_forecaster(version, registry=registry)


DEFAULT_LOADERS: dict[str, tuple[str, Loader]] = {
    "anomaly": (ANOMALY_MODEL, load_anomaly),
    "failure": (FAILURE_MODEL, load_failure),
    "forecast": (FORECAST_MODEL, load_forecast),
}


def model_specs(keys: tuple[str, ...], overrides: dict[str, Loader] | None = None) -> list[ModelSpec]:
    """The spec of each served model; ``overrides`` swaps in other loaders (used by tests)."""
    specs = []
    for key in keys:
        name, loader = DEFAULT_LOADERS[key]
        specs.append(ModelSpec(key=key, registry_name=name, loader=(overrides or {}).get(key, loader)))
    return specs
