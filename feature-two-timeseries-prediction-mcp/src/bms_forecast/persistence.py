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
FORMAT = 3  # 3: operating-state features
_CACHE: dict[tuple[str, str], Forecaster] = {}
_CACHE_LOCK = threading.Lock()


def summary_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The compact per-target metrics kept in ``metadata.json`` (the full table is ``backtest.json``)."""
    keep = (
        "strategy",
        "test_origins",
        "coverage_nominal",
        "coverage",
        "summary",
        "beats_naive_last_at",
        "beats_naive_seasonal_at",
        "strategy_selection",
        "mase_scale",
    )
    return {target: {k: m[k] for k in keep if k in m} for target, m in report["metrics"].items()}


def model_files(forecaster: Forecaster) -> dict[str, dict[str, str]]:
    """File name of every booster: ``{target: {strategy: "<target>.<strategy>.ubj"}}``."""
    return {
        target: {strategy: f"{target}.{strategy}.ubj" for strategy in model.boosters}
        for target, model in forecaster.models.items()
    }


def forecaster_metadata(forecaster: Forecaster, report: dict[str, Any]) -> dict[str, Any]:
    """What the loader needs besides the files (stored in the version's metadata)."""
    return {
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
        "metrics": summary_metrics(report) | dict(getattr(forecaster.card, "metrics", None) or {}),
        "features": report["features"],
        "training_data": report["training_data"],
        "config": report["config"],
        "timings": report["timings"],
        "library_versions": versions("xgboost", "numpy", "pandas"),
        "model_files": model_files(forecaster),
    }


def write_files(forecaster: Forecaster, folder: Path) -> None:
    """Write the boosters, interval tables and full backtest of ``forecaster`` into ``folder``."""
    for target, files in model_files(forecaster).items():
        for strategy, name in files.items():
            forecaster.models[target].boosters[strategy].save_model(str(folder / name))
    atomic_write_json(
        folder / "intervals.json", {t: m.residual_quantiles.round(10).tolist() for t, m in forecaster.models.items()}
    )
    atomic_write_json(folder / "backtest.json", forecaster.report.get("metrics", {}))


def save_forecaster(
    forecaster: Forecaster,
    report: dict[str, Any] | None = None,
    registry: ModelRegistry | None = None,
    extra: dict[str, Any] | None = None,
    *,
    frame: Any = None,
    promote: bool = False,
) -> tuple[str, Path]:
    """Register ``forecaster`` as a candidate version of ``forecaster``; returns ``(version, folder)``.

    With ``frame`` (the training readings) the candidate and the current champion are both
    scored on its held-out test window and the better becomes champion; without it the
    candidate's own backtest is its figure, the champion has none, so it becomes champion only
    as the first version or with ``promote``. :func:`register_forecaster` also returns the decision.
    """
    version, folder, _ = register_forecaster(forecaster, report, registry, extra, frame=frame, promote=promote)
    return version, folder


def register_forecaster(
    forecaster: Forecaster,
    report: dict[str, Any] | None = None,
    registry: ModelRegistry | None = None,
    extra: dict[str, Any] | None = None,
    *,
    frame: Any = None,
    promote: bool = False,
) -> tuple[str, Path, Any]:
    """Register as a candidate (gated promotion); returns ``(version, folder, Registered)``."""
    from bms_schema.model_protocol import register_candidate

    from .training import PRIMARY_METRIC, ForecastHoldout, model_card

    registry = registry or ModelRegistry()
    report = report if report is not None else forecaster.report
    if not report:
        raise ModelError("this forecaster has no training report: fit it before registering")
    forecaster.report = report
    if forecaster.card is None:
        forecaster.card = model_card(report)
    metadata = {**forecaster_metadata(forecaster, report), **(extra or {})}
    config = report["config"]
    steps = min(int(forecaster.max_steps), int(config.get("max_steps", forecaster.max_steps)))
    if frame is not None:
        holdout: Any = ForecastHoldout(frame=frame, holdout_fraction=float(config["holdout_fraction"]), steps=steps)
        candidate = None
    else:
        holdout, candidate = (
            None,
            {PRIMARY_METRIC: forecaster.card.metrics.get(PRIMARY_METRIC), "source": "own backtest"},
        )
    registered = register_candidate(
        forecaster, holdout, registry=registry, promote=promote, candidate_metrics=candidate, extra_metadata=metadata
    )
    forecaster.version = registered.version
    forecaster.metadata = registry.metadata(MODEL_NAME, registered.version)
    log.info("registered %s/%s as %s", MODEL_NAME, registered.version, registered.alias)
    return registered.version, registry.locate(MODEL_NAME, registered.version), registered


def load_forecaster(version: str = "champion", registry: ModelRegistry | None = None) -> Forecaster:
    """Load (and cache) a registered forecaster (``champion`` by default); files are checked first.

    With no forecaster registered the error names the ``train_forecaster`` tool (predicting never trains).
    """
    from bms_schema.model_protocol import ModelCard, no_model_error

    registry = registry or ModelRegistry()
    resolved = registry.resolve(MODEL_NAME, version or "champion")
    if resolved is None:
        raise no_model_error(MODEL_NAME, "train_forecaster", registry)
    key = (str(registry.root.resolve()), str(resolved))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    entry = registry.load(MODEL_NAME, resolved)
    meta = entry.metadata
    if meta.get("kind") != KIND or meta.get("format") != FORMAT:
        raise ModelError(
            f"model {MODEL_NAME}/{entry.version} is not a forecaster of format {FORMAT} (kind {meta.get('kind')!r})"
        )
    if meta.get("window") != WINDOW or list(meta.get("quantile_levels", [])) != list(QUANTILE_LEVELS):
        raise ModelError(
            f"model {MODEL_NAME}/{entry.version} was saved by an incompatible version of bms_forecast: retrain it"
        )
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
                raise ModelError(
                    f"model {MODEL_NAME}/{entry.version}: booster {name} cannot be loaded ({exc})"
                ) from exc
            booster.set_param({"nthread": compute_threads()})
            boosters[strategy] = booster
        quantiles = np.asarray(intervals[target], dtype=float)
        if quantiles.shape != (meta["max_steps"], len(QUANTILE_LEVELS)):
            raise ModelError(
                f"model {MODEL_NAME}/{entry.version}: interval table of {target} has shape {quantiles.shape}"
            )
        models[target] = TargetModel(
            target=target,
            boosters=boosters,
            delta_scales={k: float(v) for k, v in meta["delta_scales"][target].items()},
            recursive_steps=int(meta["recursive_steps"][target]),
            features=meta["features"][target],
            residual_quantiles=quantiles,
        )
    forecaster = Forecaster(
        targets=list(meta["targets"]),
        models=models,
        max_steps=int(meta["max_steps"]),
        version=entry.version,
        metadata=meta,
        card=ModelCard.from_metadata(meta),
    )
    with _CACHE_LOCK:
        _CACHE[(str(registry.root.resolve()), entry.version)] = forecaster
    return forecaster
