"""Train the global per-target models, pick direct vs recursive, calibrate intervals, backtest.

Every cell's history is split at the same two moments of the fleet's time span (never randomly,
never per cell): the first part trains, the next ``holdout_fraction`` is the *calibration* window (early stopping, direct-vs-recursive choice,
conformal interval quantiles) and the last ``holdout_fraction`` is the *test* window, scored by
a rolling-origin backtest against the last-value and daily seasonal naive forecasts. Training
pairs never have their target inside the calibration or test windows.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import InputError
from bms_schema import columns as C
from bms_schema.runtime import compute_threads

from . import metrics as M
from .config import QUANTILE_LEVELS, STRATEGIES, WINDOW, TrainConfig
from .config import TARGETS as TARGET_COLUMNS
from .features import build_features, feature_names, target_context
from .model import Forecaster, TargetModel, combine_paths, forecast_paths
from .panel import Panel, build_panel, canonical

log = logging.getLogger("bms.forecast")

Progress = Callable[[float, str], None]
MIN_TRAIN_PAIRS = 200
MIN_BACKTEST_ORIGINS = 5
EVAL_PAIRS = 10_000
MIN_POOLED_RESIDUALS = 100


@dataclass
class Windows:
    """Flat positions where each cell's calibration and test windows begin (``usable``: long enough)."""

    train_end: np.ndarray
    cal_end: np.ndarray
    usable: np.ndarray


def min_training_readings(config: TrainConfig) -> int:
    """Readings a cell needs to take part in training (lag window + horizon in its training part)."""
    return math.ceil((WINDOW + config.max_steps) / (1 - 2 * config.holdout_fraction))


def split_windows(panel: Panel, config: TrainConfig, bounds: tuple[float, float] | None = None) -> Windows:
    """Split every cell at the same two moments of the fleet's time span (never per cell).

    With one common cut, no cell's training period overlaps another cell's calibration or test
    period (cells share string current, ambient and peer medians, so a per-cell split would leak).
    A cell must have enough readings before the first cut and some after each cut to take part.
    ``bounds`` (first, last POSIX seconds): the fleet's time span when ``panel`` holds some devices
    only (the Dask engine builds one device's panel per task).
    """
    t_first, t_last = bounds if bounds is not None else (float(panel.time_s.min()), float(panel.time_s.max()))
    hold_s = (t_last - t_first) * config.holdout_fraction
    cal_cut, train_cut = t_last - hold_s, t_last - 2 * hold_s
    n_cells = panel.start.size
    before_train = np.bincount(panel.cell, weights=panel.time_s < train_cut, minlength=n_cells).astype(np.int64)
    before_cal = np.bincount(panel.cell, weights=panel.time_s < cal_cut, minlength=n_cells).astype(np.int64)
    train_end, cal_end = panel.start + before_train, panel.start + before_cal
    usable = (
        (before_train >= WINDOW + config.max_steps)
        & (cal_end > train_end)
        & (panel.start + panel.length > cal_end)
        & (panel.length >= min_training_readings(config))
    )
    return Windows(train_end=train_end, cal_end=cal_end, usable=usable)


