"""Settings of the forecaster: targets, window, horizons, training budget, XGBoost parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bms_schema import columns as C

MODEL_NAME = "forecaster"

#: Parameters forecast when present in the data (in this order).
TARGETS: tuple[str, ...] = (C.VOLTAGE, C.TEMPERATURE, C.SPECIFIC_GRAVITY, C.CURRENT, C.AMBIENT)

#: Readings in the lag window: a cell needs at least this many readings to be forecast.
WINDOW = 12
#: Largest number of steps a forecaster can be trained for (``max_steps`` of training).
MAX_STEPS_LIMIT = 96
#: Default horizon trained for, and so the default upper bound on ``steps`` of a forecast.
DEFAULT_MAX_STEPS = 48
DEFAULT_STEPS = 25
DEFAULT_COVERAGE = 0.8
#: Quantile levels of the conformal residual tables (1 %, 2 %, ..., 99 %).
QUANTILE_LEVELS: tuple[float, ...] = tuple(round(q / 100, 2) for q in range(1, 100))
#: Sampling steps longer than this have no usable daily cycle (no seasonal features).
MAX_SEASONAL_STEP_SECONDS = 3 * 3600
DAY_SECONDS = 86400.0
#: Long rolling window (readings) when the data has no daily period.
FALLBACK_LONG_WINDOW = 96

STRATEGIES = ("direct", "recursive")


@dataclass(frozen=True)
class TrainConfig:
    """How a forecaster is trained and backtested (all of it is stored in the model metadata)."""

    max_steps: int = DEFAULT_MAX_STEPS
    #: Share of every cell's history (at its end) used for calibration, and the same share again for the test.
    holdout_fraction: float = 0.15
    #: "auto" trains both strategies and keeps the better on the calibration window, per target.
    strategy: str = "auto"
    #: Training pairs (origin, horizon) sampled per target for the direct model.
    max_train_pairs: int = 100_000
    #: Horizons drawn per training origin for the direct model.
    horizons_per_origin: int = 3
    #: Backtest origins per window (calibration and test), spread evenly over time.
    max_backtest_origins: int = 1500
    n_estimators: int = 250
    learning_rate: float = 0.15
    max_depth: int = 6
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    max_bin: int = 64
    early_stopping_rounds: int = 25
    #: Point-forecast loss on deltas scaled to a unit robust spread: Huber (L2 near zero, L1 for the
    #: discharge events and spikes), as fast as squared error and almost as robust as absolute error.
    objective: str = "reg:pseudohubererror"
    huber_slope: float = 1.0
    #: Share of the training budget given to the one-step (recursive) candidate.
    recursive_budget_share: float = 0.3
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        from bms_schema import InputError

        if not 1 <= self.max_steps <= MAX_STEPS_LIMIT:
            raise InputError(f"max_steps must be between 1 and {MAX_STEPS_LIMIT}, got {self.max_steps}")
        if not 0.05 <= self.holdout_fraction <= 0.3:
            raise InputError(f"holdout_fraction must be between 0.05 and 0.3, got {self.holdout_fraction}")
        if self.strategy not in ("auto", *STRATEGIES):
            raise InputError(f"strategy must be 'auto', 'direct' or 'recursive', got '{self.strategy}'")
        if self.max_train_pairs < 1000:
            raise InputError(f"max_train_pairs must be at least 1000, got {self.max_train_pairs}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def xgb_params(self, threads: int) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "max_bin": self.max_bin,
            "tree_method": "hist",
            "objective": self.objective,
            **({"huber_slope": self.huber_slope} if self.objective == "reg:pseudohubererror" else {}),
            "eval_metric": "mae",
            "early_stopping_rounds": self.early_stopping_rounds,
            "random_state": self.seed,
            "n_jobs": threads,
        }
