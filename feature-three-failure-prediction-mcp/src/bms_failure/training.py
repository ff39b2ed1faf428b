"""Train, validate (by cell and by time), calibrate and compare the failure classifier with the rule."""

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
from .calibration import Calibrator
from .config import FEATURES, LOGGER, REFERENCE_ROWS, FeatureConfig, readable
from .features import FeatureGrid, as_canonical, build_feature_grid, feature_matrix
from .labels import death_times, label_grid, sample_rows, sampling_points
from .model import FailureModel, xgb_params

log = logging.getLogger(LOGGER)

EARLY_STOPPING_ROUNDS = 40
#: Feature importance (mean |contribution|) is estimated on at most this many test samples.
IMPORTANCE_ROWS = 8000


@dataclass
class TrainingResult:
    model: FailureModel
    metrics: dict[str, Any]
    #: Held-out test samples with ``Label``, ``Probability``, ``RuleAlarm`` (for plots and checks).
    evaluation: pd.DataFrame
    #: Mean absolute XGBoost contribution per feature on the test samples, largest first.
    importance: dict[str, float] = field(default_factory=dict)
    grid: FeatureGrid | None = None


def check_horizon(horizon_days: float, grid: FeatureGrid | None = None) -> float:
    """Validate the horizon; with a grid, it must leave room for history and a labelled future."""
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


def _classifier(seed: int, scale_pos_weight: float, early_stopping: bool, n_estimators: int | None = None) -> Any:
    from xgboost import XGBClassifier

    params = xgb_params(seed)
    if n_estimators is not None:
        params["n_estimators"] = n_estimators
    return XGBClassifier(
        **params,
        scale_pos_weight=scale_pos_weight,
        eval_metric="aucpr" if early_stopping else "logloss",
        early_stopping_rounds=EARLY_STOPPING_ROUNDS if early_stopping else None,
    )


def _pos_weight(label: np.ndarray) -> float:
    positives = max(int(label.sum()), 1)
    return float(max(len(label) - positives, 1) / positives)


def _both_classes(label: np.ndarray) -> bool:
    return 0 < int(label.sum()) < len(label)


def _subsample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def _dataset_summary(name: str, frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "samples": int(len(frame)),
        "positives": int(frame["Label"].sum()) if len(frame) else 0,
        "cells": int(frame[C.CELL_ID].nunique()) if len(frame) else 0,
        "from": frame[C.TIMESTAMP].min() if len(frame) else None,
        "to": frame[C.TIMESTAMP].max() if len(frame) else None,
    }


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
    params = xgb_params(seed)
    params.update(n_estimators=80, max_depth=3, learning_rate=0.15)
    clf = XGBClassifier(**params)
    clf.fit(feature_matrix(rows, features), label, verbose=False)
    return clf.get_booster()


def evaluate_dead_state(booster: Any, rows: pd.DataFrame, features: list[str], config: FeatureConfig) -> dict[str, Any]:
    """Precision/recall of "already dead" on held-out cells: the classifier (+ voltage collapse) vs collapse alone."""
    label = rows["Dead"].to_numpy()
    if booster is None or len(rows) == 0:
        return {"trained": booster is not None, "samples": int(len(rows))}
    probe = FailureModel(booster=booster, calibrator=Calibrator(), features=features, config=config,
                         horizon_days=1.0, alarm_threshold=0.5, dead_booster=booster)
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


def labelled_samples(frame: pd.DataFrame, horizon_days: float, config: FeatureConfig,
                     anomalies: pd.DataFrame | None = None, grid: FeatureGrid | None = None
                     ) -> tuple[FeatureGrid, pd.DataFrame, pd.Series, pd.DataFrame]:
    """Feature grid, labelled samples, death times and the labelled grid, with the input checks training needs."""
    frame = as_canonical(frame)
    deaths = death_times(frame)
    grid = grid or build_feature_grid(frame, config, anomalies)
    check_horizon(horizon_days, grid)
    n_dead = int(deaths.notna().sum())
    if n_dead == 0:
        raise InputError(
            f"no cell dies in the data (IsDead is 0 for all {len(deaths)} cells): a failure model cannot be "
            "trained without deaths - use data with failures, or predict with an already registered model"
        )
    labelled = label_grid(grid, deaths, horizon_days * 24.0)
    samples = sample_rows(labelled, grid)
    if len(samples) == 0:
        raise InputError(
            f"too little history: no cell has {config.min_history_hours:g} h of readings followed by a labelled "
            f"{horizon_days:g}-day horizon"
        )
    return grid, samples, deaths, labelled


@dataclass
class FoldResult:
    model: FailureModel
    rounds: int
    split: E.Split
    test_prob: np.ndarray
    test_margin: np.ndarray


