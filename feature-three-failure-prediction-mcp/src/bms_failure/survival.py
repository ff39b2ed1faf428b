"""One survival model for every horizon: XGBoost accelerated failure time (``survival:aft``).

Every sample is a (cell, time ``t``) where the cell is alive. Its target is the time from ``t`` to
the cell's death in days: exact when the death is seen, right-censored at the end of the known
history otherwise (a cell alive at the end is a censored observation, not a negative). The booster
learns ``mu(x)``, the location of ``log T``; the noise is normal (a log-normal ``T``) with one scale
``sigma``. After training, ``shift`` and ``sigma`` are re-estimated by maximum likelihood on held-out
cells (censoring included), so that:

- the failure probability within any horizon ``h`` is ``Phi((log h - mu - shift) / sigma)``;
- the remaining-life quantiles are ``exp(mu + shift + sigma * Phi^-1(q))`` (p10, p50, p90);

both from the same fitted distribution, so P(die within 7 d) <= P(14 d) <= P(30 d) and the median
RUL is exactly the horizon at which the probability reaches 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C

#: Times are in days; a death in the same hour as the sample counts as one hour.
MIN_DAYS = 1.0 / 24.0
DISTRIBUTION = "normal"
INITIAL_SIGMA = 1.0
EARLY_STOPPING_ROUNDS = 40
NS_PER_DAY = 86_400_000_000_000


def aft_params(seed: int = 0, sigma: float = INITIAL_SIGMA) -> dict[str, Any]:
    from bms_schema.runtime import compute_threads

    return {
        "objective": "survival:aft",
        "eval_metric": "aft-nloglik",
        "aft_loss_distribution": DISTRIBUTION,
        "aft_loss_distribution_scale": float(sigma),
        "tree_method": "hist",
        "learning_rate": 0.05,
        "max_depth": 4,
        "min_child_weight": 2.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "max_bin": 64,
        "nthread": compute_threads(),
        "seed": int(seed),
        "verbosity": 0,
    }


def survival_targets(
    table: pd.DataFrame, deaths: pd.Series, censor_at: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(usable, lower, upper)`` in days from each row's time: the death time when it is seen by
    ``censor_at``, else ``[censor_at - t, inf)``. ``usable``: the cell is alive at ``t <= censor_at``."""
    death = deaths.reindex(table[C.CELL_ID].to_numpy())
    never = death.isna().to_numpy()
    death_ns = np.where(
        never, np.iinfo(np.int64).max, death.to_numpy(dtype="datetime64[ns]").astype("int64") if len(death) else 0
    )
    t_ns = table[C.TIMESTAMP].array.asi8
    cut_ns = pd.Timestamp(censor_at).value
    observed = ~never & (death_ns <= cut_ns)
    alive = never | (death_ns >= t_ns)
    usable = alive & (t_ns <= cut_ns)
    with np.errstate(invalid="ignore", over="ignore"):
        to_death = (death_ns.astype(np.float64) - t_ns) / NS_PER_DAY
    to_cut = (cut_ns - t_ns) / NS_PER_DAY
    lower = np.maximum(np.where(observed, to_death, to_cut), MIN_DAYS)
    upper = np.where(observed, lower, np.inf)
    return usable, lower, upper


def _dmatrix(
    x: np.ndarray, features: list[str], lower: np.ndarray | None = None, upper: np.ndarray | None = None
) -> Any:
    import xgboost as xgb
    from bms_schema.runtime import compute_threads

    dm = xgb.DMatrix(x, feature_names=list(features), missing=np.nan, nthread=compute_threads())
    if lower is not None and upper is not None:
        dm.set_float_info("label_lower_bound", lower)
        dm.set_float_info("label_upper_bound", upper)
    return dm


def fit_aft(
    x: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    features: list[str],
    seed: int = 0,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    rounds: int = 600,
) -> tuple[Any, int]:
    """Train the AFT booster; with ``valid`` (x, lower, upper) early-stopped on its negative log-likelihood."""
    import xgboost as xgb

    dtrain = _dmatrix(x, features, lower, upper)
    params = aft_params(seed)
    # Start from the median observed log-time, not 0 (= 1 day): fewer rounds spent on the intercept.
    finite = np.isfinite(upper)
    start = float(np.median(lower[finite])) if finite.any() else float(np.median(lower))
    params["base_score"] = max(start, MIN_DAYS)
    if valid is not None and len(valid[0]):
        dvalid = _dmatrix(valid[0], features, valid[1], valid[2])
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
        )
        best = int(booster.best_iteration) + 1
        return booster[:best], best
    booster = xgb.train(params, dtrain, num_boost_round=rounds, verbose_eval=False)
    return booster, rounds


def margin(booster: Any, x: np.ndarray, features: list[str]) -> np.ndarray:
    """``mu``: the booster's location of log(time to death in days)."""
    if len(x) == 0:
        return np.zeros(0)
    return np.asarray(booster.predict(_dmatrix(x, features), output_margin=True), dtype=np.float64)


@dataclass
class SurvivalDistribution:
    """Log-normal time to death around the booster's ``mu``: ``log T = mu + shift + sigma * Z``."""

    shift: float = 0.0
    sigma: float = INITIAL_SIGMA

    def probability(self, mu: np.ndarray, horizon_days: float) -> np.ndarray:
        """P(death within ``horizon_days``)."""
        from scipy.special import ndtr

        z = (np.log(max(float(horizon_days), MIN_DAYS)) - np.asarray(mu, dtype=np.float64) - self.shift) / self.sigma
        return ndtr(z)

    def quantile(self, mu: np.ndarray, q: float) -> np.ndarray:
        """Remaining life (days) with probability ``q`` of dying before it."""
        from scipy.special import ndtri

        return np.exp(np.asarray(mu, dtype=np.float64) + self.shift + self.sigma * float(ndtri(q)))

    @classmethod
    def fit(cls, mu: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> "SurvivalDistribution":
        """Maximum likelihood ``shift`` and ``sigma`` on held-out rows (exact deaths and right-censored)."""
        from scipy.optimize import minimize
        from scipy.special import log_ndtr

        mu = np.asarray(mu, dtype=np.float64)
        log_lower = np.log(np.maximum(lower, MIN_DAYS))
        exact = np.isfinite(upper)
        if len(mu) == 0 or not exact.any():
            return cls()

        def nll(params: np.ndarray) -> float:
            shift, log_sigma = params
            sigma = np.exp(log_sigma)
            z = (log_lower - mu - shift) / sigma
            ll_exact = -0.5 * z[exact] ** 2 - log_sigma
            ll_cens = log_ndtr(-z[~exact])
            return -float(ll_exact.sum() + ll_cens.sum()) / len(mu)

        best = minimize(
            nll,
            np.array([0.0, np.log(INITIAL_SIGMA)]),
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 400},
        )
        shift, log_sigma = best.x
        return cls(shift=float(shift), sigma=float(np.clip(np.exp(log_sigma), 0.05, 5.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": f"log-{DISTRIBUTION}", "shift": self.shift, "sigma": self.sigma}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "SurvivalDistribution":
        from bms_schema import ModelError

        try:
            return cls(shift=float(payload["shift"]), sigma=float(payload["sigma"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the survival distribution file is not valid: {exc}") from exc
