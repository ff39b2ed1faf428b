"""One survival model for every horizon: a discrete-time hazard model (person-period rows, XGBoost).

Every sample is a (cell, time ``t``) where the cell is alive, with the features as of ``t``. Its target
is the time from ``t`` to the cell's death in days: exact when the death is seen, right-censored at the
end of the known history otherwise (a cell alive at the end is a censored observation, not a negative).
Time ahead is cut into intervals (:data:`EDGES_DAYS`: 0-1, 1-2, ... 120-180 days). Each sample becomes
one row per interval it is at risk in ("person-period" rows); the row's label is 1 when the cell dies
in that interval. One classifier learns the hazard ``h_k(x)`` = P(death in interval k | alive at its
start, features x at ``t``), with the interval as a feature. Then, per cell:

- survival to the end of interval k is the cumulative product ``S_k = prod_{j<=k} (1 - h_j)``, with the
  hazard spread at a constant rate within an interval (and the last interval's rate beyond 180 days);
- the failure probability within any horizon ``h`` is ``1 - S(h)``;
- the remaining-life quantile ``q`` is the time where ``1 - S`` reaches ``q`` (p10, p50, p90);

all from the same curve, so P(die within 7 d) <= P(14 d) <= P(30 d) and the median RUL is exactly the
horizon at which the probability reaches 0.5. A censored sample counts in the interval it is censored
in with the observed share of that interval as its weight (the actuarial convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C

#: Times are in days; a death in the same hour as the sample counts as one hour.
MIN_DAYS = 1.0 / 24.0
NS_PER_DAY = 86_400_000_000_000
#: Interval edges of the hazard (days ahead of the as-of time).
EDGES_DAYS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 21.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0)
#: The feature the classifier sees for the interval: log(1 + its midpoint in days).
INTERVAL_FEATURE = "hazard_interval_log_mid_days"
#: Remaining lives are reported up to this (days); the curve may never reach the quantile before it.
MAX_LIFE_DAYS = 3650.0
EARLY_STOPPING_ROUNDS = 30
#: Reasons (feature contributions) are read at the hazard of this interval (the one holding 14 days).
REASON_DAYS = 14.0
HAZARD_CLIP = (1e-7, 1.0 - 1e-7)


def hazard_params(seed: int = 0) -> dict[str, Any]:
    """Settings of the hazard classifier (XGBoost 3.x, ``binary:logistic`` on person-period rows)."""
    from bms_schema.runtime import compute_threads

    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "learning_rate": 0.08,
        "max_depth": 4,
        "min_child_weight": 5.0,
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


def _mid_feature(edges: np.ndarray) -> np.ndarray:
    return np.log1p(0.5 * (edges[:-1] + edges[1:]))


def person_period(
    lower: np.ndarray,
    upper: np.ndarray,
    weight: np.ndarray | None = None,
    edges: tuple[float, ...] = EDGES_DAYS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(sample, interval, label, weight)`` of the person-period rows of samples with targets ``[lower,
    upper]`` (``upper`` inf: censored at ``lower``). A sample is at risk in every interval starting before
    ``lower``; it dies in the interval holding an exact ``lower``; censored inside an interval, it counts
    there with the observed share of the interval as weight. Deaths and censoring beyond the last edge
    leave the sample alive through every interval."""
    e = np.asarray(edges, dtype=np.float64)
    a, b = e[:-1][None, :], e[1:][None, :]
    t = np.asarray(lower, dtype=np.float64)[:, None]
    exact = np.isfinite(np.asarray(upper, dtype=np.float64))[:, None]
    w0 = np.ones(len(lower)) if weight is None else np.asarray(weight, dtype=np.float64)
    at_risk = t > a
    inside = at_risk & (t <= b)
    label = inside & exact
    share = np.where(inside & ~exact, np.clip((t - a) / (b - a), 0.0, 1.0), 1.0)
    keep = at_risk & (share > 0)
    rows, cols = np.nonzero(keep)
    return rows, cols, label[rows, cols].astype(np.float32), (share[rows, cols] * w0[rows]).astype(np.float32)


