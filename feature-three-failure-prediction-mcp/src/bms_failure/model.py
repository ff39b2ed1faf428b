"""The failure model: one discrete-time hazard booster (XGBoost) + its survival curve, saved in the registry.

``FailureModel.predict(history)`` turns a readings table (no labels needed) into the per-cell
table: failure probability within the requested horizon (and 7/14/30 days), remaining useful life
p10/p50/p90, state of health, alarm with trigger and recommended action, and the physics
trend-to-threshold estimate side by side. ``load_failure_model("latest")`` gives live inference
the registered model.
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

from . import trends as T
from .config import (
    ALARM_HORIZON_DAYS,
    ALARM_SUSTAIN_HOURS,
    DEAD_STATE_FILE,
    DISTRIBUTION_FILE,
    LOGGER,
    MODEL_FILE,
    MODEL_NAME,
    REFERENCE_FILE,
    REPORT_HORIZONS,
    FeatureConfig,
    format_reason,
)
from .features import FeatureGrid, as_canonical, build_feature_grid, feature_matrix
from .survival import HazardCurve, hazard_contributions, hazard_logits

log = logging.getLogger(LOGGER)

#: A feature is listed as a reason only when it raises the hazard's log-odds by at least this much.
MIN_REASON_CONTRIBUTION = 0.01
#: Columns of the per-cell prediction table, in order.
PREDICTION_COLUMNS = (
    "Rank",
    C.DEVICE_ID,
    C.CELL_NUMBER,
    C.CELL_ID,
    "FailureProbability",
    "StateOfHealth",
    "RemainingLifeDays",
    "RemainingLifeP10",
    "RemainingLifeP90",
    "RemainingLifeText",
    "FailureProbability7d",
    "FailureProbability14d",
    "FailureProbability30d",
    "RiskBand",
    "Alarm",
    "AlarmTrigger",
    "AlarmLeadDays",
    "RecommendedAction",
    "TrendDaysToThreshold",
    "TrendRule",
    "AlreadyDead",
    "DeadSource",
    "MissingInputs",
    "AsOf",
    "HorizonDays",
    "LastReading",
    "HistoryHours",
    "TopReasons",
)
#: Inputs a cell needs in its newest ``short_window_hours`` to be scored (feature column that is
#: missing without them -> canonical measurement named in ``MissingInputs``).
REQUIRED_RECENT = {"voltage_mean_short": C.VOLTAGE, "temp_dev_string_short": C.TEMPERATURE}


def xgb_params(seed: int = 0) -> dict[str, Any]:
    """Settings of the small dead-state classifier (XGBoost 3.x)."""
    from bms_schema.runtime import compute_threads

    return {
        "n_estimators": 80,
        "learning_rate": 0.15,
        "max_depth": 3,
        "min_child_weight": 2.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "max_bin": 64,
        "tree_method": "hist",
        "objective": "binary:logistic",
        "nthread": compute_threads(),
        "random_state": seed,
    }


def sustained_minimum(
    values: np.ndarray, cells: np.ndarray, times: pd.Series, hours: float = ALARM_SUSTAIN_HOURS
) -> np.ndarray:
    """Per row, the lowest value of its cell over the trailing ``hours`` (rows in any order)."""
    frame = pd.DataFrame({"cell": cells, "t": pd.DatetimeIndex(times), "v": values, "i": np.arange(len(values))})
    frame = frame.sort_values(["cell", "t"], kind="stable")
    rolled = frame.groupby("cell", sort=False).rolling(f"{int(round(hours * 60))}min", on="t")["v"].min()
    out = np.empty(len(values))
    out[frame["i"].to_numpy()] = rolled.to_numpy()
    return out


def remaining_life_text(p50: np.ndarray, p10: np.ndarray, p90: np.ndarray, limit: float | None) -> np.ndarray:
    """Remaining life as an operator reads it: ``"12 d (p10 5 d - p90 30 d)"``; a value beyond ``limit``
    (the longest time to death the model saw) is censored as ``"> N d"`` (the band is not meaningful
    there); empty where there is no estimate (dead: ``"0 d"``)."""
    cap = np.inf if limit is None or not np.isfinite(limit) else float(limit)

    def one(v: float) -> str:
        return f"> {cap:.0f} d" if v > cap else f"{v:.0f} d" if v >= 1.5 else f"{v:.1f} d"

    out = np.full(len(p50), "", dtype=object)
    for i, (a, lo, hi) in enumerate(zip(p50, p10, p90)):  # one string per cell
        if not np.isfinite(a):
            continue
        if a > cap:
            out[i] = one(a)
        elif a <= 0:
            out[i] = "0 d"
        else:
            out[i] = f"{one(a)} (p10 {one(lo)} - p90 {one(hi)})"
    return out


def _days_text(days: float) -> str:
    return "n/a" if not np.isfinite(days) else (f"{days:.1f} days" if days < 10 else f"{days:.0f} days")


@dataclass
class FailureModel:
    booster: Any  # xgboost.Booster, binary:logistic on person-period rows (the hazard per time interval)
    distribution: HazardCurve
    features: list[str]
    config: FeatureConfig
    #: The horizon ``FailureProbability`` reports by default (any horizon can be asked for).
    horizon_days: float = 7.0
    #: Alarm when P(death within ``alarm_horizon_days``) reaches this.
    alarm_threshold: float = 0.5
    alarm_horizon_days: float = ALARM_HORIZON_DAYS
    #: The longest time to death seen in training (days): probabilities are answered for any horizon up
    #: to it, and remaining lives beyond it are reported as "> N days" (None: not known, no limit).
    max_horizon_days: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    directory: str | None = None
    #: Optional booster recognising cells that are already dead (used when the input has no IsDead).
    dead_booster: Any = None
    #: A sample of the training feature rows (drift monitoring in live inference); None if not stored.
    reference: pd.DataFrame | None = None
    #: The model card (``bms_schema.model_protocol.ModelCard``): set by training and by loading.
    card: Any = None
    #: Held-out sample rows of the training (calibration cells) and the model's scores on them:
    #: what a candidate and the champion are compared on when registering.
    holdout: pd.DataFrame | None = field(default=None, repr=False)
    holdout_metrics: dict[str, Any] | None = None

    # -- scoring ----------------------------------------------------------------------
    @staticmethod
    def _threads() -> int:
        from bms_schema.runtime import compute_threads

        return compute_threads()

    def margin(self, table: pd.DataFrame) -> np.ndarray:
        """The booster's hazard logits per feature row and time interval (rows x intervals): what
        :attr:`distribution` turns into the survival curve."""
        return hazard_logits(self.booster, feature_matrix(table, self.features), self.features, self.distribution)

    def check_horizon(self, horizon_days: float | None) -> float:
        """``horizon_days`` (default: the model's) when the model can answer it: positive and at most
        :attr:`max_horizon_days`; else an :class:`InputError` naming the limit."""
        horizon = float(self.horizon_days if horizon_days is None else horizon_days)
        if not np.isfinite(horizon) or horizon <= 0:
            raise InputError(f"horizon_days must be a positive number of days, got {horizon_days}")
        limit = self.max_horizon_days
        if limit is not None and horizon > limit + 1e-9:
            raise InputError(
                f"horizon_days={horizon:g}: the failure model ({self.version or 'unregistered'}) saw times to death "
                f"of at most {limit:.0f} days in training, so it answers horizons up to {limit:.0f} days; ask for a "
                "shorter horizon or train on a longer history"
            )
        return horizon

    def predict_proba(self, table: pd.DataFrame, horizon_days: float | None = None) -> np.ndarray:
        """Probability of death within ``horizon_days`` (default: the model's; any horizon up to
        :attr:`max_horizon_days`) for each feature row, from the same survival curve as every other horizon."""
        return self.distribution.probability(self.margin(table), self.check_horizon(horizon_days))

    def remaining_life(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        """Remaining useful life in days: p10, p50, p90 of the same distribution."""
        mu = self.margin(table)
        return {q: self.distribution.quantile(mu, v) for q, v in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))}

    def contributions(self, table: pd.DataFrame) -> np.ndarray:
        """Per-prediction feature contributions (``pred_contribs=True``) to the hazard's log-odds in the
        interval holding 14 days, negated (negative = higher hazard = shorter life); the last column is the bias."""
        if len(table) == 0:
            return np.zeros((0, len(self.features) + 1))
        x = feature_matrix(table, self.features)
        return -hazard_contributions(self.booster, x, self.features, self.distribution)

    def sustained_alarm_probability(self, grid: FeatureGrid, last: pd.DataFrame) -> np.ndarray:
        """P(death within the alarm horizon) held over the last ``ALARM_SUSTAIN_HOURS``: the lowest value
        over the grid rows of that window (per row of ``last``)."""
        table = grid.table
        window = grid.config.buckets(ALARM_SUSTAIN_HOURS)
        recent = table.loc[(table["Bucket"] > table["Bucket"].max() - window) & table[C.CELL_ID].isin(last[C.CELL_ID])]
        every = max(1, grid.config.buckets(6.0))  # every 6 h within the window is enough
        recent = recent.loc[((table["Bucket"].max() - recent["Bucket"]) % every) == 0]
        p = self.predict_proba(recent, self.alarm_horizon_days)
        low = pd.Series(p).groupby(recent[C.CELL_ID].to_numpy()).min()
        return low.reindex(last[C.CELL_ID].to_numpy()).to_numpy()

    def risk_band(self, prob_alarm: np.ndarray) -> np.ndarray:
        """``high`` (alarm) at or above the alarm threshold, ``medium`` above a third of it, else ``low``."""
        return np.where(
            prob_alarm >= self.alarm_threshold,
            "high",
            np.where(prob_alarm >= self.alarm_threshold / 3.0, "medium", "low"),
        ).astype(object)

    def top_reasons(self, table: pd.DataFrame, contribs: np.ndarray, k: int = 3) -> list[str]:
        """The ``k`` features shortening each cell's expected life most, as readable text."""
        if len(table) == 0:
            return []
        values = feature_matrix(table, self.features)
        parts = -contribs[:, :-1]  # positive = shortens life
        order = np.argsort(-parts, axis=1)[:, :k]
        rows = np.arange(len(table))[:, None]
        top_c = parts[rows, order]
        top_v = values[rows, order]
        names = np.asarray(self.features, dtype=object)[order]
        # One string per cell (tens to thousands of cells, not rows of data).
        return [
            "; ".join(
                format_reason(n, float(v), float(c), self.config, effect=f"hazard odds x{np.exp(c):.2f}")
                for n, v, c in zip(names[i], top_v[i], top_c[i])
                if c >= MIN_REASON_CONTRIBUTION
            )
            or "no feature raises the hazard noticeably"
            for i in range(len(table))
        ]

    def dead_state_proba(self, table: pd.DataFrame) -> np.ndarray:
        """Probability that a cell is already dead at a feature row (NaN without a dead-state booster)."""
        if self.dead_booster is None or len(table) == 0:
            return np.full(len(table), np.nan)
        import xgboost as xgb

        dm = xgb.DMatrix(
            feature_matrix(table, self.features),
            feature_names=list(self.features),
            missing=np.nan,
            nthread=self._threads(),
        )
        return self.dead_booster.predict(dm)

    def already_dead(self, history: pd.DataFrame, last: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Which cells are dead at the end of ``history``, and why.

        With ``IsDead`` labels: the label. Without: the newest hour's mean voltage below
        ``config.dead_voltage`` (a collapsed cell), or - for cells with enough history to judge - the
        dead-state classifier at probability >= 0.5.
        """
        from .labels import DEAD_COLUMN, dead_flags

        if DEAD_COLUMN in history.columns and history[DEAD_COLUMN].notna().any():
            dead_rows = history.loc[dead_flags(history[DEAD_COLUMN]), C.CELL_ID].astype(str).unique()
            dead = last[C.CELL_ID].isin(dead_rows).to_numpy()
            return dead, np.where(dead, "IsDead label", "").astype(object)
        with np.errstate(invalid="ignore"):
            collapsed = last["LastVoltage"].to_numpy() < self.config.dead_voltage
        state = self.dead_state_proba(last)
        enough = last["HistoryHours"].to_numpy() >= self.config.min_history_hours
        with np.errstate(invalid="ignore"):
            classified = (state >= 0.5) & enough
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
        horizon_days: float | None = None,
    ) -> pd.DataFrame:
        """Per-cell risk and remaining life as of the last reading of ``history`` (canonical readings, or
        raw packets / a minimal table, which are normalised first; no labels needed).

        Cells already dead (see :meth:`already_dead`) are reported dead with probability 1. Cells with
        less than ``config.min_history_hours`` of data get band ``insufficient_history``; cells without a
        recent voltage or temperature reading get band ``unknown`` (``MissingInputs`` says which):
        neither gets a probability. Sorted by risk, dead cells first.
        """
        horizon = self.check_horizon(horizon_days)
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
        missing = np.full(len(last), "", dtype=object)
        for column, measurement in REQUIRED_RECENT.items():
            absent = last[column].isna().to_numpy()
            missing[absent] = np.where(missing[absent] == "", measurement, missing[absent] + ", " + measurement)
        unknown = (missing != "") & ~dead & ~short_history
        scored = ~dead & ~short_history & ~unknown
        n = len(last)
        prob = np.full(n, np.nan)
        by_horizon = {h: np.full(n, np.nan) for h in REPORT_HORIZONS}
        rul = {q: np.full(n, np.nan) for q in ("p10", "p50", "p90")}
        p_alarm = np.full(n, np.nan)
        reasons = np.full(n, "", dtype=object)
        if scored.any():
            rows = last.loc[scored]
            mu = self.margin(rows)
            prob[scored] = self.distribution.probability(mu, horizon)
            for h in REPORT_HORIZONS:
                by_horizon[h][scored] = self.distribution.probability(mu, h)
            for q, v in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
                rul[q][scored] = self.distribution.quantile(mu, v)
            p_alarm[scored] = np.fmin(
                self.distribution.probability(mu, self.alarm_horizon_days), self.sustained_alarm_probability(grid, rows)
            )
            reasons[scored] = self.top_reasons(rows, self.contributions(rows), top_k)
        trend = T.trend_to_threshold(last)
        health = T.indicator_health(last)
        band = np.full(n, "insufficient_history", dtype=object)
        band[scored] = self.risk_band(p_alarm[scored])
        band[unknown] = "unknown"
        band[dead] = "dead"
        alarm = band == "high"
        trigger = np.full(n, "", dtype=object)
        trend_rule = trend["TrendRule"].to_numpy(dtype=object)
        first_reason = np.asarray([r.split("; ")[0] for r in reasons], dtype=object)
        trigger[alarm] = np.where(
            trend_rule[alarm] != "", "trend towards " + trend_rule[alarm].astype(object), first_reason[alarm]
        )
        action = np.full(n, "", dtype=object)
        action[alarm] = T.recommended_action(
            trigger[alarm], by_horizon[7.0][alarm], last["rule_ohmic_rise"].to_numpy()[alarm]
        )
        action[dead] = "replace the cell (failed)"
        prob[dead] = 1.0
        for h in REPORT_HORIZONS:
            by_horizon[h][dead] = 1.0
        for q in rul:
            rul[q][dead] = 0.0
        health = np.where(dead, 0.0, np.where(scored, health, np.nan))
        reasons[dead] = "already dead (" + source[dead].astype(object) + ")"
        reasons[short_history & ~dead] = f"less than {self.config.min_history_hours:g} h of history: not scored"
        reasons[unknown] = (
            "unknown: no "
            + missing[unknown].astype(object)
            + f" reading in the last {self.config.short_window_hours:g} h"
        )
        table = pd.DataFrame(
            {
                C.DEVICE_ID: last[C.DEVICE_ID].to_numpy(),
                C.CELL_NUMBER: last[C.CELL_NUMBER].to_numpy(),
                C.CELL_ID: last[C.CELL_ID].to_numpy(),
                "FailureProbability": prob,
                "StateOfHealth": health,
                "RemainingLifeDays": rul["p50"],
                "RemainingLifeP10": rul["p10"],
                "RemainingLifeP90": rul["p90"],
                "RemainingLifeText": remaining_life_text(rul["p50"], rul["p10"], rul["p90"], self.max_horizon_days),
                "FailureProbability7d": by_horizon[7.0],
                "FailureProbability14d": by_horizon[14.0],
                "FailureProbability30d": by_horizon[30.0],
                "RiskBand": band,
                "Alarm": alarm,
                "AlarmTrigger": trigger,
                "AlarmLeadDays": np.where(alarm, rul["p50"], np.nan),
                "RecommendedAction": action,
                "TrendDaysToThreshold": np.where(dead, np.nan, trend["TrendDaysToThreshold"].to_numpy()),
                "TrendRule": np.where(dead, "", trend_rule).astype(object),
                "AlreadyDead": dead,
                "DeadSource": source,
                "MissingInputs": missing,
                "AsOf": grid.data_end,
                "HorizonDays": horizon,
                "LastReading": cells["LastReading"].to_numpy(),
                "HistoryHours": last["HistoryHours"].to_numpy(),
                "TopReasons": reasons,
            }
        )
        table = table.sort_values(
            ["AlreadyDead", "FailureProbability", C.DEVICE_ID, C.CELL_NUMBER],
            ascending=[False, False, True, True],
            na_position="last",
            kind="stable",
        )
        table.insert(0, "Rank", np.arange(1, len(table) + 1))
        return table.reset_index(drop=True)

    # -- model protocol (bms_schema.model_protocol) ---------------------------------------
    registry_name: ClassVar[str] = MODEL_NAME

    def fit(self, data: pd.DataFrame, horizon_days: float | None = None, **kwargs: Any) -> "FailureModel":
        """Train on a labelled readings table (see :func:`bms_failure.training.train_failure_model`);
        returns the fitted model (this object, updated)."""
        from .training import train_failure_model

        result = train_failure_model(data, horizon_days or self.horizon_days, config=self.config, **kwargs)
        self.__dict__.update(result.model.__dict__)
        return self

    def evaluate(self, holdout: pd.DataFrame) -> dict[str, Any]:
        """Scores on held-out sample rows (feature rows with ``DeathTime`` and ``CensorAt``, as stored by
        training): ROC-AUC of dying within 7/14/30 days and remaining-life accuracy. Never changes the model."""
        from .training import holdout_scores

        return holdout_scores(self, holdout)

    def save(self, staging_dir: Path | str) -> None:
        """Write the model's files (booster UBJ, distribution JSON, dead-state booster, drift reference)."""
        from bms_schema.atomic import atomic_write_json

        staging_dir = Path(staging_dir)
        self.booster.save_model(str(staging_dir / MODEL_FILE))
        if self.dead_booster is not None:
            self.dead_booster.save_model(str(staging_dir / DEAD_STATE_FILE))
        if self.reference is not None:
            self.reference.to_parquet(staging_dir / REFERENCE_FILE, index=False)
        atomic_write_json(staging_dir / DISTRIBUTION_FILE, self.distribution.to_dict())

    @classmethod
    def load(cls, version: str = "champion", registry: ModelRegistry | None = None) -> "FailureModel":
        return load_failure_model(version, registry=registry)

    def registry_metadata(self) -> dict[str, Any]:
        """What ``metadata.json`` of a registered version holds besides the card."""
        from bms_schema.runtime import versions

        files = {
            MODEL_FILE: "XGBoost discrete-time hazard booster (UBJSON)",
            DISTRIBUTION_FILE: "hazard intervals and logit calibration of the survival curve (JSON)",
        }
        if self.dead_booster is not None:
            files[DEAD_STATE_FILE] = "XGBoost booster recognising already-dead cells (UBJSON)"
        if self.reference is not None:
            files[REFERENCE_FILE] = "a sample of training feature rows (drift reference)"
        return {
            **self.metadata,
            "model_type": "xgboost.Booster binary:logistic discrete-time hazard (person-period rows)",
            "features": list(self.features),
            "horizon_days": float(self.horizon_days),
            "any_horizon": True,
            "alarm_threshold": float(self.alarm_threshold),
            "alarm_horizon_days": float(self.alarm_horizon_days),
            "max_horizon_days": None if self.max_horizon_days is None else float(self.max_horizon_days),
            "feature_config": self.config.to_dict(),
            "distribution": self.distribution.to_dict(),
            "library_versions": versions("xgboost", "scikit-learn", "pandas", "numpy", "scipy"),
            "files_description": files,
        }

    def register(
        self,
        holdout: pd.DataFrame,
        registry: ModelRegistry | None = None,
        promote: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """Register as a candidate (``bms_schema.model_protocol.register_candidate``): it becomes champion
        only when it beats the champion on ``holdout`` (or with ``promote``). Returns the ``Registered``."""
        from bms_schema.model_protocol import register_candidate

        registry = registry or ModelRegistry()
        if self.card is None:
            raise ModelError("the failure model has no model card: train it before registering")
        registered = register_candidate(
            self,
            holdout,
            registry=registry,
            promote=promote,
            candidate_metrics=self.holdout_metrics,
            extra_metadata={**self.registry_metadata(), **(metadata or {})},
        )
        self.version = registered.version
        self.directory = str(registry.locate(MODEL_NAME, registered.version))
        self.metadata = {**self.metadata, **self.registry_metadata(), **(metadata or {})}
        log.info("registered %s %s as %s", MODEL_NAME, registered.version, registered.alias)
        return registered

    @classmethod
    def from_version(cls, version: Any) -> "FailureModel":
        """Build from a verified :class:`bms_schema.ModelVersion`."""
        import xgboost as xgb

        meta = version.metadata
        if DISTRIBUTION_FILE not in meta.get("files", {}):
            raise ModelError(
                f"model {version.name}/{version.version} is an older failure classifier without a "
                "survival distribution: train a new one with train_failure_model"
            )
        try:
            features = list(meta["features"])
            horizon = float(meta["horizon_days"])
            threshold = float(meta["alarm_threshold"])
            alarm_horizon = float(meta.get("alarm_horizon_days", ALARM_HORIZON_DAYS))
            max_horizon = None if meta.get("max_horizon_days") is None else float(meta["max_horizon_days"])
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
        try:
            distribution = HazardCurve.from_dict(json.loads(Path(version.file(DISTRIBUTION_FILE)).read_text()))
        except ValueError as exc:
            raise ModelError(f"model {version.name}/{version.version}: {DISTRIBUTION_FILE} is not JSON") from exc
        reference = None
        if REFERENCE_FILE in meta.get("files", {}):
            reference = pd.read_parquet(version.file(REFERENCE_FILE))
        from bms_schema.model_protocol import ModelCard

        return cls(
            booster=booster,
            distribution=distribution,
            features=features,
            card=ModelCard.from_metadata(meta),
            config=FeatureConfig.from_dict(meta.get("feature_config")),
            horizon_days=horizon,
            alarm_threshold=threshold,
            alarm_horizon_days=alarm_horizon,
            max_horizon_days=max_horizon,
            metadata=meta,
            version=version.version,
            directory=str(version.dir),
            dead_booster=dead_booster,
            reference=reference,
        )


def find_version(registry: ModelRegistry, horizon_days: float | None = None, version: str = "champion") -> str | None:
    """The version ``version`` means (``champion`` by default, ``challenger``, ``latest`` or ``vNNNN``);
    None when there is none. A survival model answers every horizon, so ``horizon_days`` does not
    narrow the choice (kept for callers of the former per-horizon classifiers)."""
    return registry.resolve(MODEL_NAME, version or "champion")


def load_failure_model(
    version: str = "champion", horizon_days: float | None = None, registry: ModelRegistry | None = None
) -> FailureModel:
    """Load a registered failure model (checksums verified). Any ``horizon_days`` can be predicted:
    when given, it becomes the model's default horizon."""
    registry = registry or ModelRegistry()
    resolved = find_version(registry, horizon_days, version)
    if resolved is None:
        from bms_schema.model_protocol import no_model_error

        raise no_model_error(MODEL_NAME, "train_failure_model", registry)
    model = FailureModel.from_version(registry.load(MODEL_NAME, resolved))
    if horizon_days is not None:
        model.horizon_days = float(horizon_days)
    return model
