"""The hybrid detector: robust scaling, three detectors, ECDF calibration, fusion, threshold.

>>> detector = HybridAnomalyDetector(contamination="auto").fit(train_frame)
>>> result = detector.score(new_frame)      # one row per input row, same index
>>> result[["AnomalyScore", "AnomalyFlag", "AnomalyKind", "AnomalyReason"]]

``fit`` and ``score`` take canonical readings frames that already carry the feature
columns (``bms_schema.loader.load_canonical`` output); ``score`` also accepts a
few raw canonical readings and derives what it can (see :func:`ensure_features`).
Rows flagged by cleaning as ``SensorFault`` (a 0xFFFF register sentinel) or ``OutOfRange``
(a physically impossible value) are anomalies of their own kind: they are flagged with
``AnomalyKind`` ``sensor_fault``/``out_of_range`` whatever the detectors say about their
imputed values, and they are left out of training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from bms_schema import columns as C
from bms_schema.errors import InputError, ModelError

from .dead import DeadCells, FailingCells, recognise_dead_cells, recognise_failing_cells
from .detectors import ForestConfig, ForestDetector, KernelSVMDetector, SVMConfig
from .features import (
    DEFAULT_FEATURES,
    MIN_PEERS,
    PEERLESS_FEATURES,
    describe_deviation,
    feature_matrix,
    local_features,
    select_features,
    state_codes,
    string_size,
)
from .fusion import AUTO, EXTEND_RATIO, FENCE_K, ECDFCalibrator, episode_flags, fuse, parse_contamination, threshold_for
from .vae import VAEConfig, VAEDetector

log = logging.getLogger("bms.anomaly")

DETECTORS: tuple[str, ...] = ("IsolationForest", "OneClassSVM", "VAE")
#: Output column of each detector's calibrated score (surprise, -log10 tail probability).
SCORE_COLUMNS: dict[str, str] = {"IsolationForest": "IForestScore", "OneClassSVM": "OCSVMScore", "VAE": "VAEScore"}
SCORE = "AnomalyScore"
FLAG = "AnomalyFlag"
KIND = "AnomalyKind"
REASON = "AnomalyReason"
TOP_FEATURE = "AnomalyFeature"
OUTPUT_COLUMNS: tuple[str, ...] = (*SCORE_COLUMNS.values(), SCORE, FLAG, KIND, TOP_FEATURE, REASON)

KIND_NORMAL = "normal"
KIND_STATISTICAL = "statistical"
KIND_SENSOR_FAULT = "sensor_fault"
KIND_OUT_OF_RANGE = "out_of_range"
#: Readings of a cell recognised as dead (:mod:`.dead`): not flagged, not statistical anomalies.
KIND_DEAD = "dead_cell"
#: A statistical flag of a cell already recognised as failing that is the recognised drift itself (the
#: deviation the failing state reports, in its direction, without a step: :meth:`.dead.FailingCells.explained`):
#: reported through that state (once, ``last_failing``), not flagged. Other flags of a failing cell (a sag, a
#: hot spot, a stuck sensor) stay statistical anomalies.
KIND_FAILING = "failing_cell"
#: A state needs this many training rows for its own robust centre/scale, else the global ones are used.
MIN_STATE_ROWS = 200

MIN_TRAIN_ROWS = 100


@dataclass
class HybridConfig:
    features: list[str] | None = None
    contamination: float | str = AUTO
    seed: int = 0
    clip: float = 1000.0
    calibration_rows: int = 100_000
    reference_rows: int = 5_000
    #: Share of training rows the first fit finds most anomalous (at least; and all beyond its
    #: far-out fence), left out of a second fit.
    trim_fraction: float = 0.02
    forest: ForestConfig = field(default_factory=ForestConfig)
    svm: SVMConfig = field(default_factory=SVMConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HybridConfig":
        data = dict(data)
        return cls(
            features=data.get("features"),
            contamination=data.get("contamination", AUTO),
            seed=int(data.get("seed", 0)),
            clip=float(data.get("clip", 1000.0)),
            calibration_rows=int(data.get("calibration_rows", 100_000)),
            reference_rows=int(data.get("reference_rows", 5_000)),
            trim_fraction=float(data.get("trim_fraction", 0.02)),
            forest=ForestConfig(**data.get("forest", {})),
            svm=SVMConfig(**data.get("svm", {})),
            vae=VAEConfig(**data.get("vae", {})),
        )


def quality_mask(frame: pd.DataFrame, flag: str) -> np.ndarray:
    if flag not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame[flag].fillna(False).astype(bool).to_numpy()


def ensure_features(
    frame: pd.DataFrame, features: list[str], states: np.ndarray | None = None
) -> tuple[pd.DataFrame, dict[str, np.ndarray], list[str]]:
    """Everything needed to build the feature matrix: ``(frame, computed, still_missing)``.

    If preprocessing features (or the sources of local features) are missing and the frame
    has the canonical columns, ``bms_schema.features.add_features`` derives them first
    (features that need history, like rates, are 0 on a reading without history). Local
    features (:func:`~bms_anomaly.features.local_features`) are computed as arrays without
    copying the frame. A feature still missing is treated as typical (the training median).
    """
    from .features import HISTORY_FEATURES, OWN_FEATURES, PEER_FEATURES, UNCHANGED_RUN, UNCHANGED_SOURCES

    def sources(name: str) -> list[str]:
        if name in HISTORY_FEATURES:
            return sources(HISTORY_FEATURES[name])
        if name in OWN_FEATURES:
            return [OWN_FEATURES[name]]
        if name in PEER_FEATURES:
            return [PEER_FEATURES[name][0]]
        return list(UNCHANGED_SOURCES) if name == UNCHANGED_RUN else [name]

    absent = [s for f in features if f not in frame.columns for s in sources(f) if s not in frame.columns]
    canonical = (C.CELL_ID, C.DEVICE_ID, C.TIMESTAMP, *C.CORE_COLUMNS)
    if absent and all(c in frame.columns for c in canonical):
        from bms_schema.features import FEATURE_COLUMNS, add_features

        if any(c in FEATURE_COLUMNS for c in absent):
            frame = add_features(frame)  # handles any row order, returns the caller's order
    computed = local_features(frame, features, states)
    return frame, computed, [f for f in features if f not in frame.columns and f not in computed]


class HybridAnomalyDetector:
    """Isolation Forest + Nystroem one-class SVM + VAE, calibrated and fused (see :mod:`.fusion`)."""

    def __init__(
        self,
        contamination: float | str = AUTO,
        features: list[str] | None = None,
        seed: int = 0,
        config: HybridConfig | None = None,
    ):
        self.config = config or HybridConfig(
            features=features, contamination=parse_contamination(contamination), seed=seed
        )
        self.features: list[str] = []
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        #: Robust centre / scale per operating state (rows: ``bms_schema.state.STATES``), ``None`` = global only.
        self.state_center: np.ndarray | None = None
        self.state_scale: np.ndarray | None = None
        self.last_dead: DeadCells | None = None
        #: Living cells drifting from their peers for a day (failure precursor likely): reported, flags unchanged.
        self.last_failing: FailingCells | None = None
        self.scaler: Any = None
        self.forest: ForestDetector | None = None
        self.svm: KernelSVMDetector | None = None
        self.vae: VAEDetector | None = None
        self.calibrators: dict[str, ECDFCalibrator] = {}
        self.train_fused: np.ndarray | None = None
        self.threshold: float | None = None
        self.detector_thresholds: dict[str, float] = {}
        self.reference: pd.DataFrame | None = None
        self.training_info: dict[str, Any] = {}
        self.model_version: str | None = None
        #: The model card (``bms_schema.model_protocol.ModelCard``) once registered or loaded.
        self.card: Any = None
        #: The promotion decision of the registration made in this process (``Registered.summary()``).
        self.decision: dict[str, Any] | None = None

    registry_name: ClassVar[str] = "anomaly_hybrid"

    # -- the model protocol (bms_schema.model_protocol) ------------------------------
    def predict(
        self, frame: pd.DataFrame, contamination: float | str | None = None, reasons: bool = True
    ) -> pd.DataFrame:
        """Same as :meth:`score` (the protocol's name); never changes the model."""
        return self.score(frame, contamination, reasons)

    def evaluate(self, holdout: pd.DataFrame) -> dict[str, Any]:
        """Ground-truth figures on held-out readings (``IsAnomaly``): hybrid F1 and the full report.

        Without labels the F1 is ``None`` (nothing to compare models on).
        """
        from .detect import evaluate as ground_truth
        from .metrics import truth_labels

        truth = truth_labels(holdout)
        if truth is None or not truth.any():
            return {
                "f1": None,
                "rows": int(len(holdout)),
                "note": "the held-out readings have no IsAnomaly labels (or none is an anomaly): no F1",
            }
        result = self.score(holdout, reasons=False)
        report = ground_truth(self, holdout, result, truth)
        hybrid = report["hybrid"]
        return {
            "f1": hybrid["f1"],
            "precision": hybrid.get("precision"),
            "recall": hybrid.get("recall"),
            "pr_auc": hybrid.get("pr_auc"),
            "rows": int(len(holdout)),
            "report": report,
        }

    def save(self, staging_dir: Path) -> None:
        from .persistence import save_detector

        save_detector(self, Path(staging_dir))

    @classmethod
    def load(cls, version: str = "champion", registry: Any = None) -> "HybridAnomalyDetector":
        from .persistence import load_detector

        return load_detector(version, registry)

    # -- training --------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "HybridAnomalyDetector":
        start = time.perf_counter()
        if not isinstance(frame, pd.DataFrame) or len(frame) == 0:
            raise InputError("cannot train the anomaly detector on an empty table")
        cfg = self.config
        states = state_codes(frame)
        peers = string_size(frame)
        defaults = DEFAULT_FEATURES if peers >= MIN_PEERS else PEERLESS_FEATURES
        computed = local_features(frame, cfg.features or defaults, states)
        self.features = select_features(frame, cfg.features, computed, defaults)
        dead = recognise_dead_cells(frame, states)
        bad = quality_mask(frame, C.SENSOR_FAULT) | quality_mask(frame, C.OUT_OF_RANGE) | dead.rows
        raw = feature_matrix(frame, self.features, computed)[~bad]
        states = states[~bad]
        usable = np.isfinite(raw).any(axis=1)
        raw, states = raw[usable], states[usable]
        if len(raw) < MIN_TRAIN_ROWS:
            raise InputError(
                f"too few rows to train the anomaly detector: {len(raw)} usable rows (after leaving out "
                f"{int(bad.sum())} sensor-fault/out-of-range/dead-cell rows), need at least {MIN_TRAIN_ROWS}"
            )
        timings: dict[str, float] = {}
        self._fit_scaler(raw, states)
        Z = self._transform(raw, states)
        seed = cfg.seed
        cfg.forest.seed = cfg.svm.seed = cfg.vae.seed = seed
        self._fit_detectors(Z, timings)
        trimmed = 0
        all_raw, all_states = raw, states
        if cfg.trim_fraction > 0 and len(Z) * (1 - cfg.trim_fraction) >= MIN_TRAIN_ROWS:
            # Second pass on the training rows the first pass finds most normal (the top
            # trim_fraction and everything beyond the far-out fence left out): unlabelled training
            # data holds its own anomalies (~1 % on simulated fleets), which otherwise calibrate
            # as "1 in 100 training rows" and crowd at the threshold.
            t = time.perf_counter()
            first = self._raw_scores(Z)
            self.calibrators = {name: ECDFCalibrator.fit(first[:, j]) for j, name in enumerate(DETECTORS)}
            fused_all = fuse(self._surprises(first))
            q1, q3 = np.quantile(fused_all, [0.25, 0.75])
            cut = min(float(np.quantile(fused_all, 1.0 - cfg.trim_fraction)), float(q3 + FENCE_K * (q3 - q1)))
            keep = fused_all <= cut
            trimmed = int((~keep).sum())
            raw, states = raw[keep], states[keep]
            self._fit_scaler(raw, states)
            Z = self._transform(raw, states)
            timings["trim_pass"] = time.perf_counter() - t
            self._fit_detectors(Z, timings)

        t = time.perf_counter()
        rng = np.random.default_rng(seed)
        calib_idx = np.arange(len(Z))
        if len(Z) > cfg.calibration_rows:
            calib_idx = np.sort(rng.choice(len(Z), cfg.calibration_rows, replace=False))
        raw_scores = self._raw_scores(Z[calib_idx])
        self.calibrators = {name: ECDFCalibrator.fit(raw_scores[:, j]) for j, name in enumerate(DETECTORS)}
        if trimmed:  # thresholds refer to all training rows (a contamination is a share of them)
            idx = np.arange(len(all_raw))
            if len(idx) > cfg.calibration_rows:
                idx = np.sort(rng.choice(len(idx), cfg.calibration_rows, replace=False))
            raw_scores = self._raw_scores(self._transform(all_raw[idx], all_states[idx]))
        surprises = self._surprises(raw_scores)
        self.train_fused = np.sort(fuse(surprises))
        self.threshold = threshold_for(self.train_fused, cfg.contamination)
        self.detector_thresholds = {
            name: threshold_for(surprises[:, j], cfg.contamination) for j, name in enumerate(DETECTORS)
        }
        timings["calibration"] = time.perf_counter() - t
        ref_idx = np.arange(len(raw))
        if len(raw) > cfg.reference_rows:
            ref_idx = np.sort(rng.choice(len(raw), cfg.reference_rows, replace=False))
        self.reference = pd.DataFrame(raw[ref_idx], columns=self.features)
        from bms_schema.state import STATES

        self.training_info = {
            "rows": int(len(raw)),
            "trimmed_rows": trimmed,
            "excluded_quality_rows": int((bad & ~dead.rows).sum()),
            "excluded_dead_cell_rows": int(dead.rows.sum()),
            "dead_cells": dead.cells,
            "peers_per_string": peers,
            "feature_mode": (
                "peer-relative (cells vs their string at the same time)"
                if defaults is DEFAULT_FEATURES
                else f"own history (strings of fewer than {MIN_PEERS} cells: no peers to compare with)"
            ),
            "rows_per_state": {name: int(np.sum(states == k)) for k, name in enumerate(STATES)},
            "state_normalised": [name for k, name in enumerate(STATES) if np.sum(states == k) >= MIN_STATE_ROWS],
            "features": list(self.features),
            "threshold": self.threshold,
            "implied_contamination": float(np.mean(self.train_fused > self.threshold)),
            "seconds": {k: round(v, 3) for k, v in timings.items()} | {"total": round(time.perf_counter() - start, 3)},
        }
        log.info(
            "hybrid fitted on %d rows x %d features in %.2fs (threshold %.3f)",
            len(raw),
            len(self.features),
            time.perf_counter() - start,
            self.threshold,
        )
        return self

    def _fit_detectors(self, Z: np.ndarray, timings: dict[str, float]) -> None:
        cfg = self.config
        t = time.perf_counter()
        self.forest = ForestDetector(cfg.forest).fit(Z)
        timings["isolation_forest"] = time.perf_counter() - t
        t = time.perf_counter()
        self.svm = KernelSVMDetector(cfg.svm).fit(Z)
        timings["one_class_svm"] = time.perf_counter() - t
        t = time.perf_counter()
        self.vae = VAEDetector(cfg.vae).fit(Z)
        timings["vae"] = time.perf_counter() - t

    @staticmethod
    def _robust_center_scale(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Median and robust SD per column: IQR/1.349, else the MAD, else the SD, else 1."""
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                center = np.nan_to_num(np.nanmedian(raw, axis=0))
                q1, q3 = np.nanpercentile(raw, [25.0, 75.0], axis=0)
                iqr = (q3 - q1) / 1.349
                mad = 1.4826 * np.nanmedian(np.abs(raw - center), axis=0)
                std = np.nanstd(raw, axis=0)
        scale = np.where(iqr > 1e-12, iqr, np.where(mad > 1e-12, mad, np.where(std > 1e-12, std, 1.0)))
        return center, np.nan_to_num(scale, nan=1.0)

    def _fit_scaler(self, raw: np.ndarray, states: np.ndarray | None = None) -> None:
        """Global robust scaling, and per operating state where a state has enough training rows.

        Per-state centring and scaling is how the detectors are conditioned on the state: a
        feature is judged against the same feature in the same state (a discharge spreads the
        cells of a string more than float does; that spread is normal in a discharge).
        """
        from bms_schema.state import STATES
        from sklearn.preprocessing import RobustScaler

        scaler = RobustScaler(quantile_range=(25.0, 75.0)).fit(raw)
        center, scale = self._robust_center_scale(raw)
        scaler.center_, scaler.scale_ = center, scale
        self.scaler, self.center, self.scale = scaler, center, scale
        self.state_center = np.tile(center, (len(STATES), 1))
        self.state_scale = np.tile(scale, (len(STATES), 1))
        if states is not None:
            for k in range(len(STATES)):
                rows = states == k
                if rows.sum() >= MIN_STATE_ROWS:
                    c, sc = self._robust_center_scale(raw[rows])
                    self.state_center[k], self.state_scale[k] = c, sc

    def _center_scale(self, n: int, states: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if states is None or self.state_center is None or self.state_scale is None:
            return self.center, self.scale  # type: ignore[return-value]
        states = np.clip(np.asarray(states, dtype=np.int64), 0, len(self.state_center) - 1)
        return self.state_center[states], self.state_scale[states]

    def _zscores(self, raw: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        center, scale = self._center_scale(len(raw), states)
        return (raw - center) / scale

    def _transform(self, raw: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        """Robust z-scores (per operating state), compressed with ``sign(z) * log1p(|z|)``; missing -> 0.

        The compression keeps every feature's order (Isolation Forest is unaffected) but
        stops a single extreme value from saturating the RBF kernel of the SVM (all far
        points would tie) or dominating the VAE's squared error.
        """
        center, scale = self._center_scale(len(raw), states)
        z = raw - center
        z /= scale
        np.nan_to_num(z, copy=False, nan=0.0, posinf=self.config.clip, neginf=-self.config.clip)
        np.clip(z, -self.config.clip, self.config.clip, out=z)
        compressed = np.abs(z)
        np.log1p(compressed, out=compressed)
        np.copysign(compressed, z, out=compressed)
        return compressed.astype(np.float32)  # every detector works in float32

    def _raw_scores(self, Z: np.ndarray) -> np.ndarray:
        assert self.forest is not None and self.svm is not None and self.vae is not None
        return np.column_stack([self.forest.score(Z), self.svm.score(Z), self.vae.score(Z)])

    def _surprises(self, raw_scores: np.ndarray) -> np.ndarray:
        return np.column_stack([self.calibrators[name].surprise(raw_scores[:, j]) for j, name in enumerate(DETECTORS)])

    # -- scoring ---------------------------------------------------------------------
    def check_fitted(self) -> None:
        if self.threshold is None or self.forest is None:
            raise ModelError("the anomaly detector is not trained: call fit(frame) or load a registered model")

    def extend_ratio(self, contamination: float | str | None = None) -> float:
        """Episode extension (:func:`.fusion.episode_flags`) under the "auto" rule; none for a fixed
        contamination, which promises the share of readings flagged."""
        chosen = self.config.contamination if contamination is None else parse_contamination(contamination)
        return EXTEND_RATIO if chosen == AUTO else 1.0

    def threshold_for(self, contamination: float | str | None) -> float:
        """The stored threshold, or one recomputed from the training scores for ``contamination``."""
        self.check_fitted()
        if contamination is None:
            return float(self.threshold)  # type: ignore[arg-type]
        return threshold_for(self.train_fused, parse_contamination(contamination))  # type: ignore[arg-type]

    def score(
        self,
        frame: pd.DataFrame,
        contamination: float | str | None = None,
        reasons: bool = True,
        open_cells: Collection[str] | None = None,
    ) -> pd.DataFrame:
        """Score readings; returns :data:`OUTPUT_COLUMNS` on ``frame``'s index. Never changes the model.

        ``contamination`` overrides the threshold chosen at training time (recomputed from
        the stored training scores, no retraining). Features the data lacks (and that could
        not be derived) are listed in ``result.attrs["missing_features"]``. ``open_cells``: cells whose
        anomaly episode was still open at their last reading before ``frame`` (a stream scored in
        pieces, see :func:`.fusion.episode_flags`).
        """
        self.check_fitted()
        if not isinstance(frame, pd.DataFrame) or len(frame) == 0:
            raise InputError("nothing to score: the table has no rows")
        threshold = self.threshold_for(contamination)
        if frame.attrs:
            # pandas deep-copies ``attrs`` (the loader's operating-state report) into every frame and series
            # derived from this one: about 12 % of scoring one reading; the scores do not read them
            frame = frame.copy(deep=False)
            frame.attrs = {}
        states = state_codes(frame)
        frame, computed, missing = ensure_features(frame, self.features, states)
        if len(missing) == len(self.features):
            raise ModelError(
                f"the registered anomaly model needs the features {', '.join(self.features)}; the data has none of "
                "them (pass preprocessed readings, or raw readings with the canonical columns)"
            )
        raw = feature_matrix(frame, self.features, computed)
        Z = self._transform(raw, states)
        surprises = self._surprises(self._raw_scores(Z))
        fused = fuse(surprises)
        dead = recognise_dead_cells(frame, states)
        self.last_dead = dead
        failing = recognise_failing_cells(frame, states, dead)
        self.last_failing = failing
        sensor = quality_mask(frame, C.SENSOR_FAULT)
        out_of_range = quality_mask(frame, C.OUT_OF_RANGE) & ~sensor
        cells, times = self._cells_times(frame)
        carried = None if not open_cells or cells is None else np.isin(cells, list(open_cells))
        statistical = episode_flags(
            fused,
            threshold,
            cells,
            times,
            exclude=dead.rows,
            ratio=self.extend_ratio(contamination),
            open_cells=carried,
        )
        drift = np.zeros(len(frame), dtype=bool)
        top = np.full(len(frame), None, dtype=object)
        if failing.recognised is not None and (failing.recognised & statistical).any():
            top, value = self._top_features(raw, failing.recognised & statistical, states)
            drift = failing.explained(frame, failing.recognised & statistical, top, value)
            statistical = statistical & ~drift
        kind = np.full(len(frame), KIND_NORMAL, dtype=object)
        kind[dead.rows] = KIND_DEAD
        kind[drift] = KIND_FAILING
        kind[statistical] = KIND_STATISTICAL
        kind[out_of_range] = KIND_OUT_OF_RANGE
        kind[sensor] = KIND_SENSOR_FAULT
        flag = statistical | sensor | out_of_range
        columns: dict[str, Any] = {SCORE_COLUMNS[name]: surprises[:, j] for j, name in enumerate(DETECTORS)}
        columns[SCORE] = fused
        columns[FLAG] = flag.astype(np.int8)
        columns[KIND] = kind
        if reasons:
            columns[TOP_FEATURE], columns[REASON] = self._reasons(
                frame, raw, statistical, sensor | out_of_range, states
            )
            dead_only = dead.rows & ~(sensor | out_of_range)
            if dead_only.any():
                columns[REASON][dead_only] = dead.reason_by_row(frame)[dead_only]
            if drift.any():
                notes = failing.note_by_row(frame)
                columns[REASON][drift] = [
                    f"the cell's drift, reported through its failing state: {n}" for n in notes[drift]
                ]
                columns[TOP_FEATURE][drift] = top[drift]  # computed above for every candidate row
            noted = failing.rows & statistical
            if noted.any():  # a reading anomaly of a failing cell: say that the cell drifts too
                notes = failing.note_by_row(frame)
                columns[REASON][noted] = [f"{r}; {n}" for r, n in zip(columns[REASON][noted], notes[noted])]
        else:
            columns[TOP_FEATURE] = columns[REASON] = np.full(len(frame), None, dtype=object)
        out = pd.DataFrame(columns, index=frame.index)
        out.attrs["missing_features"] = list(missing)
        return out

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated scores ``[n_rows, 3]`` of the three detectors (higher = more anomalous)."""
        self.check_fitted()
        states = state_codes(frame)
        frame, computed, _ = ensure_features(frame, self.features, states)
        return self._raw_scores(self._transform(feature_matrix(frame, self.features, computed), states))

    @staticmethod
    def _cells_times(frame: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
        if C.CELL_ID not in frame.columns or C.TIMESTAMP not in frame.columns:
            return None, None
        return (
            frame[C.CELL_ID].to_numpy(dtype=object),
            frame[C.TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64),
        )

    def detector_flags(self, result: pd.DataFrame, frame: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
        """Each single detector's flags under the same threshold rule (for comparisons); with ``frame``
        (the scored readings) also the same episode extension and dead-cell exclusion."""
        cells, times = self._cells_times(frame) if frame is not None else (None, None)
        exclude = (result[KIND].to_numpy() == KIND_DEAD) if KIND in result.columns else None
        return {
            name: episode_flags(
                result[SCORE_COLUMNS[name]].to_numpy(),
                self.detector_thresholds[name],
                cells,
                times,
                exclude=exclude,
                ratio=self.extend_ratio(),
            ).astype(np.int8)
            for name in DETECTORS
        }

    def _top_features(
        self, raw: np.ndarray, rows: np.ndarray, states: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row (``rows`` only, None / NaN elsewhere): the feature with the largest robust z-score, its value."""
        top = np.full(len(raw), None, dtype=object)
        value = np.full(len(raw), np.nan)
        idx = np.flatnonzero(rows)
        if len(idx):
            z = self._zscores(raw[idx], None if states is None else states[idx])
            best = np.where(np.isfinite(z), np.abs(z), -1.0).argmax(axis=1)
            top[idx] = np.asarray(self.features, dtype=object)[best]
            value[idx] = raw[idx, best]
        return top, value

    def _reasons(
        self,
        frame: pd.DataFrame,
        raw: np.ndarray,
        statistical: np.ndarray,
        quality: np.ndarray,
        states: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top feature and a readable reason for flagged rows (None elsewhere).

        Statistical flags name the feature with the largest robust z-score; only flagged rows
        are formatted (a few per cent of the data).
        """
        n = len(frame)
        top = np.full(n, None, dtype=object)
        reason = np.full(n, None, dtype=object)
        rows = np.flatnonzero(statistical & ~quality)
        if len(rows):
            z = self._zscores(raw[rows], None if states is None else states[rows])
            absz = np.where(np.isfinite(z), np.abs(z), -1.0)
            best = absz.argmax(axis=1)
            zbest = z[np.arange(len(rows)), best]
            vbest = raw[rows, best]
            names = np.asarray(self.features, dtype=object)[best]
            top[rows] = names
            reason[rows] = [describe_deviation(f, v, zz) for f, v, zz in zip(names, vbest, zbest)]
        qrows = np.flatnonzero(quality)
        if len(qrows):
            qcols = [c for c in frame.columns if c.endswith(C.QUALITY_SUFFIX) or c == C.SENSOR_FAULT]
            top[qrows], reason[qrows] = _quality_reasons(frame[qcols].iloc[qrows])
        return top, reason


def _quality_reasons(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which measurement was a sentinel / impossible, from the ``*_Quality`` columns."""
    n = len(rows)
    first = np.full(n, None, dtype=object)
    parts = np.full(n, "", dtype=object)
    for name in (*C.CORE_COLUMNS, *C.OPTIONAL_NUMERIC):
        qcol = C.quality_column(name)
        if qcol not in rows.columns:
            continue
        q = rows[qcol].astype(object).to_numpy()
        for code, text in (
            (C.QUALITY_SENTINEL, "0xFFFF sentinel (no reading)"),
            (C.QUALITY_OUT_OF_RANGE, "physically impossible value"),
        ):
            hit = q == code
            if hit.any():
                sep = np.where(parts[hit] == "", "", "; ")
                parts[hit] = parts[hit] + sep + f"{name}: {text}"
                first[hit & pd.isna(first)] = name
    sensor = quality_mask(rows, C.SENSOR_FAULT)
    empty = parts == ""
    parts[empty & sensor] = "sensor fault: a 0xFFFF register sentinel (no reading)"
    parts[empty & ~sensor] = "physically impossible value flagged by cleaning"
    return first, parts


__all__ = [
    "DEFAULT_FEATURES",
    "DETECTORS",
    "FLAG",
    "HybridAnomalyDetector",
    "KIND_DEAD",
    "KIND_FAILING",
    "HybridConfig",
    "KIND",
    "OUTPUT_COLUMNS",
    "REASON",
    "SCORE",
    "SCORE_COLUMNS",
    "TOP_FEATURE",
    "ensure_features",
]
