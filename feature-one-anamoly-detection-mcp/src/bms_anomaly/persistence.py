"""Save and load the hybrid as the registered model ``anomaly_hybrid`` (safe formats only).

Files of one version (``models/anomaly_hybrid/vNNNN/``):

| file | format | what |
|---|---|---|
| ``config.json`` | JSON | feature list, hyper-parameters, thresholds, fusion rule |
| ``scaler.skops`` | skops | robust scaler (median / robust SD per feature) |
| ``isolation_forest.skops`` | skops | ``IsolationForest`` |
| ``nystroem.skops``, ``sgd_ocsvm.skops`` | skops | kernel map + linear one-class SVM |
| ``vae.npz`` | NumPy (no pickle) | VAE weights (scored in NumPy: loading and scoring never import torch; a model of an older version holds ``vae.pt``, a torch ``state_dict`` loaded with ``weights_only=True``) |
| ``calibration.npz`` | NumPy (no pickle) | sorted training scores per detector (ECDF), fused training scores |
| ``reference_features.parquet`` | Parquet | a training sample of raw feature values, for drift monitoring |

``load_detector()`` reads these once and returns a :class:`HybridAnomalyDetector` whose
``score`` does no file I/O; loaded detectors are cached per (models folder, version).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema.errors import ModelError
from bms_schema.registry import ModelRegistry
from bms_schema.safe_io import load_arrays, load_sklearn, save_arrays, save_sklearn

from .detectors import ForestDetector, KernelSVMDetector
from .fusion import ECDFCalibrator
from .hybrid import DETECTORS, HybridAnomalyDetector, HybridConfig
from .vae import VAEDetector

log = logging.getLogger("bms.anomaly")

MODEL_NAME = "anomaly_hybrid"
FORMAT_VERSION = 1
REFERENCE_FILE = "reference_features.parquet"

_cache: dict[tuple[str, str], HybridAnomalyDetector] = {}
_cache_lock = threading.Lock()


def save_detector(detector: HybridAnomalyDetector, folder: Path) -> dict[str, Any]:
    """Write every part of a fitted detector into ``folder``; returns the config written."""
    detector.check_fitted()
    folder = Path(folder)
    save_sklearn(detector.scaler, folder / "scaler.skops")
    save_sklearn(detector.forest.model, folder / "isolation_forest.skops")  # type: ignore[union-attr]
    save_sklearn(detector.svm.feature_map, folder / "nystroem.skops")  # type: ignore[union-attr]
    save_sklearn(detector.svm.svm, folder / "sgd_ocsvm.skops")  # type: ignore[union-attr]
    detector.vae.save(folder / "vae.npz")  # type: ignore[union-attr]
    center, scale = detector.center, detector.scale
    if center is None or scale is None:  # check_fitted() rules this out
        raise RuntimeError("anomaly detector: fused-score centre/scale missing after fit")
    arrays: dict[str, np.ndarray] = {
        "train_fused": np.asarray(detector.train_fused, dtype=np.float64),
        "center": center,
        "scale": scale,
    }
    if detector.state_center is not None and detector.state_scale is not None:
        arrays["state_center"], arrays["state_scale"] = detector.state_center, detector.state_scale
    for name in DETECTORS:
        arrays[f"ecdf_{name}"] = detector.calibrators[name].sorted_scores
        arrays[f"tail_{name}"] = np.array([detector.calibrators[name].tail_scale])
    save_arrays(folder / "calibration.npz", **arrays)
    detector.reference.to_parquet(folder / REFERENCE_FILE, index=False)  # type: ignore[union-attr]
    config = {
        "format_version": FORMAT_VERSION,
        "features": detector.features,
        "hybrid": detector.config.to_dict(),
        "vae": detector.vae.state(),  # type: ignore[union-attr]
        "threshold": detector.threshold,
        "detector_thresholds": detector.detector_thresholds,
        "fusion_rule": "AnomalyScore = mean over detectors of -log10(ECDF tail probability vs training scores)",
        "threshold_rule": (
            "(1 - contamination) quantile of fused training scores"
            if detector.config.contamination != "auto"
            else "Q3 + 3 * IQR of fused training scores (auto)"
        ),
        "training": detector.training_info,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=float))
    return config


def read_detector(folder: Path, files: dict[str, Any] | None = None) -> HybridAnomalyDetector:
    """Rebuild a detector from a model folder written by :func:`save_detector`."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"anomaly model at {folder} has no readable config.json ({exc})") from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"anomaly model at {folder} has format {config.get('format_version')}, this code reads "
            f"{FORMAT_VERSION}: retrain it"
        )
    hybrid = HybridConfig.from_dict(config["hybrid"])
    detector = HybridAnomalyDetector(config=hybrid)
    detector.features = list(config["features"])
    detector.scaler = load_sklearn(folder / "scaler.skops")
    detector.forest = ForestDetector.from_model(load_sklearn(folder / "isolation_forest.skops"), hybrid.forest)
    detector.svm = KernelSVMDetector.from_models(
        load_sklearn(folder / "nystroem.skops"), load_sklearn(folder / "sgd_ocsvm.skops"), hybrid.svm
    )
    vae_file = folder / "vae.npz"
    if not vae_file.exists() and (folder / "vae.pt").exists():  # a model registered before vae.npz
        vae_file = folder / "vae.pt"
    detector.vae = VAEDetector.load(vae_file, config["vae"])
    arrays = load_arrays(folder / "calibration.npz")
    detector.center, detector.scale = arrays["center"], arrays["scale"]
    detector.state_center = arrays.get("state_center")
    detector.state_scale = arrays.get("state_scale")
    detector.train_fused = arrays["train_fused"]
    detector.calibrators = {
        name: ECDFCalibrator(sorted_scores=arrays[f"ecdf_{name}"], tail_scale=float(arrays[f"tail_{name}"][0]))
        for name in DETECTORS
    }
    detector.threshold = float(config["threshold"])
    detector.detector_thresholds = {k: float(v) for k, v in config["detector_thresholds"].items()}
    detector.reference = pd.read_parquet(folder / REFERENCE_FILE)
    detector.training_info = dict(config.get("training", {}))
    return detector


