"""The failure classifier: XGBoost booster + calibration + settings, saved in the model registry.

``FailureModel.predict(history)`` turns a readings table (no labels needed) into the per-cell
risk table; ``load_failure_model("latest")`` gives live inference the registered model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from bms_schema import InputError, ModelError, ModelRegistry
from bms_schema import columns as C

from .calibration import Calibrator
from .config import (
    CALIBRATION_FILE,
    DEAD_STATE_FILE,
    LOGGER,
    MODEL_FILE,
    MODEL_NAME,
    REFERENCE_FILE,
    FeatureConfig,
    format_reason,
)
from .features import FeatureGrid, as_canonical, build_feature_grid, feature_matrix

log = logging.getLogger(LOGGER)

#: A feature is listed as a reason only when it adds at least this much to the log-odds.
MIN_REASON_CONTRIBUTION = 0.01
#: Columns of the per-cell prediction table, in order.
PREDICTION_COLUMNS = (
    "Rank", C.DEVICE_ID, C.CELL_NUMBER, C.CELL_ID, "FailureProbability", "RiskBand", "AlreadyDead",
    "DeadSource", "AsOf", "HorizonDays", "LastReading", "HistoryHours", "TopReasons",
)


def xgb_params(seed: int = 0) -> dict[str, Any]:
    """Booster settings (XGBoost 3.x: early stopping is a constructor argument)."""
    from bms_schema.runtime import compute_threads

    return {
        "n_estimators": 500,
        "learning_rate": 0.05,
        "max_depth": 4,
        "min_child_weight": 2.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "max_bin": 64,
        "tree_method": "hist",
        "objective": "binary:logistic",
        "nthread": compute_threads(),
        "random_state": seed,
    }


@dataclass
class FailureModel:
    booster: Any  # xgboost.Booster
    calibrator: Calibrator
    features: list[str]
    config: FeatureConfig
    horizon_days: float
    alarm_threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    #: Folder of the registered version (set by ``save`` and ``from_version``).
    directory: str | None = None
    #: Optional booster recognising cells that are already dead (used when the input has no IsDead).
    dead_booster: Any = None
    #: A sample of the training feature rows (drift monitoring in live inference); None if not stored.
    reference: pd.DataFrame | None = None
    #: The model card (``bms_schema.model_protocol.ModelCard``) once registered or loaded.
    card: Any = None
    #: The promotion decision of the registration made in this process.
    decision: dict[str, Any] | None = None

    registry_name: ClassVar[str] = MODEL_NAME

    # -- the model protocol (bms_schema.model_protocol; fit is bms_failure.training.train_failure_model) --
    def evaluate(self, holdout: pd.DataFrame) -> dict[str, Any]:
        """PR-AUC, ROC-AUC and Brier of this model on labelled held-out samples (``Label`` + features).

        The samples must be labelled for this model's horizon (``holdout.attrs["horizon_days"]``).
        """
        from . import evaluation as E

        horizon = holdout.attrs.get("horizon_days")
        if horizon is not None and abs(float(horizon) - self.horizon_days) > 1e-9:
            raise ModelError(f"model {MODEL_NAME}/{self.version} predicts a {self.horizon_days:g}-day horizon; the "
                             f"held-out samples are labelled for {float(horizon):g} days")
        missing = [f for f in self.features if f not in holdout.columns]
        if missing:
            raise ModelError(f"model {MODEL_NAME}/{self.version} needs feature(s) {', '.join(missing[:5])} that the "
                             "held-out samples do not have")
        label = holdout["Label"].to_numpy()
        prob = self.predict_proba(holdout)
        out = E.score_metrics(label, prob)
        out["brier"] = E.brier(label, prob)
        return out

    def save(self, staging_dir: Path) -> None:
        """Write the booster(s), calibration and drift reference into ``staging_dir``."""
        from bms_schema.atomic import atomic_write_json

        staging_dir = Path(staging_dir)
        self.booster.save_model(str(staging_dir / MODEL_FILE))
        if self.dead_booster is not None:
            self.dead_booster.save_model(str(staging_dir / DEAD_STATE_FILE))
        if self.reference is not None:
            self.reference.to_parquet(staging_dir / REFERENCE_FILE, index=False)
        atomic_write_json(staging_dir / CALIBRATION_FILE, self.calibrator.to_dict())

    @classmethod
    def load(cls, version: str = "champion", registry: ModelRegistry | None = None) -> "FailureModel":
        return load_failure_model(version, registry=registry)

    # -- scoring ----------------------------------------------------------------------
    def _dmatrix(self, table: pd.DataFrame) -> Any:
        import xgboost as xgb

        return xgb.DMatrix(feature_matrix(table, self.features), feature_names=list(self.features), missing=np.nan,
                           nthread=self._threads())

    @staticmethod
    def _threads() -> int:
        from bms_schema.runtime import compute_threads

        return compute_threads()

    def margin(self, table: pd.DataFrame) -> np.ndarray:
        if len(table) == 0:
            return np.zeros(0)
        return self.booster.predict(self._dmatrix(table), output_margin=True)

    def predict_proba(self, table: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of death within the horizon for each feature row."""
        return self.calibrator.transform(self.margin(table))

    def contributions(self, table: pd.DataFrame) -> np.ndarray:
        """XGBoost per-prediction feature contributions (``pred_contribs=True``); last column is the bias."""
        if len(table) == 0:
            return np.zeros((0, len(self.features) + 1))
        return self.booster.predict(self._dmatrix(table), pred_contribs=True)

    def risk_band(self, prob: np.ndarray) -> np.ndarray:
        """``high`` at or above the alarm threshold, ``medium`` above a third of it, else ``low``."""
        return np.where(prob >= self.alarm_threshold, "high",
                        np.where(prob >= self.alarm_threshold / 3.0, "medium", "low")).astype(object)

    def top_reasons(self, table: pd.DataFrame, contribs: np.ndarray, k: int = 3) -> list[str]:
        """The ``k`` features pushing each prediction most towards failure, as readable text."""
        if len(table) == 0:
            return []
        values = feature_matrix(table, self.features)
        parts = contribs[:, :-1]
        order = np.argsort(-parts, axis=1)[:, :k]
        rows = np.arange(len(table))[:, None]
        top_c = parts[rows, order]
        top_v = values[rows, order]
        names = np.asarray(self.features, dtype=object)[order]
        # One string per cell (tens to thousands of cells, not rows of data).
        return [
            "; ".join(format_reason(n, float(v), float(c), self.config)
                      for n, v, c in zip(names[i], top_v[i], top_c[i]) if c >= MIN_REASON_CONTRIBUTION)
            or "no feature raises the risk noticeably"
            for i in range(len(table))
        ]

    def dead_state_proba(self, table: pd.DataFrame) -> np.ndarray:
        """Probability that a cell is already dead at a feature row (NaN without a dead-state booster)."""
        if self.dead_booster is None or len(table) == 0:
            return np.full(len(table), np.nan)
        return self.dead_booster.predict(self._dmatrix(table))

    def already_dead(self, history: pd.DataFrame, last: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Which cells are dead at the end of ``history``, and why.

        With ``IsDead`` labels: the label. Without: the newest hour's mean voltage below
        ``config.dead_voltage`` (a collapsed cell), or the dead-state classifier (trained on the
        same features to recognise cells after death: heat, SG loss, voltage off its peers) at
        probability >= 0.5.
        """
        from .labels import DEAD_COLUMN, dead_flags

        if DEAD_COLUMN in history.columns and history[DEAD_COLUMN].notna().any():
            dead_rows = history.loc[dead_flags(history[DEAD_COLUMN]), C.CELL_ID].astype(str).unique()
            dead = last[C.CELL_ID].isin(dead_rows).to_numpy()
            return dead, np.where(dead, "IsDead label", "").astype(object)
        with np.errstate(invalid="ignore"):
            collapsed = last["LastVoltage"].to_numpy() < self.config.dead_voltage
        state = self.dead_state_proba(last)
        with np.errstate(invalid="ignore"):
            classified = state >= 0.5
        source = np.full(len(last), "", dtype=object)
        source[classified] = [f"dead-state classifier, p={p:.2f}" for p in state[classified]]
        source[collapsed] = f"voltage below {self.config.dead_voltage:g} V"
        return collapsed | classified, source

    def predict(
        self,
        history: pd.DataFrame,
        anomalies: pd.DataFrame | None = None,
        top_k: int = 3,
        grid: FeatureGrid | None = None,
    ) -> pd.DataFrame:
        """Per-cell risk as of the last reading of ``history`` (canonical readings, or raw packets / a minimal
        table, which are normalised first; no labels needed).

        Cells already dead (see :meth:`already_dead`) are reported dead with probability 1, not
        predicted. Cells with less than ``config.min_history_hours`` of data get band
        ``insufficient_history`` and no probability. Sorted by risk, dead cells first.
        """
        history = as_canonical(history)
        grid = grid or build_feature_grid(history, self.config, anomalies)
        last = grid.last_rows()
        cells = grid.cells.set_index(C.CELL_ID).reindex(last[C.CELL_ID])
        dead, source = self.already_dead(history, last)
        short_history = last["HistoryHours"].to_numpy() < self.config.min_history_hours
        if short_history.all() and not dead.all():
            longest = float(last["HistoryHours"].max())
            raise InputError(
                f"too little history: every cell has at most {longest:g} h of readings, the model needs "
                f"{self.config.min_history_hours:g} h per cell (its trailing windows are "
                f"{self.config.short_window_hours:g} h and {self.config.long_window_hours:g} h)"
            )
        scored = ~dead & ~short_history
        prob = np.full(len(last), np.nan)
        reasons = np.full(len(last), "", dtype=object)
        if scored.any():
            rows = last.loc[scored]
            prob[scored] = self.predict_proba(rows)
            reasons[scored] = self.top_reasons(rows, self.contributions(rows), top_k)
        band = np.full(len(last), "insufficient_history", dtype=object)
        band[scored] = self.risk_band(prob[scored])
        band[dead] = "dead"
        prob[dead] = 1.0
        reasons[dead] = "already dead (" + source[dead].astype(object) + ")"
        reasons[short_history & ~dead] = (
            f"less than {self.config.min_history_hours:g} h of history: not scored"
        )
        table = pd.DataFrame({
            C.DEVICE_ID: last[C.DEVICE_ID].to_numpy(),
            C.CELL_NUMBER: last[C.CELL_NUMBER].to_numpy(),
            C.CELL_ID: last[C.CELL_ID].to_numpy(),
            "FailureProbability": prob,
            "RiskBand": band,
            "AlreadyDead": dead,
            "DeadSource": source,
            "AsOf": grid.data_end,
            "HorizonDays": float(self.horizon_days),
            "LastReading": cells["LastReading"].to_numpy(),
            "HistoryHours": last["HistoryHours"].to_numpy(),
            "TopReasons": reasons,
        })
        table = table.sort_values(["AlreadyDead", "FailureProbability", C.DEVICE_ID, C.CELL_NUMBER],
                                  ascending=[False, False, True, True], na_position="last", kind="stable")
        table.insert(0, "Rank", np.arange(1, len(table) + 1))
        return table.reset_index(drop=True)

    # -- persistence ------------------------------------------------------------------
    def register(self, registry: ModelRegistry | None = None, metadata: dict[str, Any] | None = None, *,
                 holdout: pd.DataFrame | None = None, candidate_metrics: dict[str, Any] | None = None,
                 promote: bool = False) -> str:
        """Register as a candidate version of ``failure_classifier`` (gated on held-out PR-AUC vs the champion)."""
        from bms_schema.model_protocol import ModelCard, register_candidate
        from bms_schema.runtime import versions

        registry = registry or ModelRegistry()
        meta = {
            **self.metadata,
            **(metadata or {}),
            "model_type": "xgboost.Booster binary:logistic + calibration",
            "features": list(self.features),
            "horizon_days": float(self.horizon_days),
            "alarm_threshold": float(self.alarm_threshold),
            "feature_config": self.config.to_dict(),
            "calibration": self.calibrator.method,
            "library_versions": versions("xgboost", "scikit-learn", "pandas", "numpy"),
            "files_description": {MODEL_FILE: "XGBoost booster (UBJSON)",
                                  CALIBRATION_FILE: "probability calibration of the margin (JSON)"},
        }
        if self.dead_booster is not None:
            meta["files_description"][DEAD_STATE_FILE] = "XGBoost booster recognising already-dead cells (UBJSON)"
        if self.reference is not None:
            meta["files_description"][REFERENCE_FILE] = "a sample of training feature rows (drift reference)"
        cand = candidate_metrics if candidate_metrics is not None else (
            self.evaluate(holdout) if holdout is not None else {"pr_auc": None})
        self.card = ModelCard(family="failure", features=list(self.features), metrics=dict(meta.get("metrics") or cand),
                              primary_metric="pr_auc", higher_is_better=True,
                              training_rows=(meta.get("trained_on") or {}).get("rows"),
                              holdout="out-of-fold samples of held-out cells after the split time",
                              params={"horizon_days": float(self.horizon_days), "feature_config": self.config.to_dict()},
                              library_versions=meta["library_versions"])
        registered = register_candidate(self, holdout, registry=registry, promote=promote, candidate_metrics=cand,
                                        extra_metadata={**meta, "metrics": meta.get("metrics", cand)})
        self.version = registered.version
        self.directory = str(registry.locate(MODEL_NAME, registered.version))
        self.metadata = registry.metadata(MODEL_NAME, registered.version)
        self.decision = registered.summary()
        log.info("registered %s %s (horizon %g days) as %s", MODEL_NAME, registered.version, self.horizon_days,
                 registered.alias)
        return str(registered.version)

    @classmethod
    def from_version(cls, version: Any) -> "FailureModel":
        """Build from a verified :class:`bms_schema.ModelVersion`."""
        import xgboost as xgb

        meta = version.metadata
        try:
            features = list(meta["features"])
            horizon = float(meta["horizon_days"])
            threshold = float(meta["alarm_threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model {version.name}/{version.version}: metadata lacks {exc}") from exc
        def booster_from(file: str) -> Any:
            booster = xgb.Booster()
            try:
                booster.load_model(str(version.file(file)))
            except xgb.core.XGBoostError as exc:
                raise ModelError(f"model {version.name}/{version.version}: {file} is not a readable booster") from exc
            booster.set_param({"nthread": cls._threads()})
            return booster

        booster = booster_from(MODEL_FILE)
        dead_booster = booster_from(DEAD_STATE_FILE) if DEAD_STATE_FILE in meta.get("files", {}) else None
        calibration = json.loads(Path(version.file(CALIBRATION_FILE)).read_text())
        reference = None
        if REFERENCE_FILE in meta.get("files", {}):
            reference = pd.read_parquet(version.file(REFERENCE_FILE))
        return cls(booster=booster, calibrator=Calibrator.from_dict(calibration), features=features,
                   config=FeatureConfig.from_dict(meta.get("feature_config")), horizon_days=horizon,
                   alarm_threshold=threshold, metadata=meta, version=version.version, directory=str(version.dir),
                   dead_booster=dead_booster, reference=reference)


def find_version(registry: ModelRegistry, horizon_days: float | None = None, version: str = "champion") -> str | None:
    """The version to predict with: ``champion`` by default (``None`` when there is none).

    The champion serves one horizon; a request for another horizon is refused with the versions
    trained for it (pass one as ``model_version`` or promote it).
    """
    resolved = registry.resolve(MODEL_NAME, version or "champion")
    if resolved is None or horizon_days is None or version not in ("champion", "@champion", "", None):
        return resolved
    try:
        meta = registry.metadata(MODEL_NAME, resolved)
    except ModelError:
        return resolved
    champion_horizon = float(meta.get("horizon_days", -1))
    if abs(champion_horizon - float(horizon_days)) > 1e-9:
        same = []
        for candidate in registry.versions(MODEL_NAME):
            try:
                if abs(float(registry.metadata(MODEL_NAME, candidate).get("horizon_days", -1)) - horizon_days) < 1e-9:
                    same.append(candidate)
            except ModelError:
                continue
        raise ModelError(
            f"the champion {MODEL_NAME} {resolved} predicts a {champion_horizon:g}-day horizon, not {horizon_days:g} "
            f"days: " + (f"versions trained for {horizon_days:g} days are {', '.join(same)} (pass model_version or "
                         "promote one with train_failure_model promote=true)" if same else
                         f"train one with train_failure_model horizon_days={horizon_days:g}"))
    return resolved


def load_failure_model(version: str = "champion", horizon_days: float | None = None,
                       registry: ModelRegistry | None = None) -> FailureModel:
    """Load a registered failure classifier (the champion by default; checksums verified).

    With no model registered the error names the ``train_failure_model`` tool (predicting never trains).
    """
    from bms_schema.model_protocol import ModelCard, no_model_error

    registry = registry or ModelRegistry()
    resolved = find_version(registry, horizon_days, version)
    if resolved is None:
        raise no_model_error(MODEL_NAME, "train_failure_model", registry)
    model = FailureModel.from_version(registry.load(MODEL_NAME, resolved))
    if horizon_days is not None and abs(model.horizon_days - horizon_days) > 1e-9:
        raise ModelError(f"model {MODEL_NAME}/{resolved} predicts a {model.horizon_days:g}-day horizon, "
                         f"not {horizon_days:g} days: pick another version or train one")
    model.card = ModelCard.from_metadata(model.metadata)
    return model
