"""The fitted forecaster: one XGBoost booster per target plus conformal residual quantiles.

``Forecaster.forecast(history, cell_id, steps)`` (alias ``predict``) is the in-process API (live
inference calls it); it returns the long table ``Timestamp, Target, Step, Forecast, Lower, Upper``
and never changes the model. The forecaster implements :mod:`bms_schema.model_protocol`:
``Forecaster().fit(frame, config)`` returns the fitted model, ``evaluate(holdout)`` scores it on
held-out data, ``save(staging_dir)`` / ``Forecaster.load(version)`` go through the registry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from bms_schema import InputError, resolve_cell_id

from .config import (
    DAY_SECONDS,
    DEFAULT_COVERAGE,
    DEFAULT_STEPS,
    FALLBACK_LONG_WINDOW,
    MAX_SEASONAL_STEP_SECONDS,
    QUANTILE_LEVELS,
    WINDOW,
)
from .features import build_features, history_window, target_context
from .panel import Panel, build_panel, canonical

log = logging.getLogger("bms.forecast")

FORECAST_COLUMNS: tuple[str, ...] = ("Timestamp", "Target", "Step", "Forecast", "Lower", "Upper")
MIN_COVERAGE, MAX_COVERAGE = 0.5, 0.98


def predict_deltas(booster: Any, features: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Predicted changes from the base value (the booster works on deltas divided by ``scale``)."""
    if features.shape[0] == 0:
        return np.zeros(0)
    return np.asarray(booster.inplace_predict(features), dtype=float) * scale


def direct_paths(
    booster: Any,
    panel: Panel,
    target: str,
    origins: np.ndarray,
    steps: int,
    context: Any = None,
    scale: float = 1.0,
    first: int = 1,
) -> np.ndarray:
    """(n, steps - first + 1) forecasts of steps ``first..steps`` with one model call: horizon is a feature."""
    context = context if context is not None else target_context(panel, target)
    n, width = origins.size, steps - first + 1
    rep_origin = np.repeat(origins, width)
    rep_h = np.tile(np.arange(first, steps + 1), n)
    deltas = predict_deltas(booster, build_features(panel, context, target, rep_origin, rep_h), scale)
    level = panel.values[target][origins]
    return level[:, None] + deltas.reshape(n, width)


def recursive_paths(
    booster: Any, panel: Panel, target: str, origins: np.ndarray, steps: int, context: Any = None, scale: float = 1.0
) -> np.ndarray:
    """(n, steps) forecasts by feeding one-step predictions back into the lag window."""
    context = context if context is not None else target_context(panel, target)
    buffer = history_window(panel, target, origins)
    ones = np.ones(origins.size, dtype=np.int64)
    out = np.empty((origins.size, steps))
    for k in range(1, steps + 1):
        features = build_features(panel, context, target, origins, ones, buffer=buffer, base_offset=k - 1)
        nxt = buffer[:, -1] + predict_deltas(booster, features, scale)
        out[:, k - 1] = nxt
        buffer = np.concatenate([buffer[:, 1:], nxt[:, None]], axis=1)
    return out


def forecast_paths(
    strategy: str,
    booster: Any,
    panel: Panel,
    target: str,
    origins: np.ndarray,
    steps: int,
    context: Any = None,
    scale: float = 1.0,
) -> np.ndarray:
    if strategy == "direct":
        return direct_paths(booster, panel, target, origins, steps, context, scale)
    return recursive_paths(booster, panel, target, origins, steps, context, scale)