def detector_card(
    detector: HybridAnomalyDetector,
    metrics: dict[str, Any] | None = None,
    holdout: str = "",
    data_fingerprint: str | None = None,
) -> Any:
    """The model card of a fitted detector (``metrics``: its figures on held-out readings)."""
    from bms_schema.model_protocol import ModelCard
    from bms_schema.runtime import versions

    return ModelCard(
        family="anomaly",
        features=list(detector.features),
        metrics={k: v for k, v in (metrics or {}).items() if k != "report"},
        primary_metric="f1",
        higher_is_better=True,
        data_fingerprint=data_fingerprint,
        training_rows=detector.training_info.get("rows"),
        holdout=holdout,
        params={
            "contamination": detector.config.contamination,
            "seed": detector.config.seed,
            "threshold": detector.threshold,
        },
        library_versions=versions("scikit-learn", "torch", "numpy", "pandas", "skops"),
    )


def register_detector(
    detector: HybridAnomalyDetector,
    metadata: dict[str, Any] | None = None,
    registry: ModelRegistry | None = None,
    *,
    holdout: pd.DataFrame | None = None,
    promote: bool = False,
    candidate_metrics: dict[str, Any] | None = None,
) -> tuple[str, Path]:
    """Register a fitted detector as a candidate version of ``anomaly_hybrid``; returns (version, folder).

    With labelled ``holdout`` readings the candidate and the current champion are both scored on
    them (hybrid F1) and the better becomes champion; without, the candidate becomes champion
    only as the first version or with ``promote``. The decision is in ``detector.decision``.
    """
    from bms_schema.model_protocol import register_candidate

    registry = registry or ModelRegistry()
    if candidate_metrics is None:
        candidate_metrics = (
            detector.evaluate(holdout) if holdout is not None else {"f1": None, "note": "no held-out readings given"}
        )
    if detector.card is None:
        detector.card = detector_card(detector, candidate_metrics)
    meta = {
        "threshold": detector.threshold,
        "contamination": detector.config.contamination,
        "reference_features": REFERENCE_FILE,
        **(metadata or {}),
    }
    registered = register_candidate(
        detector, holdout, registry=registry, promote=promote, candidate_metrics=candidate_metrics, extra_metadata=meta
    )
    detector.model_version = registered.version
    detector.decision = registered.summary()
    log.info("registered %s %s as %s", MODEL_NAME, registered.version, registered.alias)
    return registered.version, registry.locate(MODEL_NAME, registered.version)


def load_detector(
    version: str = "champion", registry: ModelRegistry | None = None, cache: bool = True
) -> HybridAnomalyDetector:
    """The registered hybrid (checksums verified), ready to ``score``; cached per version.

    ``version`` is ``champion`` (default), ``challenger``, ``latest`` or ``vNNNN``; an alias is
    resolved on every call (one small file read), so a new champion is picked up while an
    unchanged one is served from memory. With no model the error names ``train_anomaly_detector``.
    """
    from bms_schema.model_protocol import ModelCard, no_model_error

    registry = registry or ModelRegistry()
    resolved = registry.resolve(MODEL_NAME, version or "champion")
    if resolved is None:
        raise no_model_error(MODEL_NAME, "train_anomaly_detector", registry)
    key = (str(registry.root.resolve()), resolved)
    if cache:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
    loaded = registry.load(MODEL_NAME, resolved)
    detector = read_detector(loaded.dir)
    detector.training_info.setdefault("version", loaded.version)
    detector.model_version = loaded.version
    detector.card = ModelCard.from_metadata(loaded.metadata)
    if cache:
        with _cache_lock:
            _cache[key] = detector
    return detector
