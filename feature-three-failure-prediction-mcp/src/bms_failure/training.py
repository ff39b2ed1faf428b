"""Train and validate the survival model (by cell and by time) and compare it with the IEEE rules.

Validation: cells are divided into ``folds`` groups and time is cut at ``split_time`` (65 % of the
sampled span). For each fold, a model is trained on the other cells' samples up to ``split_time``
with their targets censored there (a death after ``split_time`` is not known yet), early-stopped
and its time distribution fitted on held-out calibration cells; it then scores the fold's cells
after ``split_time``. Metrics pool these out-of-fold scores at every horizon (7, 14, 30 days),
next to the IEEE 450 voltage and SG rules, the IEEE 1188 ohmic rule and the trend-to-threshold
estimate, all computed from the same feature rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError
from bms_schema import columns as C

from . import evaluation as E
from . import survival as S
from . import trends as T
from .config import (
    ALARM_BUDGET,
    ALARM_HORIZON_DAYS,
    FEATURES,
    LOGGER,
    REFERENCE_ROWS,
    REPORT_HORIZONS,
    FeatureConfig,
    readable,
)
from .features import RULE_COLUMNS, FeatureGrid, as_canonical, build_feature_grid, feature_matrix
from .labels import death_times, label_grid, sampling_points
from .model import FailureModel, sustained_minimum, xgb_params

log = logging.getLogger(LOGGER)

#: Feature importance (mean |contribution|) is estimated on at most this many test samples.
IMPORTANCE_ROWS = 8000
#: Remaining-life accuracy is judged on cells that die within this many days of a sample.
RUL_WITHIN_DAYS = 60.0
MONTH_DAYS = 30.0
#: The hazard is trained on every sample this close to a seen death ...
DENSE_BEFORE_DEATH_DAYS = 14.0
#: ... and on every THIN_EVERY-th sampling time elsewhere (weighted accordingly).
THIN_EVERY = 4
#: Recalibrate the hazard logits (scale, shift) on the calibration cells.
CALIBRATE = True
#: Cells of a prior fleet (``train_failure_model(..., prior=...)``) get this prefix to their ids.
PRIOR_PREFIX = "prior:"


@dataclass
class PriorSamples:
    """Training samples of a prior fleet (e.g. a simulated one) pooled with the user's own: their
    features, targets in days (``upper`` inf: censored at ``lower``, the prior's own end of data) and
    the weight of each sample relative to the user's."""

    rows: pd.DataFrame
    lower: np.ndarray
    upper: np.ndarray
    weight: float = 1.0


@dataclass
class TrainingResult:
    model: FailureModel
    metrics: dict[str, Any]
    #: Held-out test samples with ``DeathTime``, per-horizon ``Label<h>``/``Probability<h>`` (for plots and checks).
    evaluation: pd.DataFrame
    importance: dict[str, float] = field(default_factory=dict)
    grid: FeatureGrid | None = None


def check_horizon(horizon_days: float, grid: FeatureGrid | None = None) -> float:
    """Validate a horizon; with a grid, it must leave room for history and a labelled future."""
    if horizon_days is None or not np.isfinite(horizon_days) or horizon_days <= 0:
        raise InputError(f"horizon_days must be a positive number of days, got {horizon_days}")
    if grid is not None:
        span_days = (grid.data_end - grid.data_start).total_seconds() / 86400.0
        usable = span_days - grid.config.min_history_hours / 24.0
        if horizon_days >= usable:
            raise InputError(
                f"horizon_days={horizon_days:g} is beyond the data's span: the data covers {span_days:.2f} days, of "
                f"which the first {grid.config.min_history_hours / 24.0:g} are history, so at most "
                f"{max(usable, 0):.2f} days can be labelled; use a shorter horizon or more data"
            )
    return float(horizon_days)


def _subsample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def _both_classes(label: np.ndarray) -> bool:
    return 0 < int(label.sum()) < len(label)


def check_inputs(frame: pd.DataFrame) -> None:
    """Refuse to train where a measurement every cell needs has no reading at all."""
    for column in (C.VOLTAGE, C.TEMPERATURE):
        if column not in frame.columns or not pd.to_numeric(frame[column], errors="coerce").notna().any():
            raise InputError(
                f"'{column}' has no valid reading in the data: a failure model cannot be trained "
                "without it - check the column (sentinels and impossible values count as missing)"
            )


# -- samples ------------------------------------------------------------------------------
def labelled_samples(
    frame: pd.DataFrame, config: FeatureConfig, anomalies: pd.DataFrame | None = None, grid: FeatureGrid | None = None
) -> tuple[FeatureGrid, pd.DataFrame, pd.Series, pd.DataFrame]:
    """Feature grid, samples (sampling points where the cell is alive, with ``DeathTime``), death times
    and the labelled grid, with the input checks training needs."""
    frame = as_canonical(frame)
    deaths = death_times(frame)
    check_inputs(frame)
    grid = grid or build_feature_grid(frame, config, anomalies)
    if int(deaths.notna().sum()) == 0:
        raise InputError(
            f"no cell dies in the data (IsDead is 0 for all {len(deaths)} cells): a failure model cannot be "
            "trained without deaths - use data with failures (e.g. a simulated fleet), or predict with an "
            "already registered model"
        )
    labelled = label_grid(grid, deaths, 24.0)
    mask = sampling_points(labelled, grid) & labelled["Alive"].to_numpy()
    samples = labelled.loc[mask].reset_index(drop=True)
    if len(samples) == 0 or samples[C.TIMESTAMP].nunique() < 2:
        raise InputError(
            f"too little history: no cell has {config.min_history_hours:g} h of readings before the "
            "end of the data (training needs days to weeks of readings per cell)"
        )
    return grid, samples, deaths, labelled


def horizon_labels(rows: pd.DataFrame, horizon_days: float, data_end: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """``(label, known)``: dies within ``horizon_days`` of the row; known when seen or the data reaches t+h."""
    t = rows[C.TIMESTAMP]
    death = rows["DeathTime"]
    h = pd.Timedelta(days=horizon_days)
    label = (death.notna() & (death < t + h)).to_numpy()
    known = label | (t + h <= data_end).to_numpy()
    return label, known


# -- fitting ------------------------------------------------------------------------------
def alarm_threshold(
    model: FailureModel, rows: pd.DataFrame, data_end: pd.Timestamp, budget: float = ALARM_BUDGET
) -> float:
    """The lowest threshold on P(death within the alarm horizon) that alarms at most ``budget`` of the
    surviving cells in a month: the (1 - budget) quantile of each surviving cell's monthly maximum."""
    death = rows["DeathTime"]
    survivor = (death.isna() | (death > data_end)).to_numpy()
    # Judge on rows with a full baseline and trend window (the steady state live cells are in).
    mature = (rows["HistoryHours"] >= model.config.baseline_hours + model.config.trend_window_hours).to_numpy()
    if (survivor & mature).any():
        survivor &= mature
    if not survivor.any():
        return 0.5
    kept = rows.loc[survivor]
    p = sustained_minimum(
        model.predict_proba(kept, model.alarm_horizon_days), kept[C.CELL_ID].to_numpy(), kept[C.TIMESTAMP]
    )
    month = ((kept[C.TIMESTAMP] - kept[C.TIMESTAMP].min()).dt.total_seconds() // (MONTH_DAYS * 86400)).to_numpy()
    peak = pd.Series(p).groupby([kept[C.CELL_ID].to_numpy(), month]).max().to_numpy()
    return float(np.clip(np.quantile(peak, 1.0 - budget), 0.05, 0.95))


def fit_survival(
    train: pd.DataFrame,
    calib: pd.DataFrame,
    deaths: pd.Series,
    censor_at: pd.Timestamp,
    features: list[str],
    config: FeatureConfig,
    seed: int,
    rounds: int | None = None,
    calibrate: bool = CALIBRATE,
    prior: PriorSamples | None = None,
) -> tuple[FailureModel, int]:
    """Train the hazard booster on the person-period rows of ``train`` (targets censored at ``censor_at``)
    and of ``prior`` (a prior fleet's samples, with their own targets), early-stop on ``calib`` (unless
    ``rounds`` is given), recalibrate its logits on ``calib`` (:func:`survival.calibrate_curve`, with
    ``calibrate``) and choose the alarm threshold on ``calib``: the user's own cells."""
    use_t, lo_t, up_t = S.survival_targets(train, deaths, censor_at)
    use_c, lo_c, up_c = S.survival_targets(calib, deaths, censor_at)
    train, calib = train.loc[use_t], calib.loc[use_c]
    lo_t, up_t, lo_c, up_c = lo_t[use_t], up_t[use_t], lo_c[use_c], up_c[use_c]
    keep, weight = thin_samples(train, lo_t, up_t, config)
    x_train = feature_matrix(train.loc[keep], features)
    x_calib = feature_matrix(calib, features)
    lo_k, up_k = lo_t[keep], up_t[keep]
    if prior is not None and len(prior.rows):
        keep_p, weight_p = thin_samples(prior.rows, prior.lower, prior.upper, config)
        x_train = np.concatenate([x_train, feature_matrix(prior.rows.loc[keep_p], features)])
        lo_k = np.concatenate([lo_k, prior.lower[keep_p]])
        up_k = np.concatenate([up_k, prior.upper[keep_p]])
        weight = np.concatenate([weight, prior.weight * weight_p])
    if rounds is None:
        booster, used, curve = S.fit_hazard(
            x_train, lo_k, up_k, features, seed, weight=weight, valid=(x_calib, lo_c, up_c)
        )
    else:
        booster, used, curve = S.fit_hazard(x_train, lo_k, up_k, features, seed, weight=weight, rounds=rounds)
    if calibrate and len(x_calib):
        curve = S.calibrate_curve(booster, x_calib, lo_c, up_c, features, curve)
    model = FailureModel(booster=booster, distribution=curve, features=features, config=config)
    seen = np.concatenate([lo_t[np.isfinite(up_t)], lo_c[np.isfinite(up_c)]])
    if prior is not None:
        seen = np.concatenate([seen, prior.lower[np.isfinite(prior.upper)]])
    # the longest time to death the labels show, but never shorter than the horizons every table reports
    model.max_horizon_days = float(max(np.max(seen) if len(seen) else 0.0, max(REPORT_HORIZONS)))
    if len(calib):
        model.alarm_threshold = alarm_threshold(model, calib, censor_at)
    return model, used


def prior_samples(frame: pd.DataFrame, config: FeatureConfig, weight: float = 1.0) -> PriorSamples:
    """The training samples of a prior fleet with ``IsDead`` (a simulated fleet, or another site's
    labelled history): its deaths are known up to its own end of data; its cells' ids get
    :data:`PRIOR_PREFIX` so they never meet the user's cells in a split."""
    if not np.isfinite(weight) or weight <= 0:
        raise InputError(f"prior_weight must be a positive number, got {weight}")
    grid, samples, deaths, _ = labelled_samples(frame, config)
    use, lower, upper = S.survival_targets(samples, deaths, grid.data_end)
    rows = samples.loc[use].reset_index(drop=True)
    rows[C.CELL_ID] = PRIOR_PREFIX + rows[C.CELL_ID].astype(str)
    return PriorSamples(rows=rows, lower=lower[use], upper=upper[use], weight=float(weight))


def thin_samples(
    rows: pd.DataFrame, lower: np.ndarray, upper: np.ndarray, config: FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, weight)``: the hazard is trained on every sample within :data:`DENSE_BEFORE_DEATH_DAYS` of
    a seen death and on every ``THIN_EVERY``-th sampling time elsewhere, weighted ``THIN_EVERY`` (the same
    expected likelihood, a quarter of the person-period rows)."""
    step_ns = int(round(config.sample_every_hours * 3_600_000_000_000))
    index = rows[C.TIMESTAMP].array.asi8 // max(step_ns, 1)
    near = np.isfinite(upper) & (lower <= DENSE_BEFORE_DEATH_DAYS)
    keep = near | (index % THIN_EVERY == 0)
    return keep, np.where(near, 1.0, float(THIN_EVERY))[keep]


def dead_state_rows(labelled: pd.DataFrame, grid: FeatureGrid) -> pd.DataFrame:
    """The sampling points, alive or dead: samples of "is this cell dead now"."""
    rows = labelled.loc[sampling_points(labelled, grid)].reset_index(drop=True)
    rows["Dead"] = (~rows["Alive"]).astype(np.int8)
    return rows


def fit_dead_state(rows: pd.DataFrame, features: list[str], seed: int = 0) -> Any:
    """A small booster recognising cells that are already dead (None when the rows hold one class only)."""
    from xgboost import XGBClassifier

    label = rows["Dead"].to_numpy()
    if not _both_classes(label):
        return None
    clf = XGBClassifier(**xgb_params(seed))
    clf.fit(feature_matrix(rows, features), label, verbose=False)
    return clf.get_booster()


def evaluate_dead_state(booster: Any, rows: pd.DataFrame, features: list[str], config: FeatureConfig) -> dict[str, Any]:
    """Precision/recall of "already dead" on held-out cells: the classifier (+ voltage collapse) vs collapse alone."""
    label = rows["Dead"].to_numpy()
    if booster is None or len(rows) == 0:
        return {"trained": booster is not None, "samples": int(len(rows))}
    probe = FailureModel(
        booster=booster, distribution=S.HazardCurve(), features=features, config=config, dead_booster=booster
    )
    with np.errstate(invalid="ignore"):
        collapsed = rows["LastVoltage"].to_numpy() < config.dead_voltage
    flagged = collapsed | (probe.dead_state_proba(rows) >= 0.5)
    return {
        "trained": True,
        "samples": int(len(rows)),
        "dead_samples": int(label.sum()),
        "classifier_or_collapse": E.binary_metrics(label, flagged),
        "voltage_collapse_only": E.binary_metrics(label, collapsed),
    }


# -- evaluation ---------------------------------------------------------------------------
def _auc(label: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(label, score)) if _both_classes(label) else None


def top_2k_recall(rows: pd.DataFrame, label: np.ndarray, score: np.ndarray) -> float | None:
    """At each as-of time, the share of the k dying cells ranked in the top 2k; pooled over times."""
    frame = pd.DataFrame({"t": rows[C.TIMESTAMP].to_numpy(), "y": label, "s": score})
    frame["rank"] = frame.groupby("t")["s"].rank(ascending=False, method="first")
    frame["k"] = frame.groupby("t")["y"].transform("sum")
    hits = int((frame["y"] & (frame["rank"] <= 2 * frame["k"])).sum())
    total = int(frame["y"].sum())
    return hits / total if total else None


def monthly_alarm_share(rows: pd.DataFrame, alarm: np.ndarray, data_end: pd.Timestamp) -> float | None:
    """Mean over 30-day blocks of the share of surviving cells alarmed at least once in the block."""
    death = rows["DeathTime"]
    survivor = (death.isna() | (death > data_end)).to_numpy()
    if not survivor.any():
        return None
    t = rows.loc[survivor, C.TIMESTAMP]
    block = ((t - t.min()).dt.total_seconds() // (MONTH_DAYS * 86400)).to_numpy()
    per = pd.Series(alarm[survivor]).groupby([rows.loc[survivor, C.CELL_ID].to_numpy(), block]).any()
    return float(per.groupby(level=1).mean().mean())


def rul_metrics(
    rows: pd.DataFrame, life: dict[str, np.ndarray], within_days: float = RUL_WITHIN_DAYS
) -> dict[str, Any]:
    """For samples whose cell dies within ``within_days``: median |p50 - truth| / truth and p10-p90 coverage."""
    truth = ((rows["DeathTime"] - rows[C.TIMESTAMP]).dt.total_seconds() / 86400.0).to_numpy()
    with np.errstate(invalid="ignore"):
        near = np.isfinite(truth) & (truth <= within_days)
    if not near.any():
        return {"samples": 0}
    y = np.maximum(truth[near], S.MIN_DAYS)
    err = np.abs(life["p50"][near] - y) / y
    covered = (life["p10"][near] <= y) & (y <= life["p90"][near])
    return {
        "samples": int(near.sum()),
        "cells": int(rows.loc[near, C.CELL_ID].nunique()),
        "median_relative_error": float(np.median(err)),
        "p10_p90_coverage": float(covered.mean()),
        "below_p10": float((y < life["p10"][near]).mean()),
        "above_p90": float((y > life["p90"][near]).mean()),
    }


def horizon_report(
    rows: pd.DataFrame,
    probability: Callable[[float], np.ndarray],
    data_end: pd.Timestamp,
    horizons: tuple[float, ...] = REPORT_HORIZONS,
) -> dict[str, Any]:
    """Model vs every rule at every horizon on the same rows: ROC-AUC, PR-AUC, top-2k recall.

    ``probability(h)`` gives the model's P(death within h days) for every row of ``rows``."""
    from sklearn.metrics import average_precision_score

    rules = T.rule_scores(rows)
    rules["trend_to_threshold"] = T.trend_score(rows)
    out: dict[str, Any] = {}
    for h in horizons:
        label, known = horizon_labels(rows, h, data_end)
        y, sub = label[known], rows.loc[known]
        p = probability(h)[known]
        entry: dict[str, Any] = {
            "samples": int(known.sum()),
            "positives": int(y.sum()),
            "model_roc_auc": _auc(y, p),
            "model_pr_auc": float(average_precision_score(y, p)) if _both_classes(y) else None,
            "model_top_2k_recall": top_2k_recall(sub, y, p),
            "brier": float(np.mean((p - y) ** 2)) if len(y) else None,
        }
        rule_auc = {name: _auc(y, score[known]) for name, score in rules.items()}
        entry["rules_roc_auc"] = rule_auc
        ieee = {k: v for k, v in rule_auc.items() if k != "trend_to_threshold" and v is not None}
        if ieee:
            best = max(ieee, key=lambda k: ieee[k])
            entry["best_rule"] = best
            entry["best_rule_roc_auc"] = ieee[best]
            if entry["model_roc_auc"] is not None:
                entry["model_minus_best_rule"] = entry["model_roc_auc"] - ieee[best]
        entry["rule_fires"] = {
            name: E.binary_metrics(y.astype(np.int64), score[known] > 0)
            for name, score in rules.items()
            if name != "trend_to_threshold"
        }
        out[f"{h:g}d"] = entry
    return out


PRIMARY_METRIC = "roc_auc_14d"


def holdout_scores(model: FailureModel, holdout: pd.DataFrame) -> dict[str, Any]:
    """A model's scores on held-out sample rows (features, ``DeathTime``, ``CensorAt``): ROC-AUC of dying
    within 7/14/30 days (deaths known up to ``CensorAt``) and remaining-life accuracy. Read-only."""
    if len(holdout) == 0:
        return {}
    censor = pd.Timestamp(holdout["CensorAt"].iloc[0])
    rows = holdout.copy()
    rows["DeathTime"] = rows["DeathTime"].where(rows["DeathTime"] <= censor)
    mu = model.margin(rows)
    out: dict[str, Any] = {"samples": int(len(rows)), "cells": int(rows[C.CELL_ID].nunique())}
    for h in REPORT_HORIZONS:
        label, known = horizon_labels(rows, h, censor)
        out[f"roc_auc_{h:g}d"] = _auc(label[known], model.distribution.probability(mu[known], h))
    life = {q: model.distribution.quantile(mu, v) for q, v in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))}
    rul = rul_metrics(rows, life)
    out["rul_median_relative_error"] = rul.get("median_relative_error")
    out["rul_p10_p90_coverage"] = rul.get("p10_p90_coverage")
    return out


def model_card(model: FailureModel, metrics: dict[str, Any], training_rows: int, seed: int) -> Any:
    from bms_schema.model_protocol import ModelCard
    from bms_schema.runtime import versions

    return ModelCard(
        family="failure",
        features=list(model.features),
        metrics=metrics,
        primary_metric=PRIMARY_METRIC,
        higher_is_better=True,
        training_rows=training_rows,
        holdout="a quarter of the cells (stratified by fate), every sample, deaths known up to the end of the data",
        params={
            **S.hazard_params(seed),
            "feature_config": model.config.to_dict(),
            "survival_curve": model.distribution.to_dict(),
        },
        library_versions=versions("xgboost", "scikit-learn", "pandas", "numpy", "scipy"),
    )


def train_failure_model(
    frame: pd.DataFrame,
    horizon_days: float = 7.0,
    config: FeatureConfig | None = None,
    anomalies: pd.DataFrame | None = None,
    seed: int = 0,
    folds: int = 4,
    grid: FeatureGrid | None = None,
    progress: Callable[[float, str], None] | None = None,
    validate: bool = True,
    prior: pd.DataFrame | PriorSamples | None = None,
    prior_weight: float = 1.0,
) -> TrainingResult:
    """Train the survival model on a canonical readings table with ``IsDead``; validate by cell and time.

    ``horizon_days`` is the default horizon the model's ``FailureProbability`` reports; the model
    itself answers any horizon. ``validate=False`` skips the out-of-fold validation (faster; the
    metrics then only describe the registered model's calibration cells).

    ``prior``: a labelled fleet (e.g. simulated, see ``bms_datagen``) whose samples are pooled into every
    fit's training rows with weight ``prior_weight`` per sample (a user's fleet holds few deaths);
    early stopping, calibration, the alarm threshold and every metric use the user's own cells only.
    :func:`prior_samples` of a fleet may be passed instead of the fleet (built once for many trainings).
    """
    config = config or FeatureConfig()
    step = progress or (lambda fraction, message: None)
    check_horizon(horizon_days)
    step(0.1, "building features")
    grid, samples, deaths, labelled = labelled_samples(frame, config, anomalies, grid)
    features = list(FEATURES)
    data_end = grid.data_end
    pooled_prior = None
    if isinstance(prior, PriorSamples):
        pooled_prior = prior
    elif prior is not None:
        step(0.12, "building the prior fleet's features")
        pooled_prior = prior_samples(prior, config, prior_weight)

    folds_out: list[dict[str, Any]] = []
    rounds_used: list[int] = []
    split_time = None
    # The test period must be long enough to know who survives the longest reported horizon.
    span_days = (samples[C.TIMESTAMP].max() - samples[C.TIMESTAMP].min()).total_seconds() / 86400.0
    time_fraction = float(np.clip((max(REPORT_HORIZONS) + 14.0) / max(span_days, 1e-9), 0.35, 0.6))
    if validate:
        # Deaths are needed before the split too: fall back to a shorter test period when there are none.
        for fraction in dict.fromkeys((time_fraction, 0.35)):
            time_fraction = fraction
            for k in range(folds):  # a handful of model fits, not a loop over data
                step(0.15 + 0.45 * k / folds, f"validation fold {k + 1} of {folds}")
                split = E.split_samples(samples, 0.0, folds=folds, test_fold=k, seed=seed, time_fraction=fraction)
                split_time = split.split_time
                E.check_no_leakage(split.train, split.test, 0.0)
                if split.train["DeathTime"].le(split_time).sum() == 0 or len(split.test) == 0:
                    continue
                model_k, used = fit_survival(
                    split.train, split.calib, deaths, split_time, features, config, seed, prior=pooled_prior
                )
                rounds_used.append(used)
                test = split.test
                folds_out.append({"test": test, "mu": model_k.margin(test), "model": model_k})
            if folds_out:
                break
        if not folds_out:
            raise InputError(
                f"no death falls in a training period: {int(deaths.notna().sum())} cells die, but none before "
                f"{E.split_time_of(samples, time_fraction):%Y-%m-%d %H:%M} (validation needs deaths in the earlier part of "
                "the data); use a longer stretch of data or a fleet with more failures"
            )

    step(0.65, "training the registered model")
    calib_cells = E.calibration_cells(samples, seed=seed)
    held = samples[C.CELL_ID].isin(calib_cells).to_numpy()
    pool, calib_all = samples.loc[~held], samples.loc[held]
    rounds = int(np.median(rounds_used)) if rounds_used else None
    final, used = fit_survival(
        pool, calib_all, deaths, data_end, features, config, seed, rounds=rounds, prior=pooled_prior
    )
    final.horizon_days = float(horizon_days)
    final.max_horizon_days = max(float(final.max_horizon_days or 0.0), float(horizon_days))
    final.alarm_horizon_days = ALARM_HORIZON_DAYS

    step(0.75, "dead-state classifier")
    state_rows = dead_state_rows(labelled, grid)
    in_calib = state_rows[C.CELL_ID].isin(calib_cells).to_numpy()
    dead_state_metrics = evaluate_dead_state(
        fit_dead_state(state_rows.loc[~in_calib], features, seed), state_rows.loc[in_calib], features, config
    )
    final.dead_booster = fit_dead_state(state_rows, features, seed)
    final.reference = _subsample(samples, REFERENCE_ROWS, seed)[features].reset_index(drop=True)
    keep = [C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, "DeathTime", *features, *RULE_COLUMNS]
    final.holdout = (
        calib_all[[c for c in keep if c in calib_all.columns]].assign(CensorAt=data_end).reset_index(drop=True)
    )
    final.holdout_metrics = holdout_scores(final, final.holdout)

    step(0.85, "scoring the held-out cells and the rules")
    metrics: dict[str, Any] = {
        "horizon_days": float(horizon_days),
        "model": "discrete-time hazard (XGBoost binary:logistic on person-period rows); censored cells censored",
        "distribution": final.distribution.to_dict(),
        "alarm": {
            "horizon_days": ALARM_HORIZON_DAYS,
            "threshold": final.alarm_threshold,
            "budget_surviving_cells_per_month": ALARM_BUDGET,
        },
        "cells": {"total": int(len(deaths)), "dying": int(deaths.notna().sum())},
        "boosting_rounds": used,
        "prior": None
        if pooled_prior is None
        else {
            "samples": int(len(pooled_prior.rows)),
            "cells": int(pooled_prior.rows[C.CELL_ID].nunique()),
            "dying_cells": int(pooled_prior.rows.loc[np.isfinite(pooled_prior.upper), C.CELL_ID].nunique()),
            "weight": pooled_prior.weight,
        },
        "dead_state": dead_state_metrics,
        "registered_model": {
            "samples": int(len(pool)),
            "calibration_cells": len(calib_cells),
            "calibration_samples": int(len(calib_all)),
        },
    }
    evaluation = pd.DataFrame()
    importance: dict[str, float] = {}
    if folds_out:
        test = pd.concat([f["test"] for f in folds_out], ignore_index=True)
        # Each fold has its own distribution: probabilities and quantiles per fold, then pooled.
        life = {
            q: np.concatenate([f["model"].distribution.quantile(f["mu"], v) for f in folds_out])
            for q, v in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))
        }
        p_alarm = np.concatenate([f["model"].distribution.probability(f["mu"], ALARM_HORIZON_DAYS) for f in folds_out])
        alarm = np.concatenate(
            [
                sustained_minimum(
                    f["model"].distribution.probability(f["mu"], ALARM_HORIZON_DAYS),
                    f["test"][C.CELL_ID].to_numpy(),
                    f["test"][C.TIMESTAMP],
                )
                >= f["model"].alarm_threshold
                for f in folds_out
            ]
        )

        def pooled(h: float) -> np.ndarray:
            return np.concatenate([f["model"].distribution.probability(f["mu"], h) for f in folds_out])

        by_h = horizon_report(test, pooled, data_end)
        metrics.update(
            {
                "validation": (
                    f"{len(folds_out)} cell folds x time split: each fold's cells after split_time scored "
                    "by a model trained on other cells with deaths known only up to split_time"
                ),
                "split_time": split_time,
                "folds_used": len(folds_out),
                "test": {"samples": int(len(test)), "cells": int(test[C.CELL_ID].nunique())},
                "horizons": by_h,
                "remaining_life": rul_metrics(test, life),
                "alarms": {
                    "threshold_per_fold": [f["model"].alarm_threshold for f in folds_out],
                    "surviving_cells_alarmed_per_month": monthly_alarm_share(test, alarm, data_end),
                    "lead_time": E.lead_times(test, alarm, split_time),
                },
            }
        )
        contribs = np.concatenate(
            [
                f["model"].contributions(_subsample(f["test"], IMPORTANCE_ROWS // len(folds_out), seed))
                for f in folds_out
            ]
        )
        mean_abs = np.abs(contribs[:, :-1]).mean(axis=0) if len(contribs) else np.zeros(len(features))
        importance = {f: float(v) for f, v in sorted(zip(features, mean_abs), key=lambda kv: -kv[1])}
        metrics["importance"] = {readable(k, config): v for k, v in list(importance.items())[:10]}
        evaluation = test[[C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, "DeathTime"]].copy()
        for h in REPORT_HORIZONS:
            label, known = horizon_labels(test, h, data_end)
            evaluation[f"Label{h:g}d"] = np.where(known, label.astype(np.float64), np.nan)
            evaluation[f"Probability{h:g}d"] = pooled(h)
        evaluation["AlarmProbability"] = p_alarm
        evaluation["Alarm"] = alarm
        for name, score in T.rule_scores(test).items():
            evaluation[f"Rule_{name}"] = score
        evaluation["RemainingLifeP50"] = life["p50"]
        log.info(
            "failure model: out-of-fold ROC-AUC 14 d %s (best rule %s)",
            by_h.get("14d", {}).get("model_roc_auc"),
            by_h.get("14d", {}).get("best_rule_roc_auc"),
        )
    metrics["holdout"] = final.holdout_metrics
    final.metadata = {"metrics": metrics, "feature_descriptions": {f: readable(f, config) for f in features}}
    final.card = model_card(final, final.holdout_metrics, int(len(pool)), seed)
    step(0.9, "trained")
    return TrainingResult(model=final, metrics=metrics, evaluation=evaluation, importance=importance, grid=grid)