def interval_offsets(quantiles: np.ndarray, steps: int, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """Residual quantiles (lower, upper) per step for a central ``coverage`` interval."""
    levels = np.asarray(QUANTILE_LEVELS)
    lo_q, hi_q = (1 - coverage) / 2, (1 + coverage) / 2
    table = quantiles[:steps]
    lower = np.array([np.interp(lo_q, levels, row) for row in table])
    upper = np.array([np.interp(hi_q, levels, row) for row in table])
    return lower, upper


def whole_steps(steps: int) -> int:
    """``steps`` as a positive whole number of readings (the bounds every forecaster shares)."""
    if isinstance(steps, bool) or int(steps) != steps:
        raise InputError(f"steps must be a whole number of readings, got {steps!r}")
    steps = int(steps)
    if steps <= 0:
        raise InputError(f"steps must be at least 1 (the number of future readings to forecast), got {steps}")
    return steps


def check_coverage(coverage: float) -> float:
    if not MIN_COVERAGE <= coverage <= MAX_COVERAGE:
        raise InputError(
            f"coverage must be between {MIN_COVERAGE} and {MAX_COVERAGE} (e.g. 0.8 for an 80% interval), got {coverage}"
        )
    return float(coverage)


def combine_paths(paths: dict[str, np.ndarray], recursive_steps: int) -> np.ndarray:
    """Steps 1..k from the recursive paths, the rest from the direct ones."""
    if "direct" not in paths:
        return paths["recursive"]
    if "recursive" not in paths or recursive_steps <= 0:
        return paths["direct"]
    out = paths["direct"].copy()
    k = min(recursive_steps, out.shape[1])
    out[:, :k] = paths["recursive"][:, :k]
    return out


def describe_strategy(recursive_steps: int, max_steps: int) -> str:
    if recursive_steps <= 0:
        return "direct"
    if recursive_steps >= max_steps:
        return "recursive"
    return f"recursive for steps 1-{recursive_steps}, direct after"


@dataclass
class TargetModel:
    """The boosters of one target: steps ``1..recursive_steps`` recursive, later steps direct."""

    target: str
    boosters: dict[str, Any]  # "direct"/"recursive" -> xgboost.Booster (only those used)
    #: Each booster predicts deltas divided by its scale.
    delta_scales: dict[str, float]
    recursive_steps: int
    features: list[str]
    #: (max_steps, len(QUANTILE_LEVELS)) quantiles of calibration residuals (actual - forecast) per step.
    residual_quantiles: np.ndarray

    @property
    def strategy(self) -> str:
        return describe_strategy(self.recursive_steps, self.residual_quantiles.shape[0])

    def paths(self, panel: Panel, origins: np.ndarray, steps: int, context: Any = None) -> np.ndarray:
        """(n, steps) forecasts from ``origins`` (each strategy is only run for the steps it serves)."""
        context = context if context is not None else target_context(panel, self.target)
        k = min(self.recursive_steps, steps)
        paths = {}
        if k > 0:
            paths["recursive"] = recursive_paths(
                self.boosters["recursive"], panel, self.target, origins, k, context, self.delta_scales["recursive"]
            )
        if k < steps:
            paths["direct"] = direct_paths(
                self.boosters["direct"],
                panel,
                self.target,
                origins,
                steps,
                context,
                self.delta_scales["direct"],
                first=k + 1,
            )
        return np.concatenate([paths[s] for s in ("recursive", "direct") if s in paths], axis=1)


@dataclass
class Forecaster:
    """One model per target; ``targets`` fixes the feature layout (the other-target context)."""

    targets: list[str] = field(default_factory=list)
    models: dict[str, TargetModel] = field(default_factory=dict)
    max_steps: int = 0
    version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The model card (``bms_schema.model_protocol.ModelCard``) once fitted or loaded.
    card: Any = None
    #: The full training report (backtest per target and horizon) of a model fitted in this process.
    report: dict[str, Any] = field(default_factory=dict, repr=False)

    registry_name: ClassVar[str] = "forecaster"

    # -- the model protocol -------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, config: Any = None, progress: Any = None) -> "Forecaster":
        """Train on ``frame`` (see :func:`bms_forecast.training.fit_forecaster`); returns ``self``, fitted."""
        from .training import fit_forecaster

        fitted, _ = fit_forecaster(frame, config, progress)
        self.__dict__.update(fitted.__dict__)
        return self

    def predict(
        self, history: pd.DataFrame, cell_id: str | int, steps: int = DEFAULT_STEPS, coverage: float = DEFAULT_COVERAGE
    ) -> pd.DataFrame:
        """Same as :meth:`forecast` (the protocol's name)."""
        return self.forecast(history, cell_id, steps, coverage)

    def evaluate(self, holdout: Any) -> dict[str, Any]:
        """Rolling-origin MASE on held-out data (a :class:`bms_forecast.training.ForecastHoldout`)."""
        from .training import evaluate_forecaster

        return evaluate_forecaster(self, holdout)

    def save(self, staging_dir: Path) -> None:
        from .persistence import write_files

        write_files(self, Path(staging_dir))

    @classmethod
    def load(cls, version: str = "champion", registry: Any = None) -> "Forecaster":
        from .persistence import load_forecaster

        return load_forecaster(version, registry)

    # -- validation -------------------------------------------------------------------
    def check_steps(self, steps: int) -> int:
        steps = whole_steps(steps)
        if steps > self.max_steps:
            raise InputError(
                f"steps={steps} is above the maximum of {self.max_steps} this forecaster was trained for; "
                f"ask for at most {self.max_steps} steps or train with a larger max_steps"
            )
        return steps

    # -- forecasting ------------------------------------------------------------------
    def forecast(
        self, history: pd.DataFrame, cell_id: str | int, steps: int = DEFAULT_STEPS, coverage: float = DEFAULT_COVERAGE
    ) -> pd.DataFrame:
        """Forecast the next ``steps`` readings of one cell from its history (and its string's).

        ``history`` is a canonical, raw-packet or minimal readings table holding at least the
        cell (its device's other cells give the string median). Returns the long table
        ``Timestamp, Target, Step, Forecast, Lower, Upper`` (``steps`` rows per forecast target).
        """
        steps = self.check_steps(steps)
        coverage = check_coverage(coverage)
        frame = canonical(history)
        from bms_schema import columns as C

        cell = resolve_cell_id(cell_id, frame[C.CELL_ID].dropna().astype(str).unique())
        device = frame.loc[frame[C.CELL_ID].astype(str) == cell, C.DEVICE_ID].iloc[0]
        frame = recent_history(frame.loc[frame[C.DEVICE_ID] == device], cell, self.max_steps)
        panel = build_panel(with_columns(frame, self.targets), self.targets)
        return self.forecast_panel(panel, panel.cell_index(cell), steps, coverage)

    def forecast_panel(
        self, panel: Panel, cell_index: int, steps: int, coverage: float = DEFAULT_COVERAGE
    ) -> pd.DataFrame:
        steps = self.check_steps(steps)
        readings = int(panel.readings[cell_index])
        if readings < WINDOW or panel.length[cell_index] < WINDOW:
            raise InputError(
                f"cell {panel.cell_ids[cell_index]} has only {readings} readings: the forecaster needs at least "
                f"{WINDOW} readings of history (its lag window)"
            )
        origin = np.array([int(panel.end[cell_index])])
        step_seconds = float(panel.step_seconds[cell_index])
        times = pd.to_datetime(
            (panel.time_s[origin[0]] + np.arange(1, steps + 1) * step_seconds) * 1e9, utc=True
        ).round("ms")
        parts = []
        started = time.perf_counter()
        for target in self.targets:
            model = self.models.get(target)
            if model is None or not np.isfinite(panel.values[target][origin[0]]):
                continue  # the target was never measured for this cell
            path = model.paths(panel, origin, steps)[0]
            lower, upper = interval_offsets(model.residual_quantiles, steps, coverage)
            parts.append(
                pd.DataFrame(
                    {
                        "Timestamp": times,
                        "Target": target,
                        "Step": np.arange(1, steps + 1, dtype=np.int64),
                        "Forecast": path,
                        "Lower": path + lower,
                        "Upper": path + upper,
                    }
                )
            )
        if not parts:
            raise InputError(
                f"cell {panel.cell_ids[cell_index]} has no reading of any forecast target ({', '.join(self.targets)})"
            )
        log.debug(
            "forecast of %s: %d targets in %.3fs", panel.cell_ids[cell_index], len(parts), time.perf_counter() - started
        )
        return pd.concat(parts, ignore_index=True)[list(FORECAST_COLUMNS)]


def recent_history(frame: pd.DataFrame, cell: str, max_steps: int) -> pd.DataFrame:
    """The string's rows recent enough for every feature of a forecast of ``cell``.

    The features look back at most one long window (a day) plus one day before the furthest
    forecast time; older rows change nothing, so dropping them keeps a forecast fast whatever
    the length of the history.
    """
    from bms_schema import columns as C

    times = frame.loc[frame[C.CELL_ID].astype(str) == cell, C.TIMESTAMP].dropna()
    if len(times) < 2:
        return frame
    from bms_schema.grouped import epoch_seconds

    seconds = np.diff(np.sort(epoch_seconds(times)))
    step = float(np.median(seconds[seconds > 0])) if (seconds > 0).any() else 0.0
    if step <= 0:
        return frame
    period = DAY_SECONDS / step if step <= MAX_SEASONAL_STEP_SECONDS else FALLBACK_LONG_WINDOW
    keep_steps = 2 * period + max_steps + WINDOW + 2
    cutoff = times.max() - pd.Timedelta(seconds=keep_steps * step)
    return frame.loc[frame[C.TIMESTAMP] >= cutoff]


def with_columns(frame: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """Add the targets a history lacks as empty columns (their features are then missing)."""
    missing = [t for t in targets if t not in frame.columns]
    if not missing:
        return frame
    return frame.assign(**{t: np.nan for t in missing})