def eligible_origins(panel: Panel, target: str, lo: np.ndarray, hi: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Positions in ``[lo, hi)`` of usable cells with a full lag window and a known level."""
    pos = np.arange(panel.size)
    cell = panel.cell
    ok = usable[cell] & (pos >= lo[cell]) & (pos < hi[cell]) & (pos - panel.start[cell] >= WINDOW - 1)
    ok &= np.isfinite(panel.values[target])
    return pos[ok]


def spread(origins: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` origins, evenly spaced over the (cell, time) ordered list."""
    if origins.size <= limit:
        return origins
    return origins[np.linspace(0, origins.size - 1, limit).round().astype(np.int64)]


def actual_matrix(
    panel: Panel, target: str, origins: np.ndarray, steps: int, limit: np.ndarray | None = None
) -> np.ndarray:
    """(n, steps) real readings after each origin, before ``limit[cell]`` (NaN where nothing was measured)."""
    index = origins[:, None] + np.arange(1, steps + 1)[None, :]
    limit = panel.end + 1 if limit is None else limit
    valid = index < limit[panel.cell[origins]][:, None]
    index = np.minimum(index, panel.size - 1)
    valid &= panel.observed[target][index]
    return np.where(valid, panel.values[target][index], np.nan)


def seasonal_naive(panel: Panel, target: str, origins: np.ndarray, steps: int) -> np.ndarray:
    """(n, steps) value one day before each forecast time (NaN without a daily period or a day of history)."""
    cell = panel.cell[origins]
    period = panel.period[cell][:, None]
    index = origins[:, None] + np.arange(1, steps + 1)[None, :] - period
    valid = (period > 0) & (index >= panel.start[cell][:, None]) & (index <= origins[:, None])
    return np.where(valid, panel.values[target][np.clip(index, 0, panel.size - 1)], np.nan)


def _pairs(
    panel: Panel, target: str, origins: np.ndarray, horizons: np.ndarray, limit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep (origin, horizon) pairs whose target position is below ``limit[cell]`` and observed."""
    index = origins + horizons
    ok = index < limit[panel.cell[origins]]
    ok[ok] &= panel.observed[target][index[ok]]
    origins, horizons, index = origins[ok], horizons[ok], index[ok]
    return origins, horizons, panel.values[target][index] - panel.values[target][origins]


def sample_horizons(rng: np.random.Generator, size: int, max_steps: int) -> np.ndarray:
    """Half uniform over 1..max_steps, half log-uniform (short horizons get more pairs: they differ most)."""
    uniform = rng.integers(1, max_steps + 1, size=size)
    log_uniform = np.floor(np.exp(rng.uniform(0, np.log(max_steps + 1), size=size))).astype(np.int64)
    return np.where(rng.random(size) < 0.5, uniform, np.clip(log_uniform, 1, max_steps))


def training_pairs(
    panel: Panel,
    target: str,
    strategy: str,
    origins: np.ndarray,
    limit: np.ndarray,
    budget: int,
    per_origin: int,
    max_steps: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if strategy == "recursive":
        per_origin = 1
    wanted = math.ceil(budget / per_origin)
    if origins.size > wanted:
        origins = np.sort(rng.choice(origins, wanted, replace=False))
    origins = np.repeat(origins, per_origin)
    if strategy == "recursive":
        horizons = np.ones(origins.size, dtype=np.int64)
    else:
        horizons = sample_horizons(rng, origins.size, max_steps)
    return _pairs(panel, target, origins, horizons, limit)


def robust_scale(y: np.ndarray) -> float:
    """Spread of the training deltas (scaled MAD, else standard deviation, else 1)."""
    finite = y[np.isfinite(y)]
    if finite.size == 0:
        return 1.0
    mad = 1.4826 * float(np.median(np.abs(finite - np.median(finite))))
    if mad > 0:
        return mad
    std = float(finite.std())
    return std if std > 0 else 1.0


def fit_booster(
    train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray, config: TrainConfig
) -> tuple[Any, int, float]:
    """XGBoost regressor on scaled deltas with early stopping on the calibration pairs.

    Returns the booster trimmed to its best iteration, the tree count and the delta scale
    (predictions are multiplied by it).
    """
    from xgboost import XGBRegressor

    scale = robust_scale(train_y)
    model = XGBRegressor(**config.xgb_params(compute_threads()))
    model.fit(train_x, train_y / scale, eval_set=[(eval_x, eval_y / scale)], verbose=False)
    booster = model.get_booster()
    best = getattr(model, "best_iteration", None)
    best = booster.num_boosted_rounds() - 1 if best is None else int(best)
    booster = booster[: best + 1]
    booster.set_param({"nthread": compute_threads()})
    return booster, best + 1, scale


def residual_quantiles(residuals: np.ndarray) -> np.ndarray:
    """(steps, levels) quantiles of ``actual - forecast`` per step; thin steps pool neighbouring steps."""
    steps = residuals.shape[1]
    levels = np.asarray(QUANTILE_LEVELS)
    table = np.empty((steps, levels.size))
    for h in range(steps):
        width = 0
        while True:
            block = residuals[:, max(0, h - width) : h + width + 1]
            finite = block[np.isfinite(block)]
            if finite.size >= MIN_POOLED_RESIDUALS or width >= steps:
                break
            width += 1
        if finite.size < 10:
            raise InputError(
                f"too few calibration readings to size the intervals ({finite.size}): give the forecaster more "
                "history per cell or more cells"
            )
        table[h] = np.quantile(finite, levels)
    return np.maximum.accumulate(table, axis=1)


def frame_fingerprint(frame: pd.DataFrame, targets: list[str]) -> dict[str, Any]:
    """A content hash of the training readings (ids, times and targets) plus their extent."""
    cols = [C.CELL_ID, C.TIMESTAMP, *targets]
    hashed = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()
    return {
        "rows": int(len(frame)),
        "cells": int(frame[C.CELL_ID].nunique()),
        "devices": int(frame[C.DEVICE_ID].nunique()),
        "first": frame[C.TIMESTAMP].min().isoformat(),
        "last": frame[C.TIMESTAMP].max().isoformat(),
        "sha256": hashlib.sha256(hashed.tobytes()).hexdigest(),
    }


def _mae_by_step(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    mae = M.per_horizon_errors(actual, forecast, 1.0)["mae"]
    return np.where(np.isfinite(mae), mae, np.inf)


def choose_recursive_steps(mae_by_step: dict[str, np.ndarray], steps: int) -> int:
    """The switch step k minimising the summed calibration MAE of "recursive for 1..k, direct after".

    k = 0 is all direct, k = steps all recursive. Recursive models tend to win the first steps
    (trained on exactly that lead), direct ones the later steps (no compounding errors).
    """
    if "recursive" not in mae_by_step:
        return 0
    if "direct" not in mae_by_step:
        return steps
    rec = np.concatenate([[0.0], np.cumsum(mae_by_step["recursive"])])
    direct = np.concatenate([[0.0], np.cumsum(mae_by_step["direct"])])
    totals = rec + (direct[-1] - direct)  # recursive 1..k plus direct k+1..steps
    return int(np.argmin(totals))


def fit_target(
    panel: Panel, target: str, windows: Windows, config: TrainConfig, rng: np.random.Generator
) -> tuple[TargetModel, dict[str, Any]]:
    """Train the candidate strategies of one target, keep the better, calibrate and backtest it."""
    steps = config.max_steps
    context = target_context(panel, target)
    train_origins = eligible_origins(panel, target, panel.start, windows.train_end, windows.usable)
    cal_all = eligible_origins(panel, target, windows.train_end, windows.cal_end, windows.usable)
    test_all = eligible_origins(panel, target, windows.cal_end, panel.end + 1, windows.usable)
    cal_origins = spread(cal_all, config.max_backtest_origins)
    test_origins = spread(test_all, config.max_backtest_origins)
    if min(cal_origins.size, test_origins.size) < MIN_BACKTEST_ORIGINS:
        raise InputError(
            f"not enough history to backtest {target}: {cal_origins.size} calibration and {test_origins.size} test "
            f"origins (need {MIN_BACKTEST_ORIGINS}); give cells at least {min_training_readings(config)} readings"
        )
    candidates = STRATEGIES if config.strategy == "auto" else (config.strategy,)
    names = feature_names(target, panel.targets)
    cal_actual = actual_matrix(panel, target, cal_origins, steps, limit=windows.cal_end)
    fitted: dict[str, dict[str, Any]] = {}
    for strategy in candidates:
        t0 = time.perf_counter()
        budget = config.max_train_pairs
        if strategy == "recursive" and config.strategy == "auto":
            budget = max(1000, int(budget * config.recursive_budget_share))
        o, h, y = training_pairs(
            panel, target, strategy, train_origins, windows.train_end, budget, config.horizons_per_origin, steps, rng
        )
        if o.size < MIN_TRAIN_PAIRS:
            raise InputError(
                f"not enough training readings for {target}: {o.size} pairs (need {MIN_TRAIN_PAIRS}); "
                f"cells need at least {min_training_readings(config)} readings each"
            )
        eo, eh, ey = training_pairs(
            panel, target, strategy, cal_all, windows.cal_end, EVAL_PAIRS, config.horizons_per_origin, steps, rng
        )
        if eo.size == 0:
            raise InputError(f"no real {target} readings in the calibration window: cannot stop training early")
        booster, trees, scale = fit_booster(
            build_features(panel, context, target, o, h),
            y,
            build_features(panel, context, target, eo, eh),
            ey,
            config,
        )
        cal_pred = forecast_paths(strategy, booster, panel, target, cal_origins, steps, context, scale)
        fitted[strategy] = {
            "booster": booster,
            "trees": trees,
            "scale": scale,
            "train_pairs": int(o.size),
            "cal_pred": cal_pred,
            "cal_mae": _mae_by_step(cal_actual, cal_pred),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    k = choose_recursive_steps({s: f["cal_mae"] for s, f in fitted.items()}, steps)
    used = [s for s, needed in (("recursive", k > 0), ("direct", k < steps)) if needed]
    cal_residuals = cal_actual - combine_paths({s: f["cal_pred"] for s, f in fitted.items()}, k)
    model = TargetModel(
        target=target,
        boosters={s: fitted[s]["booster"] for s in used},
        delta_scales={s: fitted[s]["scale"] for s in used},
        recursive_steps=k,
        features=names,
        residual_quantiles=residual_quantiles(cal_residuals),
    )
    report, test_residuals = backtest_target(panel, target, model, fitted, test_origins, windows, steps, context)
    # The reported coverage used intervals from the calibration window only, scored on the test window.
    # The served intervals pool both windows: twice the residuals, and the most recent behaviour.
    model.residual_quantiles = residual_quantiles(np.vstack([cal_residuals, test_residuals]))
    report["intervals"] = (
        "conformal: residual quantiles per step; coverage above is calibration-window quantiles "
        "scored on the test window; the saved model pools calibration and test residuals"
    )
    report["recursive_steps"] = k
    report["strategy_selection"] = {
        s: {
            "calibration_mae_mean": round(float(np.mean(f["cal_mae"])), 6),
            "calibration_mae_by_step": M.rounded(f["cal_mae"]),
            "trees": f["trees"],
            "train_pairs": f["train_pairs"],
            "delta_scale": f["scale"],
            "fit_seconds": f["seconds"],
        }
        for s, f in fitted.items()
    }
    report["calibration_origins"] = int(cal_origins.size)
    return model, report


def backtest_target(
    panel: Panel,
    target: str,
    model: TargetModel,
    fitted: dict[str, dict[str, Any]],
    origins: np.ndarray,
    windows: Windows,
    steps: int,
    context: Any,
    nominal: float = 0.8,
) -> tuple[dict[str, Any], np.ndarray]:
    """Rolling-origin scores on the test window: model (each strategy), naive baselines, coverage.

    Returns the report and the (origins, steps) residuals ``actual - forecast`` of the model.
    """
    from .model import interval_offsets

    actual = actual_matrix(panel, target, origins, steps)
    in_train = np.arange(panel.size) < windows.train_end[panel.cell]
    scale = M.mase_scale(panel.values[target], panel.observed[target], in_train & windows.usable[panel.cell])
    level = panel.values[target][origins]
    forecasts = {
        s: forecast_paths(s, f["booster"], panel, target, origins, steps, context, f["scale"])
        for s, f in fitted.items()
    }
    point = combine_paths(forecasts, model.recursive_steps)
    table = {
        "model": M.per_horizon_errors(actual, point, scale),
        "naive_last": M.per_horizon_errors(actual, np.repeat(level[:, None], steps, axis=1), scale),
        "naive_seasonal": M.per_horizon_errors(actual, seasonal_naive(panel, target, origins, steps), scale),
    }
    for s, path in forecasts.items():
        table[f"strategy_{s}"] = M.per_horizon_errors(actual, path, scale)
    lower, upper = interval_offsets(model.residual_quantiles, steps, nominal)
    cover = M.coverage(actual, point + lower, point + upper)
    skill_last = M.skill(table["model"]["mae"], table["naive_last"]["mae"])
    skill_season = M.skill(table["model"]["mae"], table["naive_seasonal"]["mae"])
    report = {
        "strategy": model.strategy,
        "test_origins": int(origins.size),
        "mase_scale": None if not np.isfinite(scale) else round(scale, 8),
        "summary": M.summarize({k: table[k] for k in ("model", "naive_last", "naive_seasonal")}, steps),
        "coverage_nominal": nominal,
        "coverage": M.overall_coverage(actual, point + lower, point + upper),
        "beats_naive_last_at": [int(h) for h in np.flatnonzero(skill_last > 0) + 1],
        "beats_naive_seasonal_at": [int(h) for h in np.flatnonzero(skill_season > 0) + 1],
        "by_horizon": {
            **M.horizon_table(table),
            "coverage": M.rounded(cover, 4),
            "skill_vs_naive_last": M.rounded(skill_last, 4),
            "skill_vs_naive_seasonal": M.rounded(skill_season, 4),
        },
    }
    return report, actual - point


def fit_forecaster(
    frame: pd.DataFrame, config: TrainConfig | None = None, progress: Progress | None = None
) -> tuple[Forecaster, dict[str, Any]]:
    """Train, select, calibrate and backtest a forecaster on a readings table (any accepted shape)."""
    config = (config or TrainConfig()).validate()
    started = time.perf_counter()
    frame = canonical(frame)
    panel = build_panel(frame)
    windows = split_windows(panel, config)
    if not windows.usable.any():
        raise InputError(
            f"not enough history to train: each cell needs at least {min_training_readings(config)} readings for "
            f"max_steps={config.max_steps} (the longest cell has {int(panel.readings.max())}); "
            "give more history or a smaller max_steps"
        )
    timings = {"panel": round(time.perf_counter() - started, 3)}
    rng = np.random.default_rng(config.seed)
    models: dict[str, TargetModel] = {}
    reports: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for i, target in enumerate(panel.targets):
        if progress:
            progress(i / len(panel.targets), f"training {target}")
        t0 = time.perf_counter()
        try:
            models[target], reports[target] = fit_target(panel, target, windows, config, rng)
        except InputError as exc:  # a sparsely measured parameter must not stop the others
            skipped[target] = str(exc)
            log.warning("%s skipped: %s", target, exc)
            continue
        timings[target] = round(time.perf_counter() - t0, 3)
        log.info(
            "%s: %s strategy, coverage %.3f, %.1fs",
            target,
            models[target].strategy,
            reports[target]["coverage"] or float("nan"),
            timings[target],
        )
    if not models:
        raise InputError("no parameter could be trained: " + "; ".join(skipped.values()))
    timings["total"] = round(time.perf_counter() - started, 3)
    forecaster = Forecaster(targets=list(panel.targets), models=models, max_steps=config.max_steps)
    forecaster.report = report = {
        "targets": list(panel.targets),
        "skipped_targets": skipped,
        "strategies": {t: m.strategy for t, m in models.items()},
        "metrics": reports,
        "features": {t: m.features for t, m in models.items()},
        "training_data": {
            **frame_fingerprint(frame.loc[frame[C.TIMESTAMP].notna()], panel.targets),
            "cells_used": int(windows.usable.sum()),
            "cells_too_short": [str(c) for c in panel.cell_ids[~windows.usable]][:50],
            "sampling_step_seconds": float(np.median(panel.step_seconds)),
        },
        "config": config.to_dict(),
        "timings": timings,
    }
    forecaster.card = model_card(report)
    return forecaster, report


PRIMARY_METRIC = "mase_mean"


def model_card(report: dict[str, Any]) -> Any:
    """The model card of a freshly trained forecaster (held-out = the test window of its backtest)."""
    from bms_schema.model_protocol import ModelCard
    from bms_schema.runtime import versions

    from .persistence import summary_metrics

    per_target = {t: m["summary"]["model"].get("mase_mean") for t, m in report["metrics"].items()}
    finite = [v for v in per_target.values() if v is not None]
    metrics = {
        **summary_metrics(report),
        PRIMARY_METRIC: round(float(np.mean(finite)), 6) if finite else None,
        "mase_mean_by_target": per_target,
    }
    features = sorted({f for names in report["features"].values() for f in names})
    data = report["training_data"]
    return ModelCard(
        family="forecast",
        features=features,
        metrics=metrics,
        primary_metric=PRIMARY_METRIC,
        higher_is_better=False,
        data_fingerprint=str(data.get("sha256", ""))[:16] or None,
        training_rows=data.get("rows"),
        holdout=(
            f"the last {report['config']['holdout_fraction']:.0%} of the fleet's time span (test window; the "
            "same share before it calibrates), rolling-origin forecasts scored by MASE, mean over targets"
        ),
        params=report["config"],
        library_versions=versions("xgboost", "numpy", "pandas"),
    )


@dataclass
class ForecastHoldout:
    """The held-out evaluation candidate and champion are both scored on.

    Forecasts start at origins in the last ``holdout_fraction`` of ``frame``'s time span (the
    history before each origin gives the lags) and are scored ``steps`` readings ahead against
    what was measured; MASE scales by the mean one-step change before the window.
    """

    frame: pd.DataFrame
    holdout_fraction: float
    steps: int
    max_origins: int = 500

    @property
    def columns(self) -> Any:
        return self.frame.columns

    def fingerprint(self) -> str:
        from bms_schema.model_protocol import fingerprint_frame

        cols = [c for c in (C.CELL_ID, C.TIMESTAMP, *TARGET_COLUMNS) if c in self.frame.columns]
        return f"{fingerprint_frame(self.frame[cols])}:last{self.holdout_fraction:g}:steps{self.steps}"


def evaluate_forecaster(forecaster: Forecaster, holdout: ForecastHoldout) -> dict[str, Any]:
    """Score ``forecaster`` on ``holdout``: MASE per target present in the data and their mean.

    A target the data measures but the model does not forecast leaves the mean undefined (the
    two models would not be compared on the same thing). Predicting never changes the model.
    """
    from .model import with_columns
    from .panel import present_targets

    steps = forecaster.check_steps(holdout.steps)
    frame = canonical(holdout.frame)
    data_targets = present_targets(frame)
    panel = build_panel(with_columns(frame, forecaster.targets), forecaster.targets)
    t_first, t_last = float(panel.time_s.min()), float(panel.time_s.max())
    cut = t_last - (t_last - t_first) * holdout.holdout_fraction
    n_cells = panel.start.size
    before = np.bincount(panel.cell, weights=panel.time_s < cut, minlength=n_cells).astype(np.int64)
    test_start = panel.start + before
    usable = before >= WINDOW
    in_sample = np.arange(panel.size) < test_start[panel.cell]
    per_target: dict[str, Any] = {}
    for target in data_targets:
        model = forecaster.models.get(target)
        if model is None:
            per_target[target] = {"error": f"the model does not forecast {target}"}
            continue
        origins = spread(eligible_origins(panel, target, test_start, panel.end + 1, usable), holdout.max_origins)
        if origins.size < MIN_BACKTEST_ORIGINS:
            per_target[target] = {"error": f"{origins.size} held-out origins (need {MIN_BACKTEST_ORIGINS})"}
            continue
        actual = actual_matrix(panel, target, origins, steps)
        point = model.paths(panel, origins, steps)
        scale = M.mase_scale(panel.values[target], panel.observed[target], in_sample)
        level = panel.values[target][origins]
        errors = M.per_horizon_errors(actual, point, scale)
        naive = M.per_horizon_errors(actual, np.repeat(level[:, None], steps, axis=1), scale)
        mase, naive_mase = np.nanmean(errors["mase"]), np.nanmean(naive["mase"])
        per_target[target] = {
            "origins": int(origins.size),
            "mae_mean": round(float(np.nanmean(errors["mae"])), 6),
            "mase_mean": round(float(mase), 6) if np.isfinite(mase) else None,
            "naive_last_mase_mean": round(float(naive_mase), 6) if np.isfinite(naive_mase) else None,
        }
    values = [per_target[t].get("mase_mean") for t in data_targets]
    primary = round(float(np.mean(values)), 6) if values and all(v is not None for v in values) else None
    return {
        PRIMARY_METRIC: primary,
        "targets": per_target,
        "steps": steps,
        "holdout_fraction": holdout.holdout_fraction,
        "data_targets": data_targets,
    }
