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

import importlib
from typing import Any

from bms_schema.errors import ModelError
from bms_schema.registry import ModelRegistry

from .holder import Loader, ModelSpec

ANOMALY_MODEL = "anomaly_hybrid"
FAILURE_MODEL = "failure_classifier"
FORECAST_MODEL = "forecaster"


def _find(candidates: list[tuple[str, str]], what: str) -> Any:
    """The first importable ``module:function`` of ``candidates`` (the packages are developed
    alongside this service; this keeps the service working across their refactors)."""
    tried = []
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            tried.append(f"{module_name}.{attr}")
            continue
        if hasattr(module, attr):
            return getattr(module, attr)
        tried.append(f"{module_name}.{attr}")
    raise ModelError(f"cannot load the {what} model: none of {', '.join(tried)} is available (is the package installed?)")


def load_anomaly(version: str, registry: ModelRegistry) -> Any:
    load_detector = _find([("bms_anomaly.persistence", "load_detector"), ("bms_anomaly", "load_detector")], "anomaly")
    return load_detector(version, registry=registry, cache=False)


def load_failure(version: str, registry: ModelRegistry) -> Any:
    loader = _find([("bms_failure.persistence", "load_failure_model"), ("bms_failure.model", "load_failure_model"),
                    ("bms_failure", "load_failure_model")], "failure")
    return loader(version, registry=registry)


def load_forecast(version: str, registry: ModelRegistry) -> Any:
    loader = _find([("bms_forecast.persistence", "load_forecaster"), ("bms_forecast.model", "load_forecaster"),
                    ("bms_forecast", "load_forecaster")], "forecast")
    return loader(version, registry=registry)


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
