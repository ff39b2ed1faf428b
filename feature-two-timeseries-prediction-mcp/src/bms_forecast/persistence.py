"""Save a forecaster into the model registry and load it back (XGBoost UBJ + JSON only).

Layout of ``models/forecaster/<version>/``: ``<Target>.direct.ubj`` and/or ``<Target>.recursive.ubj``
boosters per target (those its strategy uses),
``intervals.json`` (conformal residual quantiles per target and step), ``backtest.json`` (the
full per-horizon backtest) and ``metadata.json`` (targets, strategies, features, summary
metrics, training-data fingerprint, configuration, library versions; written by the registry).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bms_schema import ModelError, ModelRegistry
from bms_schema.atomic import atomic_write_json
from bms_schema.runtime import compute_threads, versions

from .config import MODEL_NAME, QUANTILE_LEVELS, WINDOW
from .model import Forecaster, TargetModel

log = logging.getLogger("bms.forecast")

KIND = "bms_forecast.Forecaster"
FORMAT = 2
_CACHE: dict[tuple[str, str], Forecaster] = {}
_CACHE_LOCK = threading.Lock()


def summary_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The compact per-target metrics kept in ``metadata.json`` (the full table is ``backtest.json``)."""
    keep = ("strategy", "test_origins", "coverage_nominal", "coverage", "summary", "beats_naive_last_at",
            "beats_naive_seasonal_at", "strategy_selection", "mase_scale")
    return {target: {k: m[k] for k in keep if k in m} for target, m in report["metrics"].items()}


def save_forecaster(forecaster: Forecaster, report: dict[str, Any], registry: ModelRegistry | None = None,
                    extra: dict[str, Any] | None = None) -> tuple[str, Path]:
    """Register ``forecaster`` as a new version of ``forecaster``; returns ``(version, folder)``."""
    registry = registry or ModelRegistry()
    metadata = {
        "kind": KIND,
        "format": FORMAT,
        "targets": forecaster.targets,
        "strategies": {t: m.strategy for t, m in forecaster.models.items()},
        "recursive_steps": {t: m.recursive_steps for t, m in forecaster.models.items()},
        "delta_scales": {t: m.delta_scales for t, m in forecaster.models.items()},
        "max_steps": forecaster.max_steps,
        "skipped_targets": report.get("skipped_targets", {}),
        "window": WINDOW,
        "quantile_levels": list(QUANTILE_LEVELS),
        "metrics": summary_metrics(report),
        "features": report["features"],
        "training_data": report["training_data"],
        "config": report["config"],
        "timings": report["timings"],
        "library_versions": versions("xgboost", "numpy", "pandas"),
        **(extra or {}),
    }
    with registry.register(MODEL_NAME, metadata) as staging:
        files: dict[str, dict[str, str]] = {}
        for target, model in forecaster.models.items():
            for strategy, booster in model.boosters.items():
                name = f"{target}.{strategy}.ubj"
                booster.save_model(str(staging.dir / name))
                files.setdefault(target, {})[strategy] = name
        atomic_write_json(staging.dir / "intervals.json",
                          {t: m.residual_quantiles.round(10).tolist() for t, m in forecaster.models.items()})
        atomic_write_json(staging.dir / "backtest.json", report["metrics"])
        staging.metadata["model_files"] = files
    forecaster.version = staging.version
    forecaster.metadata = metadata
    folder = registry.root / MODEL_NAME / str(staging.version)
    log.info("registered %s/%s", MODEL_NAME, staging.version)
    return str(staging.version), folder


def load_forecaster(version: str = "latest", registry: ModelRegistry | None = None) -> Forecaster:
    """Load (and cache) a registered forecaster; every file is checked against its SHA-256 first."""
    registry = registry or ModelRegistry()
    resolved = registry.latest_version(MODEL_NAME) if version in ("latest", "", None) else version
    key = (str(registry.root.resolve()), str(resolved))
    with _CACHE_LOCK:
        if resolved is not None and key in _CACHE:
            return _CACHE[key]
    entry = registry.load(MODEL_NAME, version)
    meta = entry.metadata
    if meta.get("kind") != KIND or meta.get("format") != FORMAT:
        raise ModelError(f"model {MODEL_NAME}/{entry.version} is not a forecaster of format {FORMAT} (kind {meta.get('kind')!r})")
    if meta.get("window") != WINDOW or list(meta.get("quantile_levels", [])) != list(QUANTILE_LEVELS):
        raise ModelError(f"model {MODEL_NAME}/{entry.version} was saved by an incompatible version of bms_forecast: retrain it")
    import xgboost as xgb

    try:
        intervals = json.loads(entry.file("intervals.json").read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"model {MODEL_NAME}/{entry.version}: intervals.json is unreadable ({exc})") from exc
    models: dict[str, TargetModel] = {}
    for target, files in meta["model_files"].items():
        boosters = {}
        for strategy, name in files.items():
            booster = xgb.Booster()
            try:
                booster.load_model(str(entry.file(name)))
            except xgb.core.XGBoostError as exc:
                raise ModelError(f"model {MODEL_NAME}/{entry.version}: booster {name} cannot be loaded ({exc})") from exc
            booster.set_param({"nthread": compute_threads()})
            boosters[strategy] = booster
        quantiles = np.asarray(intervals[target], dtype=float)
        if quantiles.shape != (meta["max_steps"], len(QUANTILE_LEVELS)):
            raise ModelError(f"model {MODEL_NAME}/{entry.version}: interval table of {target} has shape {quantiles.shape}")
        models[target] = TargetModel(target=target, boosters=boosters,
                                     delta_scales={k: float(v) for k, v in meta["delta_scales"][target].items()},
                                     recursive_steps=int(meta["recursive_steps"][target]),
                                     features=meta["features"][target], residual_quantiles=quantiles)
    forecaster = Forecaster(targets=list(meta["targets"]), models=models, max_steps=int(meta["max_steps"]),
                            version=entry.version, metadata=meta)
    with _CACHE_LOCK:
        _CACHE[(str(registry.root.resolve()), entry.version)] = forecaster
    return forecaster