def fit_evaluation_fold(split: E.Split, features: list[str], config: FeatureConfig, horizon_days: float,
                        seed: int, target_precision: float) -> FoldResult | None:
    """Train on the train cells, early-stop and calibrate on the calibration cells, score the test cells.

    None when the fold's training period holds no death.
    """
    horizon_hours = horizon_days * 24.0
    E.check_no_leakage(split.train, split.test, horizon_hours)
    E.check_no_leakage(split.calib, split.test, horizon_hours)
    y_train = split.train["Label"].to_numpy()
    if y_train.sum() == 0:
        return None
    y_calib = split.calib["Label"].to_numpy()
    spw = _pos_weight(y_train)
    early = _both_classes(y_calib)
    clf = _classifier(seed, spw, early)
    fit_kwargs: dict[str, Any] = {"verbose": False}
    if early:
        fit_kwargs["eval_set"] = [(feature_matrix(split.calib, features), y_calib)]
    clf.fit(feature_matrix(split.train, features), y_train, **fit_kwargs)
    rounds = int(clf.best_iteration) + 1 if early else int(clf.n_estimators)
    booster = clf.get_booster()[:rounds] if early else clf.get_booster()
    model = FailureModel(booster=booster, calibrator=Calibrator(), features=features, config=config,
                         horizon_days=horizon_days, alarm_threshold=0.5)
    calib_margin = model.margin(split.calib)
    model.calibrator = Calibrator.fit(calib_margin, y_calib, spw)
    model.alarm_threshold = E.choose_threshold(y_calib, model.calibrator.transform(calib_margin), target_precision)
    test_margin = model.margin(split.test)
    return FoldResult(model=model, rounds=rounds, split=split, test_prob=model.calibrator.transform(test_margin),
                      test_margin=test_margin)


