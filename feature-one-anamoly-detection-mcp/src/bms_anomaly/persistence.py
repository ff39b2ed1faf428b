"""Save and load the hybrid as the registered model ``anomaly_hybrid`` (safe formats only).

Files of one version (``models/anomaly_hybrid/vNNNN/``):

| file | format | what |
|---|---|---|
| ``config.json`` | JSON | feature list, hyper-parameters, thresholds, fusion rule |
| ``scaler.skops`` | skops | robust scaler (median / robust SD per feature) |
| ``isolation_forest.skops`` | skops | ``IsolationForest`` |
| ``nystroem.skops``, ``sgd_ocsvm.skops`` | skops | kernel map + linear one-class SVM |
| ``vae.pt`` | torch ``state_dict`` | VAE weights (loaded with ``weights_only=True``) |
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
    detector.vae.save(folder / "vae.pt")  # type: ignore[union-attr]
    arrays: dict[str, np.ndarray] = {"train_fused": np.asarray(detector.train_fused, dtype=np.float64),
                                     "center": detector.center, "scale": detector.scale}  # type: ignore[dict-item]
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
        "threshold_rule": ("(1 - contamination) quantile of fused training scores" if detector.config.contamination != "auto"
                           else "Q3 + 3 * IQR of fused training scores (auto)"),
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
        raise ModelError(f"anomaly model at {folder} has format {config.get('format_version')}, this code reads "
                         f"{FORMAT_VERSION}: retrain it")
    hybrid = HybridConfig.from_dict(config["hybrid"])
    detector = HybridAnomalyDetector(config=hybrid)
    detector.features = list(config["features"])
    detector.scaler = load_sklearn(folder / "scaler.skops")
    detector.forest = ForestDetector.from_model(load_sklearn(folder / "isolation_forest.skops"), hybrid.forest)
    detector.svm = KernelSVMDetector.from_models(load_sklearn(folder / "nystroem.skops"),
                                                 load_sklearn(folder / "sgd_ocsvm.skops"), hybrid.svm)
    detector.vae = VAEDetector.load(folder / "vae.pt", config["vae"])
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


def register_detector(detector: HybridAnomalyDetector, metadata: dict[str, Any] | None = None,
                      registry: ModelRegistry | None = None) -> tuple[str, Path]:
    """Register a fitted detector as a new version of ``anomaly_hybrid``; returns (version, folder)."""
    registry = registry or ModelRegistry()
    meta = {
        "features": detector.features,
        "threshold": detector.threshold,
        "contamination": detector.config.contamination,
        "training_rows": detector.training_info.get("rows"),
        "reference_features": REFERENCE_FILE,
        **(metadata or {}),
    }
    from bms_schema.runtime import versions

    meta.setdefault("library_versions", versions("scikit-learn", "torch", "numpy", "pandas", "skops"))
    with registry.register(MODEL_NAME, meta) as staging:
        save_detector(detector, staging.dir)
    assert staging.version is not None
    log.info("registered %s %s", MODEL_NAME, staging.version)
    return staging.version, registry.root / MODEL_NAME / staging.version


def load_detector(version: str = "latest", registry: ModelRegistry | None = None,
                  cache: bool = True) -> HybridAnomalyDetector:
    """The registered hybrid (checksums verified), ready to ``score``; cached per version.

    ``version="latest"`` is resolved on every call (cheap: one symlink read), so a newly
    registered model is picked up while an unchanged one is served from memory.
    """
    registry = registry or ModelRegistry()
    resolved = registry.latest_version(MODEL_NAME) if version in (None, "", "latest") else version
    if resolved is None:
        raise ModelError(f"no model '{MODEL_NAME}' is registered yet: run detect_anomalies with "
                         "use_registered_model=false to train one")
    key = (str(registry.root.resolve()), resolved)
    if cache:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
    loaded = registry.load(MODEL_NAME, resolved)
    detector = read_detector(loaded.dir)
    detector.training_info.setdefault("version", loaded.version)
    detector.model_version = loaded.version
    if cache:
        with _cache_lock:
            _cache[key] = detector
    return detector