def _dmatrix(
    x: np.ndarray,
    features: list[str],
    offset: np.ndarray,
    label: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> Any:
    import xgboost as xgb
    from bms_schema.runtime import compute_threads

    return xgb.DMatrix(
        x,
        label=label,
        weight=weight,
        base_margin=offset,
        feature_names=list(features),
        missing=np.nan,
        nthread=compute_threads(),
    )


def offsets(cols: np.ndarray, base_log_rate: float, edges: tuple[float, ...] = EDGES_DAYS) -> np.ndarray:
    """The fixed part of each person-period row's logit: ``base_log_rate + log(interval width)``. The trees
    learn the log of a death rate per day on top of it, so an interval longer than any seen in training
    keeps the rate, not the interval's probability."""
    return (base_log_rate + np.log(np.diff(np.asarray(edges, dtype=np.float64))))[cols].astype(np.float32)


def expand(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, edges: tuple[float, ...] = EDGES_DAYS) -> np.ndarray:
    """Person-period feature rows: the sample's features and the interval feature."""
    mid = _mid_feature(np.asarray(edges, dtype=np.float64)).astype(np.float32)
    out = np.empty((len(rows), x.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = x[rows]
    out[:, -1] = mid[cols]
    return out


def fit_hazard(
    x: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    features: list[str],
    seed: int = 0,
    weight: np.ndarray | None = None,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    rounds: int = 800,
) -> tuple[Any, int, "HazardCurve"]:
    """Train the hazard classifier on the person-period rows of the samples ``x`` (targets ``[lower,
    upper]``, optional sample ``weight``); with ``valid`` (x, lower, upper) early-stopped on its log-loss.
    Returns the booster, the rounds used and the curve (its base death rate: deaths / days at risk)."""
    import xgboost as xgb

    names = [*features, INTERVAL_FEATURE]
    r, c, y, w = person_period(lower, upper, weight)
    exposure = float(np.sum(w * np.diff(np.asarray(EDGES_DAYS))[c]))
    curve = HazardCurve(base_log_rate=float(np.log(max(float(np.sum(w * y)), 0.5) / max(exposure, 1e-9))))
    dtrain = _dmatrix(expand(np.asarray(x, dtype=np.float32), r, c), names, offsets(c, curve.base_log_rate), y, w)
    params = hazard_params(seed)
    if valid is not None and len(valid[0]):
        rv, cv, yv, wv = person_period(valid[1], valid[2])
        dvalid = _dmatrix(
            expand(np.asarray(valid[0], dtype=np.float32), rv, cv), names, offsets(cv, curve.base_log_rate), yv, wv
        )
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
        )
        best = int(booster.best_iteration) + 1
        return booster[:best], best, curve
    booster = xgb.train(params, dtrain, num_boost_round=rounds, verbose_eval=False)
    return booster, rounds, curve


def hazard_logits(booster: Any, x: np.ndarray, features: list[str], curve: "HazardCurve") -> np.ndarray:
    """Per sample and interval, the classifier's logit of the hazard (samples x intervals)."""
    edges = curve.edges
    k = len(edges) - 1
    if len(x) == 0:
        return np.zeros((0, k))
    n = len(x)
    rows, cols = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
    dm = _dmatrix(
        expand(np.asarray(x, dtype=np.float32), rows, cols, edges),
        [*features, INTERVAL_FEATURE],
        offsets(cols, curve.base_log_rate, edges),
    )
    return np.asarray(booster.predict(dm, output_margin=True), dtype=np.float64).reshape(n, k)


def calibrate_curve(
    booster: Any, x: np.ndarray, lower: np.ndarray, upper: np.ndarray, features: list[str], curve: "HazardCurve"
) -> "HazardCurve":
    """``curve`` with ``logit_scale``/``logit_shift`` fitted on held-out samples ``x`` (targets ``[lower,
    upper]``): the two numbers that minimise the person-period log-loss of the booster's logits (scale
    bounded to 0.3-3). A booster that learnt from few deaths is too sure or too shy of its hazards; this
    makes its curves, so its probabilities and remaining-life bands, match what held-out cells did (every
    interval's logit is mapped by the same increasing line). Left as is with fewer than 3 held-out deaths
    or when the fit does not lower the log-loss."""
    from scipy.optimize import minimize

    rows, cols, y, w = person_period(lower, upper)
    if len(rows) == 0 or float(np.sum(y)) < 3:
        return curve
    logits = hazard_logits(booster, np.asarray(x, dtype=np.float32), features, curve)[rows, cols]

    def loss(params: np.ndarray) -> float:
        z = params[0] * logits + params[1]
        # log(1 + e^z) - y z, weighted (numerically stable)
        return float(np.sum(w * (np.logaddexp(0.0, z) - y * z)) / np.sum(w))

    best = minimize(loss, np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(0.3, 3.0), (-5.0, 5.0)])
    if not best.success or loss(best.x) >= loss(np.array([1.0, 0.0])):
        return curve
    return HazardCurve(
        edges=curve.edges,
        base_log_rate=curve.base_log_rate,
        logit_scale=float(best.x[0]),
        logit_shift=float(best.x[1]),
    )


def hazard_contributions(
    booster: Any, x: np.ndarray, features: list[str], curve: "HazardCurve", days: float = REASON_DAYS
) -> np.ndarray:
    """Per sample, each feature's contribution to the hazard logit of the interval holding ``days`` (the
    interval's own contribution folded into the last column, the bias)."""
    if len(x) == 0:
        return np.zeros((0, len(features) + 1))
    edges = curve.edges
    k = int(np.clip(np.searchsorted(np.asarray(edges), days, side="right") - 1, 0, len(edges) - 2))
    cols = np.full(len(x), k)
    dm = _dmatrix(
        expand(np.asarray(x, dtype=np.float32), np.arange(len(x)), cols, edges),
        [*features, INTERVAL_FEATURE],
        offsets(cols, curve.base_log_rate, edges),
    )
    contribs = np.asarray(booster.predict(dm, pred_contribs=True), dtype=np.float64)
    out = np.delete(contribs, len(features), axis=1)  # the interval feature's column ...
    out[:, -1] += contribs[:, len(features)]  # ... goes into the bias
    return out


@dataclass
class HazardCurve:
    """The survival curve of each cell from its per-interval hazard logits (``margin``: samples x
    intervals; they hold the offset ``base_log_rate + log(width)``). ``logit_scale``/``logit_shift``
    recalibrate the logits (by default 1/0). One curve per cell, so every horizon and every quantile come
    from it."""

    edges: tuple[float, ...] = EDGES_DAYS
    base_log_rate: float = 0.0
    logit_scale: float = 1.0
    logit_shift: float = 0.0
    _edges: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.edges = tuple(float(e) for e in self.edges)
        self._edges = np.asarray(self.edges, dtype=np.float64)

    def hazards(self, margin: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        z = self.logit_scale * np.asarray(margin, dtype=np.float64) + self.logit_shift
        return np.clip(expit(z), *HAZARD_CLIP)

    def _rates(self, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log S at every edge (n x K+1), constant death rate per day within each interval (n x K))``."""
        m = np.atleast_2d(np.asarray(margin, dtype=np.float64))
        log_surv = np.log1p(-self.hazards(m))
        cum = np.concatenate([np.zeros((len(m), 1)), np.cumsum(log_surv, axis=1)], axis=1)
        return cum, -log_surv / np.diff(self._edges)[None, :]

    def probability(self, margin: np.ndarray, horizon_days: float) -> np.ndarray:
        """P(death within ``horizon_days``) per sample."""
        cum, rate = self._rates(margin)
        e = self._edges
        h = max(float(horizon_days), 0.0)
        k = int(np.clip(np.searchsorted(e, h, side="right") - 1, 0, len(e) - 2))
        log_s = cum[:, k] - rate[:, k] * (h - e[k])
        return np.asarray(-np.expm1(log_s), dtype=np.float64)

    def quantile(self, margin: np.ndarray, q: float) -> np.ndarray:
        """Remaining life (days) with probability ``q`` of dying before it (at most :data:`MAX_LIFE_DAYS`)."""
        cum, rate = self._rates(margin)
        e = self._edges
        target = np.log1p(-float(q))
        below = cum[:, 1:] <= target  # survival at the interval's end already below 1 - q
        reached = below.any(axis=1)
        k = np.where(reached, np.argmax(below, axis=1), len(e) - 2)
        rows = np.arange(len(cum))
        start = cum[rows, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = e[k] + (start - target) / rate[rows, k]
        return np.asarray(np.clip(np.nan_to_num(t, nan=MAX_LIFE_DAYS, posinf=MAX_LIFE_DAYS), 0.0, MAX_LIFE_DAYS))

    def curve(self, margin: np.ndarray) -> np.ndarray:
        """P(death) by the end of every interval (samples x intervals): the cumulative distribution."""
        cum, _ = self._rates(margin)
        return np.asarray(-np.expm1(cum[:, 1:]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "distribution": "discrete-time hazard",
            "edges_days": list(self.edges),
            "interval_feature": INTERVAL_FEATURE,
            "base_log_rate": self.base_log_rate,
            "logit_scale": self.logit_scale,
            "logit_shift": self.logit_shift,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "HazardCurve":
        from bms_schema import ModelError

        if payload.get("distribution") != "discrete-time hazard":
            raise ModelError(
                f"the survival file describes a '{payload.get('distribution')}' model (an older failure model, "
                "XGBoost AFT): retrain with train_failure_model to get the discrete-time hazard model"
            )
        try:
            return cls(
                edges=tuple(float(e) for e in payload["edges_days"]),
                base_log_rate=float(payload["base_log_rate"]),
                logit_scale=float(payload.get("logit_scale", 1.0)),
                logit_shift=float(payload.get("logit_shift", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the survival distribution file is not valid: {exc}") from exc