def train_failure_model(
    frame: pd.DataFrame,
    horizon_days: float = 7.0,
    config: FeatureConfig | None = None,
    anomalies: pd.DataFrame | None = None,
    seed: int = 0,
    target_precision: float = 0.5,
    folds: int = 4,
    grid: FeatureGrid | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> TrainingResult:
    """Train on a canonical readings table with ``IsDead``; validate by cell and time; calibrate.

    Validation: ``folds`` cell groups; for each, a model trained on other cells before
    ``split_time - horizon`` (early-stopped and calibrated on held-out calibration cells) scores
    the group's cells after ``split_time``. The metrics pool those out-of-fold scores, so every
    cell's later period is judged once by a model that never saw the cell or that period.
    The registered model is then trained with the same settings on all labelled samples except
    those of a held-out quarter of the cells, which calibrate it.
    """
    config = config or FeatureConfig()
    step = progress or (lambda fraction, message: None)
    check_horizon(horizon_days)
    step(0.1, "building features")
    grid, samples, deaths, labelled = labelled_samples(frame, horizon_days, config, anomalies, grid)
    features = list(FEATURES)
    results: list[FoldResult] = []
    for k in range(folds):  # a handful of model fits, not a loop over data
        step(0.2 + 0.4 * k / folds, f"validation fold {k + 1} of {folds}")
        split = E.split_samples(samples, horizon_days * 24.0, folds=folds, test_fold=k, seed=seed)
        result = fit_evaluation_fold(split, features, config, horizon_days, seed, target_precision)
        if result is not None:
            results.append(result)
    if not results:
        split_time = E.split_time_of(samples, 0.35)
        raise InputError(
            f"no death falls in a training period: {int(deaths.notna().sum())} cells die, but none within "
            f"{horizon_days:g} days of a sample before {split_time:%Y-%m-%d %H:%M} (validation needs deaths in the "
            "earlier part of the data); use a longer stretch of data or a fleet with more failures"
        )
    split_time = results[0].split.split_time
    test = pd.concat([r.split.test for r in results], ignore_index=True)
    test_prob = np.concatenate([r.test_prob for r in results])
    test_margin = np.concatenate([r.test_margin for r in results])
    alarm = np.concatenate([r.test_prob >= r.model.alarm_threshold for r in results])
    y_test = test["Label"].to_numpy()
    y_train_all = np.concatenate([r.split.train["Label"].to_numpy() for r in results])
    rule = E.rule_flags(test) if len(test) else np.zeros(0, dtype=bool)

    step(0.6, "scoring the held-out cells and the baseline rule")
    model_scores = E.score_metrics(y_test, test_prob)
    model_scores.update({
        "brier": E.brier(y_test, test_prob),
        "brier_uncalibrated": E.brier(y_test, _sigmoid(test_margin)),
        "brier_base_rate": E.brier(y_test, np.full(len(y_test), y_train_all.mean())),
        "alarm_threshold": [r.model.alarm_threshold for r in results],
        "at_alarm_threshold": E.binary_metrics(y_test, alarm),
        "lead_time": E.lead_times(test, alarm, split_time) if len(test) else {},
    })
    rule_scores = E.score_metrics(y_test, E.rule_score(test) if len(test) else np.zeros(0))
    rule_scores.update({
        "rule": f"float voltage < {E.RULE_FLOAT_VOLTAGE} V or SG more than {E.RULE_SG_BELOW_MEAN} below the string mean",
        "at_rule": E.binary_metrics(y_test, rule),
        "lead_time": E.lead_times(test, rule, split_time) if len(test) else {},
    })
    contribs = np.concatenate([r.model.contributions(_subsample(r.split.test, IMPORTANCE_ROWS // len(results), seed))
                               for r in results if len(r.split.test)]) if len(test) else np.zeros((0, len(features) + 1))
    mean_abs = np.abs(contribs[:, :-1]).mean(axis=0) if len(contribs) else np.zeros(len(features))
    importance = {f: float(v) for f, v in sorted(zip(features, mean_abs), key=lambda kv: -kv[1])}

    step(0.7, "dead-state classifier")
    state_rows = dead_state_rows(labelled, grid)
    test_cells = set(results[0].split.cells["test"])
    in_test = state_rows[C.CELL_ID].isin(test_cells).to_numpy()
    dead_state_metrics = evaluate_dead_state(fit_dead_state(state_rows.loc[~in_test], features, seed),
                                             state_rows.loc[in_test], features, config)

    step(0.8, "training the registered model")
    rounds = int(np.median([r.rounds for r in results]))
    calib_cells = E.calibration_cells(samples, seed=seed)
    held = samples[C.CELL_ID].isin(calib_cells).to_numpy()
    pool, calib_all = samples.loc[~held], samples.loc[held]
    y_pool, y_cal_all = pool["Label"].to_numpy(), calib_all["Label"].to_numpy()
    spw = _pos_weight(y_pool)
    clf = _classifier(seed, spw, early_stopping=False, n_estimators=max(rounds, 10))
    clf.fit(feature_matrix(pool, features), y_pool, verbose=False)
    final = FailureModel(booster=clf.get_booster(), calibrator=Calibrator(), features=features, config=config,
                         horizon_days=horizon_days, alarm_threshold=0.5)
    margin_all = final.margin(calib_all)
    final.calibrator = Calibrator.fit(margin_all, y_cal_all, spw)
    prob_all = final.calibrator.transform(margin_all)
    final.alarm_threshold = E.choose_threshold(y_cal_all, prob_all, target_precision)
    final.dead_booster = fit_dead_state(state_rows, features, seed)
    final.reference = _subsample(samples, REFERENCE_ROWS, seed)[features].reset_index(drop=True)

    metrics: dict[str, Any] = {
        "horizon_days": float(horizon_days),
        "validation": (f"{len(results)} cell folds x time split: each fold's cells after split_time scored by a model "
                       "trained on other cells with labels ending before split_time"),
        "split_time": split_time,
        "folds_used": len(results),
        "cells": {"total": int(len(deaths)), "dying": int(deaths.notna().sum()),
                  "test_cells_scored": int(test[C.CELL_ID].nunique()) if len(test) else 0},
        "train_per_fold": [_dataset_summary("train", r.split.train) for r in results],
        "test": _dataset_summary("test", test),
        "scale_pos_weight": spw,
        "boosting_rounds": rounds,
        "calibration_method": final.calibrator.method,
        "target_precision": target_precision,
        "model": model_scores,
        "baseline_rule": rule_scores,
        "dead_state": dead_state_metrics,
        "importance": {readable(k, config): v for k, v in list(importance.items())[:10]},
        "registered_model": {
            "samples": int(len(pool)), "positives": int(y_pool.sum()), "boosting_rounds": max(rounds, 10),
            "calibration_cells": len(calib_cells), "calibration_samples": int(len(calib_all)),
            "calibration_positives": int(y_cal_all.sum()), "calibration_brier": E.brier(y_cal_all, prob_all),
            "alarm_threshold": final.alarm_threshold,
        },
    }
    final.metadata = {"metrics": metrics, "feature_descriptions": {f: readable(f, config) for f in features}}
    evaluation = test[[C.CELL_ID, C.DEVICE_ID, C.CELL_NUMBER, C.TIMESTAMP, "DeathTime", "Label"]].copy()
    evaluation["Probability"] = test_prob
    evaluation["Alarm"] = alarm
    evaluation["RuleAlarm"] = rule
    step(0.9, "trained")
    log.info("failure model: out-of-fold ROC-AUC %s PR-AUC %s (rule ROC-AUC %s)", model_scores.get("roc_auc"),
             model_scores.get("pr_auc"), rule_scores.get("roc_auc"))
    return TrainingResult(model=final, metrics=metrics, evaluation=evaluation, importance=importance, grid=grid)
