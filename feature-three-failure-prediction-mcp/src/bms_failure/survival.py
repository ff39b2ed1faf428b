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
#: Bounds of the time-to-death scale (log-days).
SIGMA_RANGE = (0.05, 5.0)


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
    """Log-normal time to death around the booster's ``mu``, recalibrated on held-out cells:
    ``log T = mu + shift + (slope - 1) * (mu - mu_ref) + sigma(mu) * Z`` with
    ``sigma(mu) = sigma * exp(sigma_slope * (mu - mu_ref))`` (``mu_ref``: the median ``mu`` of the deaths seen).

    One distribution per cell, so every horizon and every quantile come from the same curve. The scale
    depends on ``mu`` because a cell heading for a threshold is far more predictable (a narrow band)
    than a healthy one whose death lies beyond anything the data has seen (a wide band). Defaults
    (``slope`` 1, ``sigma_slope`` 0) are the plain AFT distribution of models saved before.
    """

    shift: float = 0.0
    sigma: float = INITIAL_SIGMA
    slope: float = 1.0
    sigma_slope: float = 0.0
    mu_ref: float = 0.0

    def location(self, mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64)
        return mu + self.shift + (self.slope - 1.0) * (mu - self.mu_ref)

    def scale(self, mu: np.ndarray) -> np.ndarray:
        z = np.clip(self.sigma_slope * (np.asarray(mu, dtype=np.float64) - self.mu_ref), -3.0, 3.0)
        return np.clip(self.sigma * np.exp(z), SIGMA_RANGE[0], SIGMA_RANGE[1])

    def probability(self, mu: np.ndarray, horizon_days: float) -> np.ndarray:
        """P(death within ``horizon_days``)."""
        from scipy.special import ndtr

        z = (np.log(max(float(horizon_days), MIN_DAYS)) - self.location(mu)) / self.scale(mu)
        return np.asarray(ndtr(z), dtype=np.float64)

    def quantile(self, mu: np.ndarray, q: float) -> np.ndarray:
        """Remaining life (days) with probability ``q`` of dying before it."""
        from scipy.special import ndtri

        return np.asarray(np.exp(self.location(mu) + self.scale(mu) * float(ndtri(q))), dtype=np.float64)

    @classmethod
    def fit(
        cls, mu: np.ndarray, lower: np.ndarray, upper: np.ndarray, heteroscedastic: bool = False
    ) -> "SurvivalDistribution":
        """Maximum likelihood recalibration on held-out rows (exact deaths and right-censored): ``shift``
        and ``sigma``, and with ``heteroscedastic`` also ``slope`` and ``sigma_slope``.

        Training uses the plain fit: on the development fleets (seeds 8101-8104) the heteroscedastic one
        moved the held-out ROC-AUC by +0.02 / 0.00 at 14 days but narrowed the bands of the dying cells
        (p10-p90 coverage 0.64 -> 0.54 with labels) and alarmed fewer dying cells on the unit-test fleet:
        the likelihood is dominated by the many healthy, censored rows."""
        from scipy.optimize import minimize
        from scipy.special import log_ndtr

        mu = np.asarray(mu, dtype=np.float64)
        log_lower = np.log(np.maximum(lower, MIN_DAYS))
        exact = np.isfinite(upper)
        if len(mu) == 0 or not exact.any():
            return cls()
        mu_ref = float(np.median(mu[exact]))

        def unpack(params: np.ndarray) -> "SurvivalDistribution":
            if heteroscedastic:
                shift, log_sigma, slope, sigma_slope = params
            else:
                (shift, log_sigma), slope, sigma_slope = params, 1.0, 0.0
            return cls(float(shift), float(np.exp(log_sigma)), float(slope), float(sigma_slope), mu_ref)

        def nll(params: np.ndarray) -> float:
            dist = unpack(params)
            sigma = dist.scale(mu)
            z = (log_lower - dist.location(mu)) / sigma
            ll_exact = -0.5 * z[exact] ** 2 - np.log(sigma[exact])
            ll_cens = log_ndtr(-z[~exact])
            return -float(ll_exact.sum() + ll_cens.sum()) / len(mu)

        start = np.array([0.0, np.log(INITIAL_SIGMA)] + ([1.0, 0.0] if heteroscedastic else []))
        best = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 1500})
        fitted = unpack(best.x)
        fitted.sigma = float(np.clip(fitted.sigma, *SIGMA_RANGE))
        fitted.slope = float(np.clip(fitted.slope, 0.2, 3.0))
        return fitted

    def to_dict(self) -> dict[str, Any]:
        return {
            "distribution": f"log-{DISTRIBUTION}",
            "shift": self.shift,
            "sigma": self.sigma,
            "slope": self.slope,
            "sigma_slope": self.sigma_slope,
            "mu_ref": self.mu_ref,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "SurvivalDistribution":
        from bms_schema import ModelError

        try:
            return cls(
                shift=float(payload["shift"]),
                sigma=float(payload["sigma"]),
                slope=float(payload.get("slope", 1.0)),
                sigma_slope=float(payload.get("sigma_slope", 0.0)),
                mu_ref=float(payload.get("mu_ref", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the survival distribution file is not valid: {exc}") from exc
